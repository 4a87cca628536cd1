"""`/api/v1/storage-sites` (register, update, list, show) and a dataset's site selection.

Registering or updating a site is for GitLab administrators and members of
`DSHUB_ADMIN_GROUP`, and validates the site for real (see `indexer.sites.probe`); listing is
for every signed-in user. No response and no log line ever holds a credential: requests name
entries of the credentials file (`credentials_ref`, `credentials_ref_readonly`) and a field
that looks like a key is refused. Selecting a dataset's site is for Maintainers of its
GitLab project, happens once, and sets the project's CI/CD variables (the contract).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from dshub.config import Settings
from indexer.data.storage import StorageSite, load_credentials
from indexer.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Unavailable,
)
from indexer.gitlab.reader import REPORTER, GitLabReader
from indexer.ingest import routing
from indexer.ingest.journal import Delivery, JournalError
from indexer.read.search import Viewer
from indexer.sites.probe import ProbeStep, SiteValidationFailed, parse_networks, probe_site
from indexer.sites.registry import SiteRecord, placement_changes, validate_site, validated
from indexer.sites.selection import (
    MAINTAINER,
    REMOTE_NAME,
    NotADataset,
    SelectionExists,
    check_dvc_config,
    commit_dvc_config,
    contract_variables,
    dvc_remote_url,
    is_site_admin,
    set_variables,
)
from indexer.sync import refs as sync
from webhook_service.api_datasets import not_found
from webhook_service.api_uploads import in_line
from webhook_service.app_settings import services, settings_of
from webhook_service.auth import current_viewer, request_token
from webhook_service.bodies import json_object

log = logging.getLogger("dshub.sites")
blueprint = Blueprint("api_sites", __name__, url_prefix="/api/v1")
STORAGE_SITE_VARIABLE = "DSHUB_STORAGE_SITE"

_FIELDS = (
    "name",
    "kind",
    "endpoint_url",
    "bucket",
    "prefix",
    "region",
    "description",
    "access_mode",
    "credentials_ref",
    "credentials_ref_readonly",
    "path",
    "namespaces",
)
SITE_EXAMPLE = '{"name": "...", "kind": "s3", "bucket": "...", "credentials_ref": "..."}'
_SECRET_WORDS = ("secret", "password", "passwd", "token", "access_key", "key_id", "private")
_AWS_KEY = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


@blueprint.errorhandler(SiteValidationFailed)
def _validation_failed(exc: SiteValidationFailed) -> ResponseReturnValue:
    steps = [step.as_dict() for step in exc.steps]
    return jsonify(error={"code": exc.code, "message": exc.message, "steps": steps}), exc.status


def _signed_in() -> Viewer:
    viewer = current_viewer()
    if not viewer.signed_in or viewer.user_id is None:
        raise NotAuthenticated("sign in with your GitLab token to use storage sites")
    return viewer


def _user_id(viewer: Viewer) -> int:
    if viewer.user_id is None:
        raise NotAuthenticated("sign in with your GitLab token to use storage sites")
    return viewer.user_id


def _caller_reader(settings: Settings) -> GitLabReader:
    token = request_token()
    if not token:
        raise NotAuthenticated("sign in with your GitLab token")
    return services().request_reader(token)


def _caller_client(settings: Settings) -> Any:
    return _caller_reader(settings).client


def _caller_level(settings: Settings, viewer: Viewer, project_id: int, enough: int) -> int | None:
    """The caller's effective role on the project (inherited memberships count), None if unseen."""
    access = _caller_reader(settings).project_access(project_id, _user_id(viewer), enough)
    return None if access is None else access.level


def _is_site_admin(settings: Settings, viewer: Viewer) -> bool:
    return viewer.is_admin or is_site_admin(
        _caller_client(settings), _user_id(viewer), settings.admin_group
    )


def _require_site_admin(settings: Settings) -> Viewer:
    viewer = _signed_in()
    if _is_site_admin(settings, viewer):
        return viewer
    group = f" or members of GitLab group {settings.admin_group!r}" if settings.admin_group else ""
    raise Forbidden(f"only GitLab administrators{group} may register or change storage sites")


