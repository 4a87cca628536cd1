"""The service database the site registry and the upload sessions keep their rows in.

It is the index's database (`DSHUB_INDEX_URL`): SQLite, one connection per thread, or
PostgreSQL, a connection per use. Both stores extend `ServiceDatabase` instead of each
opening connections its own way. Their tables are the index's migrations
(`indexer/store/migrations/`), applied — once, under the index's own lock — before the
first connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from indexer.errors import Unavailable
from indexer.store import open_index


class ServiceDatabase:
    """Connections to the service database at `url` (sqlite:/// or postgresql://)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._local = threading.local()
        self._postgres = urlsplit(url).scheme in ("postgresql", "postgres")
        if migrate:  # the service database's schema is the index's migrations
            open_index(url).close()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection inside a transaction, committed when the block ends without error."""
        if self._postgres:
            try:
                pg = psycopg.connect(self.url, autocommit=False, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise Unavailable(f"cannot connect to the service database: {exc}") from None
            try:
                with pg:
                    yield pg
            except psycopg.OperationalError as exc:  # the server went away mid-way
                raise Unavailable(f"the service database connection failed: {exc}") from None
            return
        lite: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if lite is None:
            path = self.url[len("sqlite:///") :]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            lite = sqlite3.connect(path, timeout=30)
            self._local.conn = lite
        with lite:
            yield lite

    def _sql(self, text: str) -> str:
        """`text` with `?` placeholders in the backend's own style."""
        return text.replace("?", "%s") if self._postgres else text
