"""The storage-site registry and dataset site selections, kept in the service database.

Unlike the index, the registry is not derived from GitLab: sites are registered by
administrators. It stores no secret — only the names of entries in the credentials file
(`credentials_ref` for the read-write keys the service uses, `credentials_ref_readonly` for
the read-only keys direct-mode pipelines get). A dataset's selection (which site it uses) is
recorded here once and never changed; it is mirrored into the project's `DSHUB_STORAGE_SITE`
CI/CD variable, so it can be rebuilt from GitLab. The embedded default registers one
local-directory site (`local`) under the data directory.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from indexer.data.storage import StorageSite
from indexer.errors import DshubError, InvalidInput
from indexer.service_db import ServiceDatabase

_BASE_COLUMNS = (
    "name",
    "kind",
    "bucket",
    "prefix",
    "endpoint_url",
    "region",
    "description",
    "access_mode",
    "credentials_ref",
    "path",
)
# Every column, in order; the tables themselves are created by the service database's
# migrations (indexer/store/migrations/*/..._storage_sites.sql).
_COLUMNS = ", ".join(
    (*_BASE_COLUMNS, "credentials_ref_readonly", "validated_at", "registered_by", "namespaces")
)
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# Fields that decide where a dataset's objects live: frozen once a dataset uses the site.
PLACEMENT_FIELDS = ("kind", "bucket", "prefix", "path")


@dataclass(frozen=True)
class SiteRecord:
    """A registered site with what the registry knows about it beyond `StorageSite`."""

    site: StorageSite
    credentials_ref_readonly: str | None = None
    validated_at: datetime | None = None
    registered_by: int | None = None
    namespaces: tuple[str, ...] = ()

    @property
    def validated(self) -> bool:
        """True when the site passed the write/read/delete probe at its last registration."""
        return self.validated_at is not None

    def allows(self, namespace: str) -> bool:
        """Whether a dataset in `namespace` (full path) may select this site: every namespace
        when the site names none, else those namespaces and their subgroups."""
        if not self.namespaces:
            return True
        return any(namespace == ns or namespace.startswith(ns + "/") for ns in self.namespaces)


@dataclass(frozen=True)
class Selection:
    """A dataset's (immutable) choice of storage site; `applied_at` is set once GitLab has it."""

    project_id: int
    site: str
    selected_by: int | None
    selected_at: datetime
    applied_at: datetime | None


def validate_site(site: StorageSite, credentials_ref_readonly: str | None = None) -> StorageSite:
    """Check a site's fields before it is stored; raises `InvalidInput` naming the field."""
    if not site.name or len(site.name) > 64 or not set(site.name) <= NAME_CHARS:
        raise InvalidInput("name must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")
    if site.kind not in ("s3", "local"):
        raise InvalidInput("kind must be 's3' or 'local'")
    if site.access_mode not in ("proxy", "direct"):
        raise InvalidInput("access_mode must be 'proxy' or 'direct'")
    if ".." in site.prefix.split("/") or site.prefix.startswith("/") or "\\" in site.prefix:
        raise InvalidInput("prefix must be a relative key prefix without '..' or backslashes")
    if site.kind == "s3" and not site.bucket:
        raise InvalidInput("an s3 site needs a bucket")
    if site.kind == "local":
        _check_local_path(site.path)
    if site.endpoint_url and urlsplit(site.endpoint_url).scheme not in ("http", "https"):
        raise InvalidInput("endpoint_url must be an http:// or https:// URL")
    if site.access_mode == "direct":
        if site.kind != "s3":
            raise InvalidInput("access_mode 'direct' needs an s3 site (pipelines use S3 directly)")
        if not site.credentials_ref or not credentials_ref_readonly:
            raise InvalidInput(
                "access_mode 'direct' needs credentials_ref (read-write keys) and "
                "credentials_ref_readonly (read-only keys for merge-request pipelines)"
            )
    return site


