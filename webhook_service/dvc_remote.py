"""dshub's DVC remote (proxy mode): `<DSHUB_URL>/dvc/<project_id>` as a DVC http remote.

Routes: `GET|HEAD|POST|PUT /dvc/<id>/files/md5/<2 hex>/<30 hex>[.dir]` (DVC 3 layout) and
`/dvc/<id>/<2 hex>/<30 hex>[.dir]` (DVC 2 layout, which DVC 3 uses for pointers without
`hash:`). The path after `/dvc/<id>/` is the object's key under the dataset's prefix on its
storage site; any other path (uppercase, traversal, percent-escapes, empty segments) is a 404
that never touches storage. `POST /dvc/<id>/missing {"keys": [...]}` answers which of up to
10,000 keys the site does not hold (`indexer.data.presence`; `missing` can never be a key), with
the authorisation of a read.

DVC's http remote checks presence with a GET per object (fsspec's `exists`; 404 = absent,
and it never lists), downloads with GET (ranges allowed), and uploads each object with one
POST (or PUT, its `method` option) whose body is the raw bytes sent with chunked
transfer-encoding; any status below 400 is success. Callers authenticate on every request
(`indexer.read.remote_access`; 401 carries `WWW-Authenticate: Basic realm="dshub"` so DVC's
`auth basic` / `ask_password` work). An upload is streamed to a temp file under the data
directory while its md5 is computed, refused with 400 when the bytes do not hash to the id
in the path, and only then stored (local sites: rename; S3: upload after the check), so a
bad or partial upload never appears at its key. An object already stored is not rewritten.

Whether an object is stored (a GET, a HEAD, an upload's "already there?") is answered from a
short-lived listing of the dataset's prefix kept per worker process and brought up to date
with every write and delete of any process (`indexer.data.listing_cache`), so a new object
costs the site one PutObject and a download one GetObject.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from dshub.services import Services
from indexer.data.listing_cache import LoggedObjects
from indexer.data.object_ids import ObjectKey, parse_object_key
from indexer.data.presence import MAX_KEYS, check_presence, parse_keys
from indexer.data.storage import (
    CHUNK,
    LocalObjectStore,
    ObjectMissing,
    S3ObjectStore,
    StorageSite,
)
from indexer.errors import (
    DshubError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Unavailable,
)
from indexer.gitlab.job_tokens import JobIdentity, job_token_fetches, verify_job_token
from indexer.read.remote_access import Credential, Grant, RemoteAccess, credential_from_headers
from indexer.sites.registry import NoSiteSelected, site_of_dataset
from indexer.write.objects import StagedObject, stage_stream, store_verified
from webhook_service import metrics
from webhook_service.api_datasets import not_found
from webhook_service.api_files import ranged_response
from webhook_service.app_settings import services
from webhook_service.bodies import BodyTooLarge, json_object

blueprint = Blueprint("dvc_remote", __name__)
log = logging.getLogger("dshub.dvc_remote")
EXTENSION = "dshub.dvc_remote"
REALM = 'Basic realm="dshub"'
SITE_TTL = 30.0  # a site's access mode may be changed by its administrator
STALE_UPLOAD_SECONDS = 24 * 3600
PRESENCE_MAX_BODY = 1024 * 1024  # 10,000 keys of at most 49 characters, JSON-quoted, fit
IMMUTABLE = "private, max-age=31536000, immutable"  # an object's bytes never change


class DirectAccessMode(DshubError):
    """The dataset's site is in direct access mode: DVC reaches the bucket itself."""

    status = 409
    code = "direct_access_mode"
    exit_code = 2


class TooLarge(DshubError):
    """An upload larger than DSHUB_DVC_MAX_OBJECT_BYTES."""

    status = 413
    code = "object_too_large"
    exit_code = 2


@dataclass
class _Opened:
    store: LocalObjectStore | S3ObjectStore
    site: StorageSite
    expires: float