def site_json(
    record: SiteRecord, in_use: int | None = None, *, for_admin: bool = True
) -> dict[str, Any]:
    """The public shape of a site: never a credential, only whether it has some; a local
    site's directory (`path`) only for those who administer sites (`for_admin`)."""
    site = record.site
    body: dict[str, Any] = {
        "name": site.name,
        "kind": site.kind,
        "endpoint_url": site.endpoint_url,
        "bucket": site.bucket,
        "prefix": site.prefix,
        "region": site.region,
        "path": site.path if for_admin else None,
        "description": site.description,
        "access_mode": site.access_mode,
        "has_credentials": bool(site.credentials_ref),
        "validated": record.validated,
        "validated_at": record.validated_at.isoformat() if record.validated_at else None,
        "namespaces": list(record.namespaces),
    }
    if in_use is not None:
        body["datasets"] = in_use
    return body


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if "\x00" in value or len(value) > 2048:
        raise InvalidInput(f"{name} must be at most 2048 characters without NUL")
    return value.strip()


def _namespaces(body: Any) -> tuple[str, ...]:
    value = body.get("namespaces") if isinstance(body, dict) else None
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput('namespaces must be a list of GitLab namespace paths (e.g. ["lab"])')
    return tuple(sorted({v.strip().strip("/") for v in value}))


