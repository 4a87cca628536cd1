"""`POST /webhooks/gitlab`: verify, parse, journal, hand over, answer 202 within milliseconds.

Order of checks: authentication (401, nothing said about the expected value), size (413,
before reading the body), content type (415), signature (401), body and fields (400, naming
the field), unknown event (200 `{"ignored": reason}`). Accepted events are appended to the
journal (503 only if that fails), then handed to RQ; if Redis is down the answer is still 202
and the journal drainer hands them over later. Nothing here indexes inline. Concurrent
requests share the journal fsync and the Redis round trips: `indexer.intake` group-commits
them, and each request still answers only once its own event is on disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis
from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from dshub.config import Settings
from indexer.errors import DshubError, NotAuthenticated, Unavailable
from indexer.events import IgnoredEvent, InvalidEvent, header, parse_event
from indexer.intake import Intake
from indexer.journal import Delivery, Entry, Journal, JournalError
from indexer.queue import Drainer, EmbeddedWorker, HandOver, RedisQueue, hand_over
from indexer.routing import JobRequest, route
from webhook_service import metrics
from webhook_service.params import ascii_digits

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("dshub.webhooks")
blueprint = Blueprint("webhooks", __name__)
PATH = "/webhooks/gitlab"

SIGNATURE_TOLERANCE = 300  # seconds, as the Standard Webhooks reference libraries use
REDIS_RETRY_AFTER = 2.0  # after a Redis failure, requests leave hand-over to the drainer
_AUTH_FAILED = "authentication failed: missing or invalid X-Gitlab-Token"
_CHUNK = 64 * 1024


class PayloadTooLarge(DshubError):
    """The body is over DSHUB_WEBHOOK_MAX_BYTES."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DshubError):
    """The body is not declared as JSON."""

    status = 415
    code = "unsupported_media_type"


class Receiver:
    """Per-process state of the receiver: the journal, the queue and the background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = RedisQueue.from_url(settings.redis_url) if settings.redis_url else None
        self._journal: Journal | None = None
        self._lock = threading.Lock()
        self._background: Drainer | EmbeddedWorker | None = None
        self._background_pid = 0
        self._intake: Intake | None = None
        self._redis_down_until = 0.0

    def journal(self) -> Journal:
        """The journal, opened on first use (raises `JournalError` if it cannot be)."""
        with self._lock:
            if self._journal is None:
                self._journal = Journal.in_directory(self.settings.data_dir)
            return self._journal

    def start_background(self) -> None:
        """Start this process's drainer (Redis) or embedded worker (no Redis), once per process."""
        with self._lock:
            alive = self._background is not None and self._background.is_alive()
            if alive and self._background_pid == os.getpid():
                return
        journal = self.journal()
        thread: Drainer | EmbeddedWorker
        if self.queue is not None:
            thread = Drainer(journal, self.queue, on_hand_over=record_hand_over)
        else:
            thread = EmbeddedWorker(journal)
        with self._lock:
            self._background, self._background_pid = thread, os.getpid()
        thread.start()

    def intake(self) -> Intake:
        """The group-commit queue requests submit their deliveries to (opens the journal)."""
        journal = self.journal()
        with self._lock:
            if self._intake is None or self._intake.journal is not journal:
                self._intake = Intake(
                    journal,
                    self.queue,
                    redis_usable=self.can_hand_over_inline,
                    redis_failed=self._redis_failed,
                    on_hand_over=record_hand_over,
                    on_deferred=self.wake,
                )
            return self._intake

    def wake(self) -> None:
        """Tell the background thread there is work (it also polls every second)."""
        if self._background is not None:
            self._background.wake.set()

    def stop(self) -> None:
        """Stop the background threads and close the journal (tests, shutdown)."""
        if self._intake is not None:
            self._intake.stop()
            self._intake = None
        if self._background is not None:
            self._background.stop()
            self._background = None
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def can_hand_over_inline(self) -> bool:
        """True when a request should enqueue its own event (Redis configured, not known down)."""
        return self.queue is not None and time.monotonic() >= self._redis_down_until

    def hand_over_now(self, entry: Entry) -> bool:
        """Try to enqueue a just-journaled row; False leaves it to the drainer (Redis down)."""
        if self.queue is None:
            self.wake()
            return False
        journal = self.journal()
        try:
            record_hand_over(hand_over(journal, self.queue, [entry]))
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)
            self.wake()
            return False
        return True

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER
        log.warning(
            "redis unreachable; event kept in the journal", extra={"error": type(exc).__name__}
        )