def _check_local_path(path: str | None) -> None:
    """A local site's directory is absolute and already normal: no `..`, `.`, `//` or trailing
    `/` (a typo there must not make dshub write its validation probe somewhere else)."""
    if not (path and Path(path).is_absolute()):
        raise InvalidInput("a local site needs an absolute path")
    normal = posixpath.normpath(path)
    if ".." in path.split("/") or normal != path or path.startswith("//") or "\\" in path:
        raise InvalidInput(
            f"path must be a normalised absolute directory without '..' segments, e.g. "
            f"{normal if '..' not in normal.split('/') else '/srv/dshub'!r}"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SiteRegistry(ServiceDatabase):
    """Registered storage sites in the database at `url` (sqlite:/// or postgresql://)."""

    # ------------------------------------------------------------------ sites

    def put(self, site: StorageSite) -> StorageSite:
        """Register or update a site (idempotent by name), keeping no validation mark."""
        self.save(SiteRecord(site))
        return site

    def save(self, record: SiteRecord) -> SiteRecord:
        """Register or replace a site record by name (the caller decides whether it may)."""
        validate_site(record.site, record.credentials_ref_readonly)
        names = _COLUMNS.split(", ")
        placeholders = ", ".join("?" * len(names))
        updates = ", ".join(f"{column} = excluded.{column}" for column in names[1:])
        with self._connection() as conn:
            conn.execute(
                self._sql(
                    f"INSERT INTO storage_sites ({_COLUMNS}) VALUES ({placeholders}) "  # noqa: S608
                    f"ON CONFLICT (name) DO UPDATE SET {updates}"
                ),
                _row(record),
            )
        return record

    def get(self, name: str) -> StorageSite | None:
        """The site registered under `name`, or None."""
        record = self.record(name)
        return record.site if record else None

    def record(self, name: str) -> SiteRecord | None:
        """The full record of the site registered under `name`, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(f"SELECT {_COLUMNS} FROM storage_sites WHERE name = ?"),  # noqa: S608
                (name,),
            ).fetchone()
        return _record(row) if row else None

    def records(self, q: str | None = None) -> list[SiteRecord]:
        """Every site record, or those whose name, description, kind or bucket contains `q`."""
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(f"SELECT {_COLUMNS} FROM storage_sites ORDER BY name")  # noqa: S608
            ).fetchall()
        found = [_record(row) for row in rows]
        if q:
            needle = q.casefold().strip()
            found = [r for r in found if needle in _haystack(r.site)]
        return found

    def list(self, q: str | None = None) -> list[StorageSite]:
        """Every site, or those matching `q` (case-insensitive; see `records`)."""
        return [record.site for record in self.records(q)]

    # ------------------------------------------------------------------ selections

    def select(self, project_id: int, site: str, user_id: int | None) -> tuple[Selection, bool]:
        """Record that dataset `project_id` uses `site`, unless it already chose one.

        Returns the selection in force and whether this call created it (first writer wins,
        also between concurrent requests: the row's primary key decides).
        """
        with self._connection() as conn:
            cursor = conn.execute(
                self._sql(
                    "INSERT INTO dataset_storage_sites (project_id, site, selected_by, selected_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (project_id) DO NOTHING"
                ),
                (project_id, site, user_id, _now().isoformat()),
            )
            created = cursor.rowcount == 1
        current = self.selection(project_id)
        if current is None:  # pragma: no cover - the row was inserted now or before
            raise InvalidInput(f"dataset {project_id}: the selection could not be recorded")
        return current, created

    def selection(self, project_id: int) -> Selection | None:
        """The dataset's recorded selection, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(
                    "SELECT project_id, site, selected_by, selected_at, applied_at "
                    "FROM dataset_storage_sites WHERE project_id = ?"
                ),
                (project_id,),
            ).fetchone()
        if row is None:
            return None
        return Selection(int(row[0]), str(row[1]), row[2], _time(row[3]) or _now(), _time(row[4]))

    def mark_applied(self, project_id: int) -> None:
        """Note that the selection's CI/CD variables are set on the GitLab project."""
        with self._connection() as conn:
            conn.execute(
                self._sql("UPDATE dataset_storage_sites SET applied_at = ? WHERE project_id = ?"),
                (_now().isoformat(), project_id),
            )

    def datasets_selecting(self, site: str) -> set[int]:
        """The project ids of the datasets that have selected `site`."""
        with self._connection() as conn:
            rows = conn.execute(
                self._sql("SELECT project_id FROM dataset_storage_sites WHERE site = ?"), (site,)
            ).fetchall()
        return {int(row[0]) for row in rows}

    def datasets_using(self, site: str) -> int:
        """How many datasets have selected `site`."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql("SELECT COUNT(*) FROM dataset_storage_sites WHERE site = ?"), (site,)
            ).fetchone()
        return int(row[0])


def _haystack(site: StorageSite) -> str:
    return " ".join((site.name, site.description, site.kind, site.bucket)).casefold()


def _row(record: SiteRecord) -> tuple[Any, ...]:
    site = record.site
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
        record.credentials_ref_readonly,
        record.validated_at.isoformat() if record.validated_at else None,
        record.registered_by,
        json.dumps(list(record.namespaces)) if record.namespaces else None,
    )


def _record(row: Any) -> SiteRecord:
    site = StorageSite(
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
    namespaces = tuple(str(ns) for ns in json.loads(row[13])) if row[13] else ()
    return SiteRecord(site, row[10], _time(row[11]), row[12], namespaces)


def placement_changes(old: StorageSite, new: StorageSite) -> list[str]:
    """The placement fields (kind, bucket, prefix, path) that differ between two versions."""
    return [f for f in PLACEMENT_FIELDS if getattr(old, f) != getattr(new, f)]


def validated(record: SiteRecord) -> SiteRecord:
    """The record marked as validated now."""
    return replace(record, validated_at=_now())


class DatasetSiteError(DshubError):
    """The dataset's storage site cannot be used: none chosen, two disagreeing, unknown."""

    status = 409
    code = "storage_site_unusable"
    exit_code = 1


class NoSiteSelected(DatasetSiteError):
    """The dataset has no storage site yet."""

    code = "no_storage_site"


class SiteDisagreement(DatasetSiteError):
    """The recorded selection and the project's DSHUB_STORAGE_SITE variable name different sites."""


class SiteNotRegistered(DatasetSiteError):
    """The dataset names a site the registry does not hold."""


def site_of_dataset(registry: SiteRegistry, project_id: int, variable: str | None) -> StorageSite:
    """The dataset's storage site: the recorded selection, else `variable` (the project's
    `DSHUB_STORAGE_SITE` as the index knows it, for a variable set outside dshub). When both
    exist they must agree. Raises a `DatasetSiteError` saying which rule failed."""
    selection = registry.selection(project_id)
    name = selection.site if selection is not None else variable
    if not name:
        raise NoSiteSelected(f"dataset {project_id} has no storage site")
    if selection is not None and variable and variable != name:
        raise SiteDisagreement(
            f"dataset {project_id} selected storage site {name!r} but its DSHUB_STORAGE_SITE "
            f"variable says {variable!r}"
        )
    site = registry.get(name)
    if site is None:
        raise SiteNotRegistered(
            f"dataset {project_id} names storage site {name!r}, which is not registered"
        )
    return site


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