def _parse_site(body: Any, name: str | None = None) -> tuple[StorageSite, str | None]:
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object describing the storage site")
    secretish = [key for key in body if any(word in str(key).lower() for word in _SECRET_WORDS)] + [
        key for key, value in body.items() if isinstance(value, str) and _AWS_KEY.search(value)
    ]
    if secretish:
        raise InvalidInput(
            f"field(s) {', '.join(sorted(set(map(str, secretish))))} look like credentials; "
            "never send keys to dshub: put them in the credentials file "
            "(DSHUB_STORAGE_CREDENTIALS_FILE) and name the entry in credentials_ref"
        )
    unknown = sorted(str(key) for key in body if key not in _FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    if name is not None and body.get("name") not in (None, name):
        raise InvalidInput("the name in the body differs from the name in the URL")
    endpoint = _string(body, "endpoint_url") or None
    if endpoint and (urlsplit(endpoint).username or urlsplit(endpoint).password):
        raise InvalidInput("endpoint_url must not contain credentials")
    site = StorageSite(
        name=name or _string(body, "name") or "",
        kind=_string(body, "kind") or "",
        bucket=_string(body, "bucket") or "",
        prefix=(_string(body, "prefix") or "").strip("/"),
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        region=_string(body, "region") or None,
        description=_string(body, "description") or "",
        access_mode=_string(body, "access_mode") or "proxy",
        credentials_ref=_string(body, "credentials_ref") or None,
        path=_string(body, "path") or None,
    )
    readonly = _string(body, "credentials_ref_readonly") or None
    validate_site(site, readonly)
    if site.kind == "s3" and not site.credentials_ref:
        raise InvalidInput("an s3 site needs credentials_ref (an entry of the credentials file)")
    return site, readonly


def _probe(settings: Settings, site: StorageSite, readonly_ref: str | None) -> list[ProbeStep]:
    credentials = load_credentials(settings.storage_credentials_file)
    for ref in (site.credentials_ref, readonly_ref):
        if ref and ref not in credentials:
            raise InvalidInput(
                f"the credentials file has no entry {ref!r}; add it to "
                "DSHUB_STORAGE_CREDENTIALS_FILE first (JSON {ref: {access_key_id, "
                "secret_access_key}})"
            )
    rw = credentials.get(site.credentials_ref) if site.credentials_ref else None
    ro = credentials.get(readonly_ref) if readonly_ref else None
    allowed = parse_networks(settings.allow_link_local_endpoints)
    return probe_site(site, rw, ro, allowed=allowed)


def _in_use(name: str) -> int:
    """Every dataset on site `name` (for site administrators and the placement guard)."""
    chosen = services().sites.datasets_using(name)
    indexed = sum(1 for d in services().index.list_datasets() if d.storage_site == name)
    return max(chosen, indexed)


def _in_use_visible(name: str, viewer: Viewer) -> int:
    """The datasets on site `name` that `viewer` may read: a count never reveals the others."""
    chosen = services().sites.datasets_selecting(name)
    return sum(
        1
        for d in services().index.list_datasets()
        if (d.storage_site == name or d.project_id in chosen) and viewer.can_read(d)
    )


def _steps_json(steps: list[ProbeStep]) -> list[dict[str, str]]:
    return [step.as_dict() for step in steps]


@blueprint.post("/storage-sites")
def register_site() -> ResponseReturnValue:
    """Register a new site after validating it for real (201), or 409 if the name exists."""
    settings = settings_of(current_app)
    viewer = _require_site_admin(settings)
    body = json_object(example=SITE_EXAMPLE)
    site, readonly = _parse_site(body)
    if services().sites.record(site.name) is not None:
        raise Conflict(
            f"storage site {site.name!r} is already registered; "
            f"to change it use PUT /api/v1/storage-sites/{site.name}"
        )
    steps = _probe(settings, site, readonly)
    record = validated(
        SiteRecord(site, readonly, registered_by=viewer.user_id, namespaces=_namespaces(body))
    )
    services().sites.save(record)
    log.info(
        "storage site registered",
        extra={"site": site.name, "kind": site.kind, "user_id": viewer.user_id},
    )
    return jsonify({**site_json(record, 0), "steps": _steps_json(steps)}), 201


@blueprint.put("/storage-sites/<name>")
def update_site(name: str) -> ResponseReturnValue:
    """Update a registered site (validated again); a site in use keeps its placement."""
    settings = settings_of(current_app)
    viewer = _require_site_admin(settings)
    current = services().sites.record(name)
    if current is None:
        raise NotFound(f"storage site {name!r} is not registered; register it with POST first")
    body = json_object(example=SITE_EXAMPLE)
    site, readonly = _parse_site(body, name)
    changed = placement_changes(current.site, site)
    in_use = _in_use(name)
    if changed and in_use:
        raise Conflict(
            f"storage site {name!r} holds {in_use} dataset(s); its {', '.join(changed)} "
            "cannot change (their objects live there). Register a new site instead"
        )
    steps = _probe(settings, site, readonly)
    record = validated(
        SiteRecord(site, readonly, registered_by=viewer.user_id, namespaces=_namespaces(body))
    )
    services().sites.save(record)
    log.info("storage site updated", extra={"site": name, "user_id": viewer.user_id})
    return jsonify({**site_json(record, in_use), "steps": _steps_json(steps)})


@blueprint.get("/storage-sites")
def list_sites() -> ResponseReturnValue:
    """Registered sites matching `q` (name, description, kind, bucket), for signed-in users."""
    viewer = _signed_in()
    q = request.args.get("q")
    if q is not None and len(q) > 200:
        raise InvalidInput("q must be at most 200 characters")
    admin = _is_site_admin(settings_of(current_app), viewer)
    items = [site_json(record, for_admin=admin) for record in services().sites.records(q)]
    return jsonify(items=items, total=len(items))


@blueprint.get("/storage-sites/<name>")
def get_site(name: str) -> ResponseReturnValue:
    """One registered site, with how many datasets use it (that the caller may read, unless
    the caller administers sites)."""
    viewer = _signed_in()
    record = services().sites.record(name)
    if record is None:
        raise NotFound(f"storage site {name!r} is not registered")
    if _is_site_admin(settings_of(current_app), viewer):
        return jsonify(site_json(record, _in_use(name)))
    return jsonify(site_json(record, _in_use_visible(name, viewer), for_admin=False))


# ------------------------------------------------------------------------------ selection


def _service_reader(settings: Settings) -> GitLabReader:
    if settings.gitlab_url is None or not settings.gitlab_token:
        raise Unavailable(
            "dshub has no service token (DSHUB_GITLAB_TOKEN); it cannot set CI/CD variables"
        )
    return services().service_reader


def _check_maintainer(settings: Settings, viewer: Viewer, project_id: int) -> None:
    level = _caller_level(settings, viewer, project_id, MAINTAINER)
    if level is None:
        raise not_found(project_id)
    if level < MAINTAINER and not viewer.is_admin:
        raise Forbidden(
            f"choosing the storage site of dataset {project_id} needs the Maintainer role "
            "(or Owner) in its GitLab project"
        )


def _queue_sync(project_id: int) -> str:
    """Submit a `sync_project` so the index learns the site (the queue or embedded worker runs it)."""
    kind = "storage_site_selected"
    delivery = Delivery(
        f"{kind}:{project_id}:{uuid.uuid4()}",
        kind,
        project_id,
        [routing.sync_project_job(project_id)],
    )
    try:
        services().receiver.submit(delivery)
    except JournalError as exc:
        log.warning("sync not queued", extra={"project_id": project_id, "error": str(exc)})
        return "not queued; the next reconcile indexes the site"
    return "queued"


@blueprint.get("/datasets/<int:project_id>/storage-site")
def get_selection(project_id: int) -> ResponseReturnValue:
    """The dataset's selected site (null before selection), for callers who may read the
    dataset (GitLab's rule: public, internal, or private with Reporter or more); anyone else
    gets the 404 of a dataset that does not exist."""
    settings = settings_of(current_app)
    viewer = _signed_in()
    access = _caller_reader(settings).project_access(project_id, _user_id(viewer), REPORTER)
    readable = access is not None and (
        viewer.is_admin or access.visibility in ("public", "internal") or access.level >= REPORTER
    )
    if not readable:
        raise not_found(project_id)
    selection = services().sites.selection(project_id)
    return jsonify(
        dataset_id=project_id,
        storage_site=selection.site if selection else None,
        applied=bool(selection and selection.applied_at),
    )


@blueprint.post("/datasets/<int:project_id>/storage-site")
def select_site(project_id: int) -> ResponseReturnValue:
    """Choose the dataset's storage site, once: commits `.dvc/config` naming the remote `dshub`
    as the caller, then sets the project's CI/CD variables (201).

    Everything that can refuse is checked before anything is written; the selection counts as
    applied only when the commit and the variables are both done, so a request that failed
    part-way is simply sent again (each step is idempotent)."""
    settings = settings_of(current_app)
    viewer = _signed_in()
    _check_maintainer(settings, viewer, project_id)
    example = '{"name": "<storage site>"}'
    name = json_object(example=example).get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"send {example}")
    return jsonify(apply_site(project_id, name, viewer)), 201


