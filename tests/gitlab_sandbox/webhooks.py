"""Webhook delivery: project and system hooks, GitLab's headers, asynchronous and recorded.

GitLab queues every delivery (Sidekiq) and posts it later; the sandbox uses one background
thread per sandbox. Every attempt is recorded (request headers and body, response status)
so tests can inspect what a receiver got. Only loopback URLs are ever contacted.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from tests.gitlab_sandbox.faults import Faults
from tests.gitlab_sandbox.records import Hook

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState

GITLAB_VERSION = "18.2.0"
TIMEOUT_SECONDS = 10.0
DISABLE_AFTER_FAILURES = 4
PERMANENTLY_DISABLE_AFTER = 40

EVENT_HEADERS = {
    "push_events": "Push Hook",
    "tag_push_events": "Tag Push Hook",
    "merge_requests_events": "Merge Request Hook",
    "issues_events": "Issue Hook",
    "note_events": "Note Hook",
    "job_events": "Job Hook",
    "pipeline_events": "Pipeline Hook",
    "wiki_page_events": "Wiki Page Hook",
    "deployment_events": "Deployment Hook",
    "releases_events": "Release Hook",
    "feature_flag_events": "Feature Flag Hook",
    "emoji_events": "Emoji Hook",
    "resource_access_token_events": "Resource Access Token Hook",
    "member_events": "Member Hook",
    "project_events": "Project Hook",
    "subgroup_events": "Subgroup Hook",
}


@dataclass
class Delivery:
    """One recorded delivery attempt (or a drop) of an event to a hook."""

    id: int
    hook_id: int
    hook_kind: str
    url: str
    event: str
    idempotency_key: str
    request_headers: dict[str, str]
    body: dict[str, Any]
    outcome: str = "pending"  # delivered | failed | dropped | refused | disabled
    status: int | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        """The record as JSON (GET /-/sandbox/deliveries)."""
        return dict(vars(self))


@dataclass
class _Job:
    hook: Hook
    body: dict[str, Any]
    event: str
    idempotency_key: str
    event_uuid: str


def is_loopback_url(url: str) -> bool:
    """True when `url` is http(s) to 127.0.0.0/8, ::1 or localhost."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def branch_matches(hook: Hook, branch: str) -> bool:
    """GitLab's `push_events_branch_filter` (wildcard, regex or all branches)."""
    pattern = hook.push_events_branch_filter
    if hook.branch_filter_strategy == "all_branches" or not pattern:
        return True
    if hook.branch_filter_strategy == "regex":
        try:
            return re.fullmatch(pattern, branch) is not None
        except re.error:
            return False
    return fnmatch.fnmatchcase(branch, pattern)


