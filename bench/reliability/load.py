"""Mixed load on a `System`: webhooks, searches, tree listings, downloads, uploads, commits.

Each kind runs in its own threads, open loop at a fixed rate (a late request is sent at
once, never skipped). Every request is recorded with its route, status (or the exception
class when no answer came), latency and whether it was a documented answer: dshub's 503 is
its JSON error `{"error": {"code": "unavailable", ...}}`; any other 5xx, and a connection
broken without an answer, is undocumented.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.reliability.system import SECRET, System
from bench.reliability.world import World
from indexer.errors import DshubError
from indexer.read.resolve import REF_TTL
from tests.support.paths import WEBHOOK_FIXTURES


@dataclass
class Sample:
    """One request."""

    at: float  # seconds since the load started
    route: str
    status: int | str  # HTTP status, or the exception's class name
    seconds: float
    documented: bool  # a 2xx/4xx, or dshub's own 503


@dataclass
class Recorder:
    """Every sample of a run, thread-safe."""

    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: str, status: int | str, seconds: float, documented: bool) -> None:
        with self.lock:
            self.samples.append(
                Sample(time.monotonic() - self.started, route, status, seconds, documented)
            )

    def note(self, text: str) -> None:
        with self.lock:
            self.notes.append(text)

    def between(self, start: float, end: float) -> list[Sample]:
        with self.lock:
            return [s for s in self.samples if start <= s.at < end]


def is_documented(response: requests.Response) -> bool:
    """2xx-4xx, or the 503 dshub documents (its JSON error with code `unavailable`)."""
    if response.status_code < 500:
        return True
    if response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def upload_route(method: str, path: str) -> str:
    """The route name of one upload-session call."""
    if path.endswith("/commit"):
        return "POST upload commit"
    if "/files/" in path:
        return f"{method} upload file"
    if method == "POST":
        return "POST upload session"
    return f"{method} upload session"


def push_body(project_id: int, before: str, after: str) -> bytes:
    """GitLab's documented push example for one project and ref move (a replayed delivery)."""
    payload: dict[str, Any] = json.loads((WEBHOOK_FIXTURES / "push.json").read_text())
    payload.update(project_id=project_id, before=before, after=after, checkout_sha=after)
    payload["ref"] = "refs/heads/main"
    payload["project"] = {**payload["project"], "id": project_id}
    return json.dumps(payload).encode()


@dataclass
class Rates:
    """Requests per second of each kind (0 turns a kind off)."""

    webhooks: float = 200.0
    searches: float = 5.0
    trees: float = 5.0
    downloads: float = 5.0
    uploads: float = 0.3  # upload sessions (2 files each) per second
    commits: float = 0.5  # sandbox commits that touch no pointer (real push deliveries)

    def scaled(self, factor: float) -> Rates:
        return Rates(*(value * factor for value in vars(self).values()))


