"""The storage-site registry, kept in the service database (the same database as the index).

Unlike the index, the registry is not derived from GitLab: sites are registered by
administrators. It stores no secret — only the name of an entry in the credentials file.
The embedded default registers one local-directory site (`local`) under the data directory.
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

from indexer.errors import InvalidInput
from indexer.storage import StorageSite

_COLUMNS = (
    "name, kind, bucket, prefix, endpoint_url, region, description, access_mode, "
    "credentials_ref, path"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS storage_sites (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    bucket TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL DEFAULT '',
    endpoint_url TEXT,
    region TEXT,
    description TEXT NOT NULL DEFAULT '',
    access_mode TEXT NOT NULL DEFAULT 'proxy',
    credentials_ref TEXT,
    path TEXT
)
"""
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def validate_site(site: StorageSite) -> StorageSite:
    """Check a site's fields before it is stored; raises `InvalidInput` naming the field."""
    if not site.name or len(site.name) > 64 or not set(site.name) <= NAME_CHARS:
        raise InvalidInput("name must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")
    if site.kind not in ("s3", "local"):
        raise InvalidInput("kind must be 's3' or 'local'")
    if site.access_mode not in ("proxy", "direct"):
        raise InvalidInput("access_mode must be 'proxy' or 'direct'")
    if ".." in site.prefix.split("/") or site.prefix.startswith("/"):
        raise InvalidInput("prefix must be a relative key prefix without '..'")
    if site.kind == "s3" and not site.bucket:
        raise InvalidInput("an s3 site needs a bucket")
    if site.kind == "local" and not (site.path and Path(site.path).is_absolute()):
        raise InvalidInput("a local site needs an absolute path")
    if site.endpoint_url and urlsplit(site.endpoint_url).scheme not in ("http", "https"):
        raise InvalidInput("endpoint_url must be an http:// or https:// URL")
    return site


class SiteRegistry:
    """Registered storage sites in the database at `url` (sqlite:/// or postgresql://)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._postgres = urlsplit(url).scheme in ("postgresql", "postgres")
        with self._connection() as conn:
            conn.execute(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._postgres:
            with psycopg.connect(self.url, autocommit=False) as pg:
                yield pg
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
        return text.replace("?", "%s") if self._postgres else text

    def put(self, site: StorageSite) -> StorageSite:
        """Register or update a site (idempotent by name)."""
        validate_site(site)
        placeholders = ", ".join("?" * 10)
        updates = ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS.split(", ")[1:])
        with self._connection() as conn:
            conn.execute(
                self._sql(
                    f"INSERT INTO storage_sites ({_COLUMNS}) VALUES ({placeholders}) "  # noqa: S608
                    f"ON CONFLICT (name) DO UPDATE SET {updates}"
                ),
                _row(site),
            )
        return site

    def get(self, name: str) -> StorageSite | None:
        """The site registered under `name`, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(f"SELECT {_COLUMNS} FROM storage_sites WHERE name = ?"),  # noqa: S608
                (name,),
            ).fetchone()
        return _site(row) if row else None

    def list(self, q: str | None = None) -> list[StorageSite]:
        """Every site, or those whose name or description contains `q` (case-insensitive)."""
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(f"SELECT {_COLUMNS} FROM storage_sites ORDER BY name")  # noqa: S608
            ).fetchall()
        sites = [_site(row) for row in rows]
        if q:
            needle = q.casefold()
            sites = [s for s in sites if needle in s.name or needle in s.description.casefold()]
        return sites


def _row(site: StorageSite) -> tuple[Any, ...]:
    return (
        site.name,
        site.kind,
        site.bucket,
        site.prefix,
        site.endpoint_url,
        site.region,
        site.description,
        site.access_mode,
        site.credentials_ref,
        site.path,
    )


def _site(row: Any) -> StorageSite:
    return StorageSite(
        name=row[0],
        kind=row[1],
        bucket=row[2],
        prefix=row[3],
        endpoint_url=row[4],
        region=row[5],
        description=row[6],
        access_mode=row[7],
        credentials_ref=row[8],
        path=row[9],
    )


LOCAL_SITE = "local"


def ensure_embedded_site(registry: SiteRegistry, data_dir: Path) -> StorageSite | None:
    """On the embedded default, register the local-directory site `local` if no site exists."""
    if registry.list():
        return None
    site = StorageSite(
        name=LOCAL_SITE,
        kind="local",
        path=str((data_dir / "storage").resolve()),
        description="Local directory on this machine (the embedded default)",
    )
    return registry.put(site)