class WebhookDispatcher:
    """Queues deliveries for a background thread; records every attempt."""

    def __init__(self, state: SandboxState, faults: Faults) -> None:
        self.state = state
        self.faults = faults
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._records: list[Delivery] = []
        self._held: list[_Job] = []
        self._cond = threading.Condition()
        self._busy = 0
        self._session = requests.Session()
        self._session.trust_env = False
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ enqueueing

    def enqueue(self, hook: Hook, body: dict[str, Any], event: str) -> None:
        """Queue one event for one hook (a fresh Idempotency-Key and Event-UUID)."""
        job = _Job(hook, body, event, str(uuid.uuid4()), str(uuid.uuid4()))
        with self._cond:
            self._busy += 1
        self._queue.put(job)

    def system_event(self, body: dict[str, Any], flag: str | None = None) -> None:
        """Send `body` to every system hook (or only those with `flag` on)."""
        for hook in self._hooks("system"):
            if flag is None or hook.flags.get(flag, False):
                self.enqueue(hook, body, "System Hook")

    def project_event(
        self, project: Project, body: dict[str, Any], flag: str, branch: str | None = None
    ) -> None:
        """Send `body` to the project's hooks with `flag` on (honouring the branch filter)."""
        header = EVENT_HEADERS[flag]
        for hook in self._hooks("project", project.id):
            if not hook.flags.get(flag, False):
                continue
            if branch is not None and flag == "push_events" and not branch_matches(hook, branch):
                continue
            self.enqueue(hook, body, header)

    def _hooks(self, kind: str, owner_id: int | None = None) -> list[Hook]:
        with self.state.lock:
            return [
                h
                for h in self.state.hooks.values()
                if h.kind == kind and (owner_id is None or h.owner_id == owner_id)
            ]

    # ------------------------------------------------------------------ inspection

    def deliveries(self) -> list[Delivery]:
        """Every recorded attempt so far, oldest first."""
        with self._cond:
            return list(self._records)

    def wait_idle(self, timeout: float = 15.0) -> bool:
        """Wait until nothing is queued or in flight (held reorders excepted)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy > len(self._held):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_for(self, count: int, timeout: float = 15.0, **match: Any) -> list[Delivery]:
        """Wait until at least `count` finished records match `match` (attribute equality)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    d
                    for d in self._records
                    if d.outcome != "pending" and all(getattr(d, k) == v for k, v in match.items())
                ]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def clear(self) -> None:
        """Forget the recorded deliveries."""
        with self._cond:
            self._records.clear()

    def release_held(self) -> None:
        """Release held (reordered) deliveries now, newest first."""
        with self._cond:
            held, self._held = self._held, []
        for job in reversed(held):
            self._attempt(job)
            self._done()

    def redeliver(self, delivery_id: int) -> Delivery:
        """Resend a recorded delivery like GitLab's "Resend Request" (same Idempotency-Key)."""
        with self._cond:
            original = next(d for d in self._records if d.id == delivery_id)
        hook = self.state.hooks[original.hook_id]
        job = _Job(hook, original.body, original.event, original.idempotency_key, str(uuid.uuid4()))
        return self._attempt(job)

    def deliver_now(self, hook: Hook, body: dict[str, Any], event: str) -> Delivery:
        """Deliver synchronously (the hook test endpoint does this) and return the record."""
        job = _Job(hook, body, event, str(uuid.uuid4()), str(uuid.uuid4()))
        return self._attempt(job, count_failures=False)

    def stop(self) -> None:
        """Stop the background thread (pending deliveries are abandoned)."""
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._session.close()

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._process(job)
            except Exception as exc:  # a bug here must not kill the delivery thread
                self._record(job, {}, "failed", None, f"sandbox error: {exc!r}")
                self._done()

    def _process(self, job: _Job) -> None:
        if self.faults.take("drop"):
            self._record(job, {}, "dropped", None, "dropped by fault knob")
            self._done()
            return
        if self.faults.take("reorder"):
            with self._cond:
                self._held.append(job)
                release = self.faults.webhooks.reorder == 0
                self._cond.notify_all()
            if release:
                self.release_held()
            return
        duplicate = self.faults.take("duplicate")
        self._attempt(job)
        if duplicate:
            self._attempt(job)
        self._done()

    def _done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def headers_for(self, job: _Job) -> dict[str, str]:
        """GitLab's delivery headers (custom headers first, standard ones win)."""
        headers = {h["key"]: h.get("value", "") for h in job.hook.custom_headers}
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": f"GitLab/{GITLAB_VERSION}",
                "Idempotency-Key": job.idempotency_key,
                "X-Gitlab-Event": job.event,
                "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
                "X-Gitlab-Instance": self.state.base_url,
                "X-Gitlab-Event-UUID": job.event_uuid,
            }
        )
        if job.hook.token:
            headers["X-Gitlab-Token"] = job.hook.token.replace("\r", "").replace("\n", "")
        return headers

    def _attempt(self, job: _Job, count_failures: bool = True) -> Delivery:
        if self.faults.webhooks.delay:
            time.sleep(self.faults.webhooks.delay)
        headers = self.headers_for(job)
        if job.hook.alert_status != "executable" and not _disable_expired(job.hook):
            return self._record(job, headers, "disabled", None, "hook disabled")
        if not is_loopback_url(job.hook.url):
            return self._record(job, headers, "refused", None, "sandbox delivers to loopback only")
        data = json.dumps(job.body).encode()
        try:
            response = self._session.post(
                job.hook.url,
                data=data,
                headers=headers,
                timeout=TIMEOUT_SECONDS,
                allow_redirects=False,
            )
            status: int | None = response.status_code
            error = None if response.status_code < 400 else f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        ok = status is not None and status < 400
        if count_failures or ok:
            self._account(job.hook, ok)
        return self._record(job, headers, "delivered" if ok else "failed", status, error)

    def _account(self, hook: Hook, ok: bool) -> None:
        if hook.kind != "project":
            return
        with self.state.mutation():
            if ok:
                hook.recent_failures, hook.alert_status, hook.disabled_until = 0, "executable", None
                return
            hook.recent_failures += 1
            if hook.recent_failures >= PERMANENTLY_DISABLE_AFTER:
                hook.alert_status, hook.disabled_until = "disabled", None
            elif hook.recent_failures >= DISABLE_AFTER_FAILURES:
                minutes = min(2 ** (hook.recent_failures - DISABLE_AFTER_FAILURES), 24 * 60)
                until = datetime.now(UTC) + timedelta(minutes=minutes)
                hook.alert_status = "temporarily_disabled"
                hook.disabled_until = until.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _record(
        self,
        job: _Job,
        headers: dict[str, str],
        outcome: str,
        status: int | None,
        error: str | None,
    ) -> Delivery:
        with self._cond:
            record = Delivery(
                id=len(self._records) + 1,
                hook_id=job.hook.id,
                hook_kind=job.hook.kind,
                url=job.hook.url,
                event=job.event,
                idempotency_key=job.idempotency_key,
                request_headers=headers,
                body=job.body,
                outcome=outcome,
                status=status,
                error=error,
            )
            self._records.append(record)
            self._cond.notify_all()
            return record


def _disable_expired(hook: Hook) -> bool:
    if hook.alert_status != "temporarily_disabled" or not hook.disabled_until:
        return False
    return hook.disabled_until <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
