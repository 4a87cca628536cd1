"""`/api/v1/datasets/<id>/objects` and `/gc`: what indexed versions need, and gc inside dshub.

Callers are a person with a GitLab token (read: anyone who may read the dataset; gc:
Maintainer or more, as GitLab's `permissions` say) or a pipeline of the dataset's own
project with its `CI_JOB_TOKEN` (`JOB-TOKEN` header, checked with GitLab's `GET /job`; gc
only from the default branch). gc applies the rules of the dvc-gc job through the same code,
`indexer.gc.collect.collect_garbage`: keep = the caller's keep set plus every object of an indexed
version; nothing younger than `min_age_hours` (at least 1, default 72); dry run unless
`dry_run` is false; one gc per dataset at a time. Answers never carry a credential.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from dshub.config import Settings
from indexer.data.listing_cache import LoggedObjects
from indexer.data.storage import ObjectMeta, StorageSite, open_objects
from indexer.errors import DshubError, Forbidden, InvalidInput, NotAuthenticated, Unavailable
from indexer.gc.collect import DEFAULT_MIN_AGE_HOURS, GcResult, collect_garbage, validate_keep
from indexer.gc.indexed_objects import IndexedObjects, indexed_objects
from indexer.gc.lock import gc_lock
from indexer.gitlab.job_tokens import job_token_from_headers, require_job_of, verify_job_token
from indexer.gitlab.reader import GitLabReader
from indexer.read import search
from indexer.sites.registry import (
    DatasetSiteError,
    NoSiteSelected,
    SiteDisagreement,
    SiteRegistry,
    site_of_dataset,
)
from indexer.store import Dataset
from webhook_service.api_datasets import not_found
from webhook_service.app_settings import services, settings_of
from webhook_service.auth import current_viewer, request_token
from webhook_service.bodies import json_object
from webhook_service.params import number_field

blueprint = Blueprint("api_gc", __name__, url_prefix="/api/v1")
log = logging.getLogger("dshub.gc")

MIN_AGE_FLOOR_HOURS = 1.0  # bytes of an upload in flight land before their commit
MAX_AGE_HOURS = 24 * 366 * 100  # a century: older than any object, still a valid timedelta
MAINTAINER = 40
GC_FIELDS = {"keep", "dry_run", "min_age_hours"}


class GcRefused(DshubError):
    """gc cannot run safely on this dataset now (no storage site, incomplete index)."""

    status = 409
    code = "gc_refused"
    exit_code = 1


def _settings() -> Settings:
    from flask import current_app

    return settings_of(current_app)


def _gitlab_url() -> str:
    url = _settings().gitlab_url
    if url is None:
        raise Unavailable("no GitLab is configured (DSHUB_GITLAB_URL)")
    return url


def _service_reader() -> GitLabReader:
    """GitLab through the service token (reads the pointers of indexed versions)."""
    return services().service_reader


def _job_token() -> str | None:
    return job_token_from_headers(dict(request.headers))


def _indexed_dataset(project_id: int) -> Dataset:
    dataset = services().index.get_dataset(project_id)
    if dataset is None:
        raise not_found(project_id)
    return dataset


def _reader_of_dataset(project_id: int) -> tuple[str, Dataset]:
    """(who, dataset) for a caller who may read the dataset, else 401/403/404."""
    token = _job_token()
    if token is not None:
        job = verify_job_token(_gitlab_url(), token)
        require_job_of(job, project_id)
        return f"job {job.job_id}", _indexed_dataset(project_id)
    viewer = current_viewer()
    dataset = search.get_dataset(services().index, viewer, project_id)
    if dataset is None:
        raise not_found(project_id)
    return f"user {viewer.user_id}", dataset


def _collector_of_dataset(project_id: int) -> tuple[str, Dataset]:
    """(who, dataset) for a caller allowed to collect: Maintainer+ or the project's own job."""
    token = _job_token()
    if token is not None:
        job = verify_job_token(_gitlab_url(), token)
        require_job_of(job, project_id)
        dataset = _indexed_dataset(project_id)
        if job.ref != dataset.default_branch:
            raise Forbidden(
                f"gc runs only from pipelines of the default branch ({dataset.default_branch}), "
                f"not {job.ref}"
            )
        return f"job {job.job_id}", dataset
    user_token = request_token()
    if not user_token:
        raise NotAuthenticated(
            "gc needs a GitLab token of a Maintainer of the dataset, or the dataset's own "
            "CI job token (JOB-TOKEN header)"
        )
    reader = services().request_reader(user_token)
    user = reader.current_user()
    if not user.is_admin:
        access = reader.project_access(project_id, user.id, enough=MAINTAINER)
        if access is None:
            raise not_found(project_id)
        if access.level < MAINTAINER:
            raise Forbidden("gc needs the Maintainer or Owner role on the dataset's project")
    return f"user {user.id}", _indexed_dataset(project_id)


