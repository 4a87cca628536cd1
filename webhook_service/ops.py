"""Readiness: `GET /readyz` checks the journal, Redis (when configured) and the index.

200 `{"status": "ready", "checks": {...}}` when all answer; otherwise 503 with the failing
check(s) named. Messages name the error type, never a URL (URLs may carry passwords).
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from dshub.config import Settings
from webhook_service.webhooks import receiver_of

blueprint = Blueprint("ops", __name__)


class CheckFailed(Exception):
    """A dependency did not answer; the message is safe to show."""


def _check_journal() -> None:
    receiver_of(current_app._get_current_object()).journal().ping()  # type: ignore[attr-defined]


def _check_redis() -> None:
    queue = receiver_of(current_app._get_current_object()).queue  # type: ignore[attr-defined]
    if queue is not None:
        queue.ping()


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` index URL."""
    return Path(unquote(url[len("sqlite:///") :]))


def check_index(settings: Settings) -> None:
    """Raise unless the index answers: `indexer.store.open_store(url).ping()` when the store
    offers it, else a direct check of the SQLite file or PostgreSQL database."""
    try:
        store_module = importlib.import_module("indexer.store")
    except ImportError:
        store_module = None
    opener = getattr(store_module, "open_store", None)
    store_class = getattr(store_module, "IndexStore", None)
    if callable(opener) and callable(getattr(store_class, "ping", None)):
        store = opener(settings.index_url, migrate=False)
        try:
            store.ping()
        finally:
            store.close()
        return
    scheme = urlsplit(settings.index_url).scheme
    if scheme == "sqlite":
        path = sqlite_path(settings.index_url)
        if not path.exists():
            # Not created until the first job runs; ready if it can be created.
            if not os.access(path.parent if path.parent.exists() else ".", os.W_OK):
                raise CheckFailed("index directory is not writable")
            return
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(settings.index_url, connect_timeout=2) as database:
        database.execute("SELECT 1")


def _run(check: Callable[[], None]) -> str:
    try:
        check()
    except CheckFailed as exc:
        return f"error: {exc}"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: 200 when the journal, Redis (if configured) and the index all answer."""
    settings = receiver_of(current_app._get_current_object()).settings  # type: ignore[attr-defined]
    checks = {"journal": _run(_check_journal)}
    if settings.redis_url:
        checks["redis"] = _run(_check_redis)
    checks["index"] = _run(lambda: check_index(settings))
    ready = all(value == "ok" for value in checks.values())
    failed = [name for name, value in checks.items() if value != "ok"]
    body: dict[str, object] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if failed:
        body["failed"] = failed
    return jsonify(body), 200 if ready else 503