class Remote:
    """Per-application state: access decisions (cached) and each dataset's opened store."""

    def __init__(self, resources: Services) -> None:
        self.resources = resources
        self.settings = settings = resources.settings
        gitlab_url = settings.gitlab_url

        def verify_job(token: str) -> JobIdentity:
            if gitlab_url is None:
                raise Unavailable("no GitLab is configured (DSHUB_GITLAB_URL)")
            return verify_job_token(gitlab_url, token)

        def job_fetches(token: str, project_id: int) -> bool:
            # Another project's job token: may it fetch this dataset's repository? GitLab says.
            dataset = resources.service_reader.project(project_id)
            if dataset is None or gitlab_url is None:
                return False
            return job_token_fetches(gitlab_url, dataset.path_with_namespace, token)

        self.access = RemoteAccess(
            resources.request_reader, verify_job, resources.generation, job_fetches=job_fetches
        )
        self.uploads = settings.data_dir / "dvc-uploads"
        self.objects_log = resources.objects_log
        self.listings = resources.listings
        self._stores: dict[int, _Opened] = {}
        self._lock = threading.Lock()
        self._opening = threading.Lock()
        self._swept = False

    def store(self, project_id: int) -> tuple[LocalObjectStore | S3ObjectStore, StorageSite]:
        """The dataset's objects on its proxy-mode site; 409 naming what to do otherwise.

        Looked up again every `SITE_TTL` seconds (an administrator may change the site's
        access mode); the opened store (for S3 a boto3 client, slow to create) is kept as long
        as the site's record is unchanged, and concurrent misses open it once."""
        now = time.monotonic()
        with self._lock:
            opened = self._stores.get(project_id)
        if opened is not None and opened.expires > now:
            return opened.store, opened.site
        with self._opening:
            with self._lock:
                opened = self._stores.get(project_id)
            if opened is not None and opened.expires > now:
                return opened.store, opened.site
            site = self._site(project_id)
            if opened is not None and opened.site == site:
                store = opened.store
            else:
                store = self.resources.open_objects(site, project_id)
            with self._lock:
                if len(self._stores) > 1024:
                    self._stores.clear()
                self._stores[project_id] = _Opened(store, site, now + SITE_TTL)
        return store, site

    def _site(self, project_id: int) -> StorageSite:
        registry = self.resources.sites
        variable = None
        if registry.selection(project_id) is None:
            # A DSHUB_STORAGE_SITE variable set outside dshub is known from the index only.
            indexed = services().index.get_dataset(project_id)
            variable = indexed.storage_site if indexed is not None else None
        try:
            site = site_of_dataset(registry, project_id, variable)
        except NoSiteSelected:
            raise NoSiteSelected(
                f"dataset {project_id} has no storage site yet: a Maintainer selects one with "
                f'POST /api/v1/datasets/{project_id}/storage-site {{"name": "<site>"}} '
                "(GET /api/v1/storage-sites lists them); then push again"
            ) from None
        if site.access_mode != "proxy":
            raise DirectAccessMode(
                f"dataset {project_id} uses storage site {site.name!r} in direct access mode: "
                "DVC reaches the bucket itself, not through dshub. Use the bucket directly: the "
                "remote URL is the project's DSHUB_DVC_REMOTE_URL variable"
            )
        return site

    def upload_dir(self) -> Path:
        """Where uploads are staged; files left by a killed process are removed once a day old."""
        self.uploads.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._swept = True
            cutoff = time.time() - STALE_UPLOAD_SECONDS
            for stale in self.uploads.glob("*.part"):
                try:
                    if stale.stat().st_mtime < cutoff:
                        stale.unlink()
                except OSError:
                    continue
        return self.uploads


def init_app(app: Flask) -> None:
    """Register the remote's routes and its per-application state."""
    app.extensions[EXTENSION] = Remote(services(app))
    app.register_blueprint(blueprint)


def _remote() -> Remote:
    remote: Remote = current_app.extensions[EXTENSION]
    return remote


