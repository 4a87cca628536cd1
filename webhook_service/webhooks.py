"""`POST /webhooks/gitlab`, the HTTP adapter of `indexer.ingest.receiver`: answer 202 within milliseconds.

Order of checks: authentication (401, nothing said about the expected value), size (413,
before reading the body), content type (415), signature (401), body and fields (400, naming
the field), unknown event (200 `{"ignored": reason}`). Accepted events are appended to the
journal (503 only if that fails), then handed to RQ; if Redis is down the answer is still 202
and the journal drainer hands them over later. Nothing here indexes inline. Concurrent
requests share the journal fsync and the Redis round trips: `indexer.ingest.intake` group-commits
them, and each request still answers only once its own event is on disk.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from dshub.config import Settings
from indexer.errors import DshubError, Unavailable
from indexer.ingest.events import IgnoredEvent, InvalidEvent, header, parse_event
from indexer.ingest.journal import Delivery, JournalError
from indexer.ingest.queue import HandOver
from indexer.ingest.receiver import (
    Receiver,
    authenticate,
    dedupe_key,
    has_signature,
    verify_signature,
)
from indexer.ingest.routing import JobRequest, route
from webhook_service import metrics
from webhook_service.app_settings import services

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("dshub.webhooks")
PATH = "/webhooks/gitlab"
_CHUNK = 64 * 1024


class PayloadTooLarge(DshubError):
    """The body is over DSHUB_WEBHOOK_MAX_BYTES."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DshubError):
    """The body is not declared as JSON."""

    status = 415
    code = "unsupported_media_type"


def record_hand_over(handed: list[HandOver]) -> None:
    """Count hand-overs and their latency in the metrics."""
    for item in handed:
        metrics.observe_hand_over(item.latency, item.outcomes)


def register(app: Flask) -> None:
    """Serve `POST /webhooks/gitlab` in front of `app` (the WSGI fast path below)."""
    app.wsgi_app = WebhookFastPath(app)  # type: ignore[method-assign]


# ------------------------------------------------------------------------ verification


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


# ------------------------------------------------------------------------------ route


def _jobs_json(jobs: list[JobRequest]) -> list[dict[str, Any]]:
    return [{"id": job.job_id, "func": job.name, "args": list(job.args)} for job in jobs]


class WebhookFastPath:
    """WSGI middleware answering `POST /webhooks/gitlab` without Flask's dispatch.

    GitLab's deliveries are the service's hottest path; a full Flask request (context, URL
    matching, session, hooks) cost as much CPU as verifying and journaling the event. This
    serves exactly that method and path with werkzeug's own Request/Response through
    `handle_delivery`; everything else goes to Flask unchanged.
    """

    def __init__(self, app: Flask) -> None:
        resources = services(app)
        self.settings = resources.settings
        self.receiver = resources.receiver
        self.wsgi_app = app.wsgi_app
        self.limit = self.settings.webhook_max_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve a delivery here; hand any other request to the Flask application."""
        if environ.get("PATH_INFO") != PATH:
            return self.wsgi_app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            error = {"code": "method_not_allowed", "message": f"{PATH} accepts POST only"}
            refused = _json({"error": error}, 405)
            refused.headers["Allow"] = "POST"
            return refused(environ, start_response)
        incoming = Request(environ)
        incoming.max_content_length = self.limit
        try:
            response = handle_delivery(self.settings, self.receiver, incoming)
        except Exception:  # never a traceback to the sender; Flask's own 500 handler is bypassed
            log.exception("webhook handling failed")
            response = _json({"error": {"code": "internal", "message": "internal error"}}, 500)
        return response(environ, start_response)


def handle_delivery(settings: Settings, receiver: Receiver, incoming: Request) -> Response:
    """Verify, parse, journal and hand over one delivery; the answer to send."""
    started = time.perf_counter()
    headers = dict(incoming.headers)
    context: dict[str, Any] = {
        "hook": (header(headers, "X-Gitlab-Event") or "")[:60],
        "idempotency_key": (header(headers, "Idempotency-Key") or "")[:200] or None,
    }
    kind = "unknown"
    try:
        authenticate(settings.webhook_secrets, settings.webhook_signing_key, headers)
        limit = settings.webhook_max_bytes
        _read_length_first(incoming, limit)
        _check_content_type(incoming)
        body = _read_body(incoming, limit)
        key = settings.webhook_signing_key
        if key is not None and has_signature(key, headers):
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
        delivery = Delivery(dedupe_key(headers, body), kind, context["project_id"], jobs)
        receipt = receiver.submit(delivery)  # on disk from here on (or JournalError: 503)
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