def _objects_of_indexed_versions(project_id: int) -> IndexedObjects:
    return indexed_objects(services().index, _service_reader().read_file, project_id)


@blueprint.get("/datasets/<int:project_id>/objects")
def list_objects(project_id: int) -> ResponseReturnValue:
    """`?indexed=true`: every object id (md5, `<md5>.dir`) an indexed ref of the dataset uses."""
    if request.args.get("indexed", "").strip().lower() not in ("true", "1"):
        raise InvalidInput("only indexed=true is supported: the objects of indexed versions")
    _reader_of_dataset(project_id)
    found = _objects_of_indexed_versions(project_id)
    return jsonify(
        oids=sorted(found.oids),
        refs=list(found.refs),
        complete=found.complete,
        incomplete=list(found.incomplete),
    )


def _gc_request() -> tuple[frozenset[str], bool, float]:
    body = json_object(example='{"keep": [...], "dry_run": true, "min_age_hours": 72}', empty={})
    unknown = sorted(set(body) - GC_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown fields {unknown}; allowed: {sorted(GC_FIELDS)}")
    keep = body.get("keep", [])
    if not isinstance(keep, list) or not all(isinstance(oid, str) for oid in keep):
        raise InvalidInput("keep must be a list of object ids (md5, or <md5>.dir)")
    dry_run = body.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run must be true or false")
    hours = number_field(body, "min_age_hours", DEFAULT_MIN_AGE_HOURS, 0, MAX_AGE_HOURS)
    if hours < MIN_AGE_FLOOR_HOURS:
        raise InvalidInput(
            f"min_age_hours must be at least {MIN_AGE_FLOOR_HOURS:g}: objects reach storage "
            "before the commit that references them"
        )
    return validate_keep(keep), dry_run, hours


def _describe(item: ObjectMeta) -> dict[str, Any]:
    return {"key": item.key, "size": item.size, "last_modified": item.last_modified.isoformat()}


def _answer(
    project_id: int, result: GcResult, hours: float, given: int, indexed: IndexedObjects
) -> dict[str, Any]:
    plan = result.plan
    return {
        "dataset_id": project_id,
        "dry_run": result.dry_run,
        "min_age_hours": hours,
        "keep_given": given,
        "indexed_objects": len(indexed.oids),
        "indexed_refs": list(indexed.refs),
        "candidate_count": len(plan.candidates),
        "candidate_bytes": plan.candidate_bytes,
        "candidates": [_describe(item) for item in plan.candidates],
        "kept_referenced": plan.kept_referenced,
        "kept_young": plan.kept_young,
        "ignored_key_count": len(plan.ignored_keys),
        "deleted_count": len(result.deleted),
        "deleted_bytes": result.deleted_bytes,
        "deleted": [item.key for item in result.deleted],
        "failed": [{"key": item.key, "error": error} for item, error in result.failed],
    }


def _site_of(registry: SiteRegistry, dataset: Dataset) -> StorageSite:
    """The dataset's site: the recorded selection, which the CI/CD variable must agree with."""
    try:
        return site_of_dataset(registry, dataset.project_id, dataset.storage_site)
    except NoSiteSelected as exc:
        raise GcRefused(f"{exc.message}; there is nothing to collect") from None
    except SiteDisagreement as exc:
        raise GcRefused(f"{exc.message}; refusing to collect until they agree") from None
    except DatasetSiteError as exc:
        raise GcRefused(exc.message) from None


@blueprint.post("/datasets/<int:project_id>/gc")
def collect(project_id: int) -> ResponseReturnValue:
    """Collect the dataset's storage: `{keep, dry_run=true, min_age_hours=72}` (see module doc)."""
    caller, dataset = _collector_of_dataset(project_id)  # before the body: no parse for strangers
    keep, dry_run, hours = _gc_request()
    settings = _settings()
    site = _site_of(services().sites, dataset)
    objects = LoggedObjects(
        open_objects(site, project_id, services().credentials),
        services().objects_log,
        project_id,
    )

    def deleted(item: ObjectMeta) -> None:
        log.info(
            "gc deleted an object",
            extra={"project_id": project_id, "key": item.key, "size": item.size, "by": caller},
        )

    with gc_lock(project_id, settings.redis_url, settings.data_dir):
        indexed = _objects_of_indexed_versions(project_id)
        if not dry_run and not indexed.complete:
            raise GcRefused(
                "some indexed versions could not be fully listed, so their objects are not all "
                f"known; refusing to delete: {'; '.join(indexed.incomplete[:3])}"
            )
        result = collect_garbage(
            objects, keep | indexed.oids, min_age_hours=hours, dry_run=dry_run, on_delete=deleted
        )
    log.info(
        "gc finished",
        extra={
            "project_id": project_id,
            "by": caller,
            "dry_run": dry_run,
            "candidates": len(result.plan.candidates),
            "deleted": len(result.deleted),
            "failed": len(result.failed),
        },
    )
    return jsonify(_answer(project_id, result, hours, len(keep), indexed))