@blueprint.after_request
def _challenge(response: Response) -> Response:
    # DVC's `ask_password` and generic HTTP clients prompt for credentials on this challenge.
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = REALM
    metrics.count_dvc_request(request.method, response.status_code)
    return response


@blueprint.route(
    "/dvc/<int:project_id>/<path:key>",
    methods=["GET", "HEAD", "POST", "PUT"],
    merge_slashes=False,
    strict_slashes=True,
)
def dvc_object(project_id: int, key: str) -> ResponseReturnValue:
    """One object of dataset `project_id` (see the module docstring)."""
    target = _object_key(project_id, key)
    writing = request.method in ("POST", "PUT")
    grant = _authorise(project_id, writing)
    store, site = _remote().store(project_id)
    if writing:
        return _upload(project_id, target, store, site, grant)
    return _download(project_id, target, store)


def _exact_path(project_id: int, rest: str) -> None:
    """Refuse a path not spelled exactly `/dvc/<id>/<rest>` (percent-escapes, `0<id>`)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw is not None:
        raw_path = raw.split("?", 1)[0]
        if raw_path != f"/dvc/{project_id}/{rest}":
            raise NotFound("no such object: the path must be a DVC object key, unescaped")


def _object_key(project_id: int, key: str) -> ObjectKey:
    """The key from the path exactly as sent: percent-escapes (`%2F`, `%2e`) and anything but
    a DVC object key are refused before anything else happens."""
    _exact_path(project_id, key)
    parsed = parse_object_key(key)
    if parsed is None:
        raise NotFound(
            "no such object: keys are files/md5/<2 hex>/<30 hex>[.dir] or <2 hex>/<30 hex>[.dir]"
        )
    return parsed


def _credential() -> Credential | None:
    return credential_from_headers(dict(request.headers), dict(request.cookies))


def _authorise(project_id: int, writing: bool) -> Grant:
    credential = _credential()
    grant = _remote().access.grant(credential, project_id)
    if grant.anonymous and (writing or not grant.read):
        raise NotAuthenticated(
            "dshub's DVC remote needs your GitLab token: `dvc remote modify --local <remote> "
            "auth basic`, `user <your user name>`, `password <token>` (CI jobs: JOB-TOKEN)"
        )
    if not grant.visible:
        raise not_found(project_id)
    if writing and not grant.write:
        raise Forbidden(
            f"pushing to dataset {project_id} needs the Developer role or more on its GitLab "
            "project (or a CI job of the project itself; other projects' jobs only read)"
        )
    if not grant.read:
        raise Forbidden(
            f"dataset {project_id} is private: reading its data needs the Reporter role or more"
        )
    return grant


# ------------------------------------------------------------------------------ presence


@blueprint.post("/dvc/<int:project_id>/missing", merge_slashes=False, strict_slashes=True)
def dvc_missing(project_id: int) -> ResponseReturnValue:
    """Which of the object keys in `{"keys": [...]}` dataset `project_id`'s site does not hold:
    `{"missing": [...], "checked": n}` (distinct keys, in request order), asked of storage."""
    _exact_path(project_id, "missing")
    grant = _authorise(project_id, writing=False)
    keys = parse_keys(_presence_keys())
    store, site = _remote().store(project_id)
    started = time.monotonic()
    checked = check_presence(store, keys)
    missing: set[str] = set()
    for part in checked:
        missing |= part.missing
        metrics.count_dvc_presence(part.method, part.keys - len(part.missing), len(part.missing))
    log.info(
        "dvc presence checked",
        extra={
            "project_id": project_id,
            "keys": len(keys),
            "missing": len(missing),
            "methods": ",".join(f"{part.layout}:{part.method}" for part in checked),
            "seconds": round(time.monotonic() - started, 3),
            "by": grant.who,
            "site": site.name,
        },
    )
    return jsonify(missing=[key.key for key in keys if key.key in missing], checked=len(keys))


def _presence_keys() -> object:
    """The `keys` of the JSON body, which is read whole but capped at PRESENCE_MAX_BODY."""
    example = '{"keys": ["files/md5/ab/cd..."]}'
    try:
        body = json_object(PRESENCE_MAX_BODY, example=example)
    except BodyTooLarge:
        raise BodyTooLarge(
            f"the request body is larger than {PRESENCE_MAX_BODY} bytes; send at most "
            f"{MAX_KEYS} keys per request"
        ) from None
    if set(body) != {"keys"}:
        raise InvalidInput(f"send a JSON object with one field: {example}")
    return body["keys"]


# ------------------------------------------------------------------------------ downloads


def _download(
    project_id: int, target: ObjectKey, store: LocalObjectStore | S3ObjectStore
) -> Response:
    listings = _remote().listings
    meta = listings.head(project_id, store, target.key)
    if meta is None:
        raise NotFound(f"object {target.oid} is not stored")
    headers = {
        "ETag": f'"{target.oid}"',
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "Cache-Control": IMMUTABLE,
        "X-Content-Type-Options": "nosniff",
    }

    def read(start: int, end: int) -> Iterator[bytes]:
        try:
            return store.read(target.key, start, end)
        except ObjectMissing:
            listings.forget(project_id)  # removed behind dshub's back since the listing
            raise NotFound(f"object {target.oid} is not stored") from None

    return ranged_response(meta.size, headers, read)


# ------------------------------------------------------------------------------ uploads


def _limit() -> int:
    return _remote().settings.dvc_max_object_bytes


def _too_large() -> TooLarge:
    return TooLarge(
        f"the object is larger than this dshub accepts ({_limit()} bytes, "
        "DSHUB_DVC_MAX_OBJECT_BYTES); ask the operator, or store it in a direct-mode site"
    )


def _body() -> IO[bytes]:
    """The request body, capped at the object limit (chunked bodies included)."""
    if request.mimetype.startswith("multipart/"):
        raise InvalidInput("send the object's raw bytes as the body, not a multipart form")
    length = request.content_length
    if length is not None and length > _limit():
        raise _too_large()
    # One byte of headroom: `_stage` counts and refuses on its own, with our message; werkzeug's
    # cap (which gunicorn's terminated streams get) would refuse a body of exactly the limit.
    request.max_content_length = _limit() + 1
    try:
        return request.stream
    except RequestEntityTooLarge:
        raise _too_large() from None


def _upload(
    project_id: int,
    target: ObjectKey,
    store: LocalObjectStore | S3ObjectStore,
    site: StorageSite,
    grant: Grant,
) -> ResponseReturnValue:
    body = _body()
    remote = _remote()
    if remote.listings.head(project_id, store, target.key) is not None:
        _drain(body)  # content-addressed: the stored bytes are these bytes
        return jsonify(key=target.key, stored=False), 200
    staged = _stage(body)
    store_verified(LoggedObjects(store, remote.objects_log, project_id), target, staged)
    size = staged.size
    metrics.count_dvc_stored(size)
    log.info(
        "dvc object stored",
        extra={
            "project_id": project_id,
            "key": target.key,
            "size": size,
            "by": grant.who,
            "site": site.name,
        },
    )
    return jsonify(key=target.key, size=size, stored=True), 201


def _read(body: IO[bytes]) -> bytes:
    try:
        return body.read(CHUNK)
    except RequestEntityTooLarge:
        raise _too_large() from None
    except (ClientDisconnected, OSError):
        # The client went away (or broke the chunked framing): nothing of it is kept.
        raise InvalidInput("the upload ended before its end; nothing was stored") from None


def _drain(body: IO[bytes]) -> None:
    while _read(body):
        pass


def _stage(body: IO[bytes]) -> StagedObject:
    """Write the body to a staging file in the data directory, hashing it on the way."""
    return stage_stream(
        lambda: _read(body), _remote().upload_dir(), _limit(), _too_large, request.content_length
    )
