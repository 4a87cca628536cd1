"""Readiness: `GET /readyz` checks the journal, Redis (when configured) and the index.

200 `{"status": "ready", "checks": {...}}` when all answer; otherwise 503 with the failing
check(s) named. Messages name the error type, never a URL (URLs may carry passwords).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from dshub.services import Services
from indexer.store import open_index
from webhook_service.app_settings import services

blueprint = Blueprint("ops", __name__)


def _check_journal(resources: Services) -> None:
    resources.receiver.journal().ping()


def _check_redis(resources: Services) -> None:
    queue = resources.receiver.queue
    if queue is not None:
        queue.ping()


def _check_index(resources: Services) -> None:
    # A fresh connection, not migrated: the shared one may look alive after the server went.
    store = open_index(resources.settings.index_url, migrate=False)
    try:
        store.ping()
    finally:
        store.close()


def _run(check: Callable[[Services], None], resources: Services) -> str:
    try:
        check(resources)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: 200 when the journal, Redis (if configured) and the index all answer."""
    resources = services()
    checks = {"journal": _run(_check_journal, resources)}
    if resources.settings.redis_url:
        checks["redis"] = _run(_check_redis, resources)
    checks["index"] = _run(_check_index, resources)
    ready = all(value == "ok" for value in checks.values())
    failed = [name for name, value in checks.items() if value != "ok"]
    body: dict[str, object] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if failed:
        body["failed"] = failed
    return jsonify(body), 200 if ready else 503