@dataclass
class Load:
    """The load threads; `start()`, then `stop()` (joins them)."""

    system: System
    world: World
    rates: Rates
    seed: int
    workdir: Path
    recorder: Recorder = field(default_factory=Recorder)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def start(self) -> Load:
        plan = [
            ("webhook", self.rates.webhooks, 32, self._webhook),
            ("search", self.rates.searches, 2, self._search),
            ("tree", self.rates.trees, 2, self._tree),
            ("download", self.rates.downloads, 2, self._download),
            ("upload", self.rates.uploads, 2, self._upload),
            ("commit", self.rates.commits, 1, self._commit),
        ]
        for name, rate, threads, action in plan:
            if rate <= 0:
                continue
            for number in range(threads):
                thread = threading.Thread(
                    target=self._run,
                    args=(action, rate / threads, f"{self.seed}-{name}-{number}"),
                    name=f"load-{name}-{number}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._threads.clear()

    def _run(self, action: Any, rate: float, seed: str) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        interval = 1.0 / rate
        due = time.monotonic() + rng.random() * interval
        while not self._stop.is_set():
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            due += interval
            try:
                action(session, rng)
            except Exception as exc:
                self.recorder.note(f"{threading.current_thread().name}: {type(exc).__name__}")

    # ------------------------------------------------------------------ the kinds

    def _timed(
        self, route: str, session: requests.Session, method: str, url: str, **kwargs: Any
    ) -> requests.Response | None:
        started = time.perf_counter()
        try:
            response = session.request(method, url, timeout=30, **kwargs)
            _ = response.content
        except requests.RequestException as exc:
            self.recorder.add(route, type(exc).__name__, time.perf_counter() - started, False)
            return None
        self.recorder.add(
            route, response.status_code, time.perf_counter() - started, is_documented(response)
        )
        return response

    def _url(self, path: str) -> str:
        assert self.system.gunicorn is not None
        return self.system.gunicorn.url + path

    def _auth(self) -> dict[str, str]:
        assert self.system.sandbox is not None
        return {"PRIVATE-TOKEN": self.system.sandbox.admin_token}

    def _webhook(self, session: requests.Session, rng: random.Random) -> None:
        project = self.world.pick_dataset(rng)
        with self.world.lock:
            head = self.world.heads[project]
        body = push_body(project, "0" * 40, head)
        headers = {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Push Hook",
            "X-Gitlab-Token": SECRET,
            "Idempotency-Key": str(uuid.uuid4()),
            "User-Agent": "GitLab/18.3.0",
        }
        self._timed(
            "POST /webhooks/gitlab",
            session,
            "POST",
            self._url("/webhooks/gitlab"),
            data=body,
            headers=headers,
        )

    def _search(self, session: requests.Session, rng: random.Random) -> None:
        query = rng.choice(["retina", "soak", "dataset", "b0000"])
        self._timed(
            "GET /api/v1/datasets?q=",
            session,
            "GET",
            self._url(f"/api/v1/datasets?q={query}"),
            headers=self._auth(),
        )

    def _tree(self, session: requests.Session, rng: random.Random) -> None:
        with self.world.lock:
            project = rng.choice(self.world.datasets)
        self._timed(
            "GET tree",
            session,
            "GET",
            self._url(f"/api/v1/datasets/{project}/tree?ref=main"),
            headers=self._auth(),
        )

    def _download(self, session: requests.Session, rng: random.Random) -> None:
        # A branch name is resolved once per REF_TTL (5 s) in each web process: a file just
        # committed through another worker is not at ?ref=main there yet (docs/reliability.md).
        stored = self.world.pick_file(rng, older_than=REF_TTL + 1.0)
        if stored is None:
            return
        response = self._timed(
            "GET file",
            session,
            "GET",
            self._url(f"/api/v1/datasets/{stored.project_id}/files/{stored.path}?ref=main"),
            headers=self._auth(),
        )
        if response is not None and response.status_code == 200:
            got = hashlib.md5(response.content).hexdigest()  # noqa: S324 - DVC's id
            if got != stored.md5:
                self.recorder.add("download bytes wrong", 200, 0.0, False)

    def _upload(self, session: requests.Session, rng: random.Random) -> None:
        project = self.world.pick_dataset(rng)
        sizes = [rng.randint(1_000, 200_000) for _ in range(2)]
        client = self.world.client()
        client.session.hooks["response"].append(self._record_upload_call)
        try:
            self.world.upload_files(project, sizes, self.workdir, client)
        except DshubError as exc:
            self.recorder.note(f"upload to {project} failed: {type(exc).__name__}")
            return
        with self.world.lock:
            self.counts["uploads committed"] += 1

    def _record_upload_call(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.recorder.add(
            upload_route(response.request.method or "", response.request.path_url),
            response.status_code,
            response.elapsed.total_seconds(),
            is_documented(response),
        )

    def _commit(self, session: requests.Session, rng: random.Random) -> None:
        project = self.world.pick_dataset(rng)
        started = time.perf_counter()
        try:
            self.world.readme_commit(self.world_gitlab, project)
        except Exception as exc:
            self.recorder.add(
                "sandbox commit", type(exc).__name__, time.perf_counter() - started, True
            )
            return
        self.recorder.add("sandbox commit", 201, time.perf_counter() - started, True)

    @property
    def world_gitlab(self) -> Any:
        if not hasattr(self, "_gl"):
            self._gl = self.system.gitlab()
        return self._gl