def apply_site(project_id: int, name: str, viewer: Viewer | None = None) -> dict[str, Any]:
    """Select storage site `name` for the dataset as the caller (Maintainer, checked here):
    the `.dvc/config` commit and the CI/CD variables; the API's 201 body. The UI's "Apply"
    calls this too."""
    settings = settings_of(current_app)
    if viewer is None:
        viewer = _signed_in()
        _check_maintainer(settings, viewer, project_id)
    reader = _service_reader(settings)
    project = reader.project(project_id)
    if project is None:
        raise not_found(project_id)
    if not reader.is_dataset(project):
        raise NotADataset(
            f"project {project_id} is not a dataset: its default branch has no .dvc/config; "
            "run `dvc init` and push before choosing a storage site"
        )
    current = services().sites.selection(project_id)
    if current is None:
        existing = reader.ci_variable(project_id, STORAGE_SITE_VARIABLE)
        if existing:  # chosen before dshub recorded selections: GitLab's value stands
            current, _ = services().sites.select(project_id, existing, None)
            services().sites.mark_applied(project_id)
            current = services().sites.selection(project_id)
    if current is not None and (current.site != name or current.applied_at is not None):
        raise SelectionExists(
            f"dataset {project_id} already uses storage site {current.site!r}; "
            "a dataset's storage site cannot be changed"
        )
    record = services().sites.record(name)
    if record is None:
        raise NotFound(f"storage site {name!r} is not registered")
    if not record.allows(project.namespace):
        raise Forbidden(
            f"storage site {name!r} is reserved for the namespaces "
            f"{', '.join(record.namespaces)}; dataset {project_id} is in {project.namespace!r}. "
            "Choose another site (GET /api/v1/storage-sites) or ask its administrator"
        )
    credentials = load_credentials(settings.storage_credentials_file)
    variables = contract_variables(record, project_id, settings.public_url, credentials)
    remote_url = dvc_remote_url(record, project_id, settings.public_url)
    branch = project.default_branch or "main"
    caller_project = _caller_client(settings).projects.get(project_id, lazy=True)
    check_dvc_config(caller_project, branch, remote_url)  # a foreign default remote: 409 now
    chosen, _ = services().sites.select(project_id, name, viewer.user_id)
    if chosen.site != name:  # a concurrent request won
        raise SelectionExists(
            f"dataset {project_id} already uses storage site {chosen.site!r}; "
            "a dataset's storage site cannot be changed"
        )
    commit = commit_dvc_config(caller_project, branch, remote_url)
    set_variables(reader.client, project_id, variables)
    services().sites.mark_applied(project_id)
    log.info(
        "storage site selected",
        extra={
            "project_id": project_id,
            "site": name,
            "user_id": viewer.user_id,
            "commit": commit,
        },
    )
    return {
        "dataset_id": project_id,
        "storage_site": name,
        "access_mode": record.site.access_mode,
        "dvc_remote_url": remote_url,
        "dvc_remote": REMOTE_NAME,
        "commit": commit,
        "variables": [variable.key for variable in variables],
        "sync": _index_selection(project_id),
    }


def _index_selection(project_id: int) -> str:
    """Index the selection before answering, so the next page already shows the site (and
    "Upload Files"); when that takes longer than the in-line budget or fails, a queued sync
    finishes it."""
    context = services().job_context
    if in_line(lambda: sync.sync_project(context, project_id)) == "synced":
        return "synced"
    return _queue_sync(project_id)