def record_hand_over(handed: list[HandOver]) -> None:
    """Count hand-overs and their latency in the metrics."""
    for item in handed:
        metrics.observe_hand_over(item.latency, item.outcomes)


def register(app: Flask, settings: Settings) -> None:
    """Attach the receiver to `app`, register the webhook blueprint and its WSGI fast path."""
    app.extensions["dshub.receiver"] = Receiver(settings)
    app.register_blueprint(blueprint)
    app.wsgi_app = WebhookFastPath(app)  # type: ignore[method-assign]


def receiver_of(app: Flask) -> Receiver:
    """The receiver attached to `app` by `register`."""
    receiver: Receiver = app.extensions["dshub.receiver"]
    return receiver


# ------------------------------------------------------------------------ verification


def _authenticate(settings: Settings, headers: Mapping[str, str]) -> None:
    secrets = settings.webhook_secrets
    if not secrets and settings.webhook_signing_key is None:
        raise Unavailable("webhooks are disabled: the operator has not set DSHUB_WEBHOOK_SECRET")
    token = header(headers, "X-Gitlab-Token")
    token_ok = False
    if token is not None and secrets:
        given = token.encode("utf-8", "surrogateescape")
        # Compare with every secret (no early exit) so timing does not tell which one matched.
        matches = [hmac.compare_digest(given, secret.encode()) for secret in secrets]
        if not any(matches):
            raise NotAuthenticated(_AUTH_FAILED)
        token_ok = True
    # Without a valid token, only a signature (checked once the body is read) can vouch.
    if not token_ok and not _has_signature(settings, headers):
        raise NotAuthenticated(_AUTH_FAILED)


def _has_signature(settings: Settings, headers: Mapping[str, str]) -> bool:
    return settings.webhook_signing_key is not None and any(
        header(headers, name) is not None
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )


def verify_signature(
    key: bytes, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Check a Standard Webhooks signature (`webhook-id/-timestamp/-signature`) or raise 401."""
    webhook_id = header(headers, "webhook-id")
    stamp = header(headers, "webhook-timestamp")
    signatures = header(headers, "webhook-signature")
    if not webhook_id or not stamp or not signatures:
        raise NotAuthenticated(
            "authentication failed: webhook-id, webhook-timestamp and webhook-signature "
            "must be sent together"
        )
    if not ascii_digits(stamp, 12):
        raise NotAuthenticated("authentication failed: webhook-timestamp is not Unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > SIGNATURE_TOLERANCE:
        raise NotAuthenticated(
            f"authentication failed: webhook-timestamp is more than {SIGNATURE_TOLERANCE} "
            "seconds away from the server's clock"
        )
    signed = webhook_id.encode("utf-8", "surrogateescape") + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    valid = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1":
            given = value.encode("utf-8", "surrogateescape")
            valid = hmac.compare_digest(expected, given) or valid
    if not valid:
        raise NotAuthenticated("authentication failed: invalid webhook-signature")


def _read_body(incoming: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = incoming.stream.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes") from None
    except ClientDisconnected:
        raise InvalidEvent("the request body ended before Content-Length bytes") from None
    return b"".join(chunks)


def _check_content_type(incoming: Request) -> None:
    mimetype = incoming.mimetype
    if mimetype != "application/json":
        shown = (incoming.content_type or "none")[:80]
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {shown!r})")


def dedupe_key(headers: Mapping[str, str], body: bytes) -> str:
    """Idempotency-Key, else X-Gitlab-Event-UUID, else a digest of the event header and body."""
    for name, prefix in (("Idempotency-Key", "idempotency"), ("X-Gitlab-Event-UUID", "event")):
        value = header(headers, name)
        if value:
            return f"{prefix}:{value[:200]}"
    digest = hashlib.sha256()
    digest.update((header(headers, "X-Gitlab-Event") or "").encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(body)
    return f"body:{digest.hexdigest()}"


# ------------------------------------------------------------------------------ route


def _jobs_json(jobs: list[JobRequest]) -> list[dict[str, Any]]:
    return [{"id": job.job_id, "func": job.name, "args": list(job.args)} for job in jobs]


@blueprint.post(PATH)
def receive() -> ResponseReturnValue:
    """Receive one GitLab delivery (project, group or system hook)."""
    return handle_delivery(receiver_of(current_app), request)


class WebhookFastPath:
    """WSGI middleware answering `POST /webhooks/gitlab` without Flask's dispatch.

    GitLab's deliveries are the service's hottest path; a full Flask request (context, URL
    matching, session, hooks) cost as much CPU as verifying and journaling the event. This
    serves exactly that method and path with werkzeug's own Request/Response and the same
    `handle_delivery` the blueprint's view uses; everything else goes to Flask unchanged.
    """

    def __init__(self, app: Flask) -> None:
        self.receiver = receiver_of(app)
        self.wsgi_app = app.wsgi_app
        self.limit = self.receiver.settings.webhook_max_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve a delivery here; hand any other request to the Flask application."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != PATH:
            return self.wsgi_app(environ, start_response)
        incoming = Request(environ)
        incoming.max_content_length = self.limit
        try:
            response = handle_delivery(self.receiver, incoming)
        except Exception:  # never a traceback to the sender; Flask's own 500 handler is bypassed
            log.exception("webhook handling failed")
            response = _json({"error": {"code": "internal", "message": "internal error"}}, 500)
        return response(environ, start_response)


def handle_delivery(receiver: Receiver, incoming: Request) -> Response:
    """Verify, parse, journal and hand over one delivery; the answer to send."""
    started = time.perf_counter()
    settings = receiver.settings
    headers = dict(incoming.headers)
    context: dict[str, Any] = {
        "hook": (header(headers, "X-Gitlab-Event") or "")[:60],
        "idempotency_key": (header(headers, "Idempotency-Key") or "")[:200] or None,
    }
    kind = "unknown"
    try:
        _authenticate(settings, headers)
        limit = settings.webhook_max_bytes
        _read_length_first(incoming, limit)
        _check_content_type(incoming)
        body = _read_body(incoming, limit)
        key = settings.webhook_signing_key
        if key is not None and _has_signature(settings, headers):
            verify_signature(key, headers, body)
        event = parse_event(headers, body)
        kind = event.kind if not isinstance(event, IgnoredEvent) else "ignored"
        context["event_kind"] = kind
        context["project_id"] = getattr(event, "project_id", None)
        jobs = route(event)
        if isinstance(event, IgnoredEvent) or not jobs:
            reason = event.reason if isinstance(event, IgnoredEvent) else "no job needed"
            return _answer(
                200,
                {"ignored": reason},
                kind=kind,
                outcome="ignored",
                context=context,
                started=started,
            )
        intake = receiver.intake()
        receiver.start_background()
        ticket = intake.submit(
            Delivery(dedupe_key(headers, body), kind, context["project_id"], jobs)
        )
        receipt = ticket.wait_settled()  # on disk from here on (or JournalError: 503)
        if receipt.duplicate:
            metrics.count_dedupe_hit()
            body_out = {"accepted": True, "duplicate": True, "jobs": _jobs_json(jobs)}
            return _answer(
                202, body_out, kind=kind, outcome="duplicate", context=context, started=started
            )
        body_out = {
            "accepted": True,
            "duplicate": False,
            "handed_over": receipt.handed_over,
            "jobs": _jobs_json(jobs),
        }
        return _answer(
            202, body_out, kind=kind, outcome="accepted", context=context, started=started
        )
    except JournalError as exc:
        log.error("journal write failed", extra={**context, "error": str(exc)})
        error = Unavailable("the event journal cannot be written; nothing was accepted, retry")
        return _error(error, kind, "unavailable", context, started)
    except DshubError as exc:
        return _error(exc, kind, f"rejected_{exc.status}", context, started)


def _read_length_first(incoming: Request, limit: int) -> None:
    declared = incoming.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")


def _answer(
    status: int,
    payload: dict[str, Any],
    *,
    kind: str,
    outcome: str,
    context: dict[str, Any],
    started: float,
) -> Response:
    metrics.count_event(kind, outcome)
    jobs = payload.get("jobs")
    log.info(
        "webhook %s",
        outcome,
        extra={
            **context,
            "status": status,
            "outcome": outcome,
            "jobs": [job["id"] for job in jobs] if isinstance(jobs, list) else [],
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return _json(payload, status)


def _json(payload: dict[str, Any], status: int) -> Response:
    # json.dumps straight into the response: Flask's jsonify (provider lookup, key sorting)
    # cost as much as the rest of the answer on this hot path.
    return Response(json.dumps(payload), status, mimetype="application/json")


def _error(
    exc: DshubError, kind: str, outcome: str, context: dict[str, Any], started: float
) -> Response:
    metrics.count_event(kind, outcome)
    log.info(
        "webhook rejected",
        extra={
            **context,
            "status": exc.status,
            "outcome": outcome,
            "reason": exc.message,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return _json({"error": {"code": exc.code, "message": exc.message}}, exc.status)
