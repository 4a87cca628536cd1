"""The dvc-gc job: compute what every commit, branch and tag needs, then collect the rest.

Safety rules (ARCHITECTURE.md): default branch only; full history (a shallow clone is
deepened from CI_REPOSITORY_URL with every branch and tag, or the job refuses); the keep set
comes from DVC itself (`Repo.used_objs` over all commits, branches and tags, every entry of
every directory); objects younger than `min_age_hours` and objects of versions dshub has
indexed are kept; the remote must be this dataset's own. Dry run unless `delete` is set.
Deletion is `indexer.gc.collect`, one implementation with two callers: this job with the read-write
keys (direct mode), or dshub's `POST /api/v1/datasets/<id>/gc`, to which the job hands its
keep set with its CI_JOB_TOKEN (proxy mode: the remote is dshub's and no key is in the job).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from dshub.ci.access import remote_access
from dshub.ci.environment import Access
from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.gitrepo import fetch_full_history, is_shallow, require_default_branch
from dshub.ci.proxy import (
    ACCESS_CHECK_TIMEOUT,
    AUTH_HEADER,
    error_message,
    is_proxy_url,
    service_url,
    ssl_verify_of,
)
from dshub.ci.remote import RemoteConfig, read_remote, require_owned_remote
from dshub.ci.storage import open_remote_store
from dshub.config import CiVariables
from indexer.data.storage import ObjectMeta
from indexer.gc.collect import GcPlan, GcResult, collect_garbage

# dshub answers a gc only when it is done: listing and deleting a large prefix takes a while.
GC_ANSWER_TIMEOUT = 6 * 3600.0


@dataclass(frozen=True)
class GcOptions:
    """The job's inputs."""

    remote_name: str | None = None
    jobs: int = 8
    min_age_hours: float = 72.0
    delete: bool = False
    dshub_url: str | None = None
    report_path: Path | None = None


def ensure_full_history(root: Path, variables: CiVariables, say: Callable[[str], None]) -> None:
    """Fetch all history, branches and tags from CI_REPOSITORY_URL; refuse a clone that stays shallow."""
    url = variables.get("CI_REPOSITORY_URL")
    if url is None:
        if is_shallow(root):
            raise CiConfigError(
                "the clone is shallow and CI_REPOSITORY_URL is not set to deepen it; gc needs "
                "every commit, branch and tag (set GIT_DEPTH: 0 and run in GitLab CI)"
            )
        raise CiConfigError(
            "CI_REPOSITORY_URL is not set: gc must fetch every branch and tag before it decides "
            "what to keep"
        )
    try:
        fetch_full_history(root, url)
    except CiCheckFailed as exc:
        raise CiConfigError(
            f"could not fetch full history from CI_REPOSITORY_URL: {exc.message}"
        ) from exc
    if is_shallow(root):
        raise CiConfigError(
            "the clone is still shallow after fetching full history; refusing to collect"
        )
    say("history: full clone with every branch and tag")


def keep_set(root: Path, remote_name: str, jobs: int) -> set[str]:
    """Object ids used by any commit, branch or tag (and the workspace), by DVC's own code."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        used = repo.used_objs(
            all_branches=True,
            all_tags=True,
            all_commits=True,
            remote=remote_name,
            force=False,  # a missing .dir manifest must stop gc, never hide its entries
            jobs=jobs,
        )
    except DvcException as exc:
        raise CiCheckFailed(
            f"cannot compute the objects history uses, refusing to collect: {exc}"
        ) from exc
    finally:
        repo.close()
    return {info.value for infos in used.values() for info in infos if info.value}


@dataclass(frozen=True)
class IndexedVersions:
    """dshub's answer: object ids of indexed versions, and versions it could not fully list."""

    oids: frozenset[str]
    incomplete: tuple[str, ...] = ()


def indexed_objects(dshub_url: str, variables: CiVariables) -> IndexedVersions:
    """Object ids of versions dshub has indexed (GET /api/v1/datasets/<id>/objects?indexed=true)."""
    dataset_id = variables.require("DSHUB_DATASET_ID", "needed to ask dshub for indexed versions")
    token = variables.require("CI_JOB_TOKEN", "needed to authenticate to dshub")
    url = f"{dshub_url.rstrip('/')}/api/v1/datasets/{dataset_id}/objects"
    try:
        response = requests.get(
            url, params={"indexed": "true"}, headers={AUTH_HEADER: token}, timeout=60
        )
    except requests.RequestException as exc:
        raise CiConfigError(
            f"could not read the objects of indexed versions from {url} ({type(exc).__name__}); "
            "refusing to collect"
        ) from exc
    if response.status_code != 200:
        raise CiConfigError(
            f"could not read the objects of indexed versions from {url}: dshub answered "
            f"{response.status_code} ({error_message(response)}); refusing to collect"
        )
    try:
        body = response.json()
        oids = frozenset(str(oid) for oid in body["oids"])
        incomplete = tuple(str(item) for item in body.get("incomplete") or ())
    except (ValueError, KeyError, TypeError) as exc:
        raise CiConfigError(
            f"could not read the objects of indexed versions from {url} (unexpected answer); "
            "refusing to collect"
        ) from exc
    return IndexedVersions(oids, incomplete)


def _describe(item: ObjectMeta) -> dict[str, Any]:
    return {"key": item.key, "size": item.size, "last_modified": item.last_modified.isoformat()}


@dataclass(frozen=True)
class Collected:
    """What a gc run decided and did, and where: in this job, or inside dshub (proxy mode)."""

    result: GcResult
    where: str  # "job" | "dshub"
    ignored_key_count: int


def write_report(path: Path, collected: Collected, options: GcOptions, keep_count: int) -> None:
    """Write the job's artifact: the candidates (count, bytes) and what happened to them."""
    result = collected.result
    plan = result.plan
    report = {
        "dry_run": result.dry_run,
        "collected_by": collected.where,
        "min_age_hours": options.min_age_hours,
        "keep_set_size": keep_count,
        "candidate_count": len(plan.candidates),
        "candidate_bytes": plan.candidate_bytes,
        "kept_referenced": plan.kept_referenced,
        "kept_young": plan.kept_young,
        "ignored_key_count": collected.ignored_key_count,
        # dshub reports only how many keys it left alone, not which.
        "ignored_keys": list(plan.ignored_keys) if collected.where == "job" else None,
        "candidates": [_describe(item) for item in plan.candidates],
        "deleted_count": len(result.deleted),
        "deleted_bytes": result.deleted_bytes,
        "failed": [{**_describe(item), "error": error} for item, error in result.failed],
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _collect_in_job(
    root: Path,
    remote: RemoteConfig,
    variables: CiVariables,
    options: GcOptions,
    *,
    keep: set[str],
    now: datetime | None,
    say: Callable[[str], None],
) -> Collected:
    """Direct mode: add the objects of indexed versions, then delete here with the RW keys."""
    if options.dshub_url:
        indexed = indexed_objects(options.dshub_url, variables)
        say(f"keep set: {len(indexed.oids)} objects of versions dshub indexed")
        if indexed.incomplete and options.delete:
            raise CiCheckFailed(
                "dshub could not fully list some indexed versions, so their objects are not all "
                f"known; refusing to delete: {'; '.join(indexed.incomplete[:3])}"
            )
        keep |= indexed.oids
    else:
        say("keep set: dshub not consulted for indexed versions (input dshub_url is empty)")
    store = open_remote_store(root, remote, variables, Access.READ_WRITE)
    result = collect_garbage(
        store, keep, min_age_hours=options.min_age_hours, dry_run=not options.delete, now=now
    )
    return Collected(result, "job", len(result.plan.ignored_keys))


def _answer_to_result(answer: dict[str, Any], dry_run: bool) -> Collected:
    """dshub's gc answer as the `GcResult` the job reports (KeyError/ValueError when malformed)."""
    candidates = tuple(
        ObjectMeta(
            key=str(item["key"]),
            size=int(item["size"]),
            last_modified=datetime.fromisoformat(str(item["last_modified"])),
        )
        for item in answer["candidates"]
    )
    by_key = {item.key: item for item in candidates}
    plan = GcPlan(
        candidates=candidates,
        kept_referenced=int(answer["kept_referenced"]),
        kept_young=int(answer["kept_young"]),
        ignored_keys=(),
    )
    result = GcResult(plan=plan, dry_run=bool(answer["dry_run"]))
    if result.dry_run != dry_run:
        raise ValueError("dry_run differs from the request")
    result.deleted = [by_key[str(key)] for key in answer["deleted"]]
    result.failed = [(by_key[str(item["key"])], str(item["error"])) for item in answer["failed"]]
    return Collected(result, "dshub", int(answer["ignored_key_count"]))


def collect_in_dshub(
    remote: RemoteConfig,
    variables: CiVariables,
    options: GcOptions,
    keep: set[str],
    say: Callable[[str], None],
) -> Collected:
    """Proxy mode: `POST <DSHUB_URL>/api/v1/datasets/<id>/gc {keep, dry_run, min_age_hours}`.

    dshub applies the same rules with the same code (`indexer.gc.collect`), adds the objects of the
    versions it indexed itself, and deletes; the job only reports what dshub answered.
    """
    dataset_id = variables.require(
        "DSHUB_DATASET_ID", "dshub sets it to the project id of the dataset the storage belongs to"
    )
    token = variables.require("CI_JOB_TOKEN", "gc through dshub authenticates with it")
    url = f"{service_url(remote.url, dataset_id)}/api/v1/datasets/{dataset_id}/gc"
    dry_run = not options.delete
    say(f"gc runs inside dshub: POST {url} ({'dry run' if dry_run else 'deleting'})")
    body = {"keep": sorted(keep), "dry_run": dry_run, "min_age_hours": options.min_age_hours}
    try:
        response = requests.post(
            url,
            json=body,
            headers={AUTH_HEADER: token},
            timeout=(ACCESS_CHECK_TIMEOUT, GC_ANSWER_TIMEOUT),
            verify=ssl_verify_of(dict(remote.options)),
        )
    except requests.RequestException as exc:
        raise CiCheckFailed(
            f"gc through dshub ({url}) got no answer ({type(exc).__name__}); what dshub did is "
            "unknown: run the dry run again to see what is left"
        ) from None
    if response.status_code != 200:
        error = CiConfigError if 400 <= response.status_code < 500 else CiCheckFailed
        raise error(
            f"gc through dshub ({url}) failed: dshub answered {response.status_code} "
            f"({error_message(response)})"
        )
    try:
        collected = _answer_to_result(response.json(), dry_run)
    except (ValueError, KeyError, TypeError) as exc:
        raise CiCheckFailed(
            f"gc through dshub ({url}) gave an unexpected answer ({type(exc).__name__}); "
            "see dshub's log"
        ) from None
    for item in collected.result.deleted:
        say(f"gc: dshub deleted {item.key} ({item.size} bytes)")
    for item, error_text in collected.result.failed:
        say(f"gc: dshub could not delete {item.key}: {error_text}")
    return collected


def run_gc(
    root: Path,
    variables: CiVariables,
    options: GcOptions,
    *,
    now: datetime | None = None,
    say: Callable[[str], None] = print,
) -> GcResult:
    """Run the gc job in `root` (the job's clone) and return what it decided and did."""
    require_default_branch(variables.get("CI_COMMIT_BRANCH"), variables.get("CI_DEFAULT_BRANCH"))
    remote = read_remote(root, options.remote_name)
    require_owned_remote(remote, variables)
    with remote_access(root, remote, variables, Access.READ_WRITE, say):
        ensure_full_history(root, variables, say)
        keep = keep_set(root, remote.name, options.jobs)
    say(f"keep set: {len(keep)} objects referenced by history")
    if is_proxy_url(remote.url):
        collected = collect_in_dshub(remote, variables, options, keep, say)
    else:
        collected = _collect_in_job(root, remote, variables, options, keep=keep, now=now, say=say)

    result = collected.result
    plan = result.plan
    if options.report_path is not None:
        write_report(options.report_path, collected, options, len(keep))
    if result.dry_run:
        for item in plan.candidates:
            say(f"would delete {item.key} ({item.size} bytes)")
    say(
        f"{'dry run: ' if result.dry_run else ''}{len(plan.candidates)} candidates "
        f"({plan.candidate_bytes} bytes); kept {plan.kept_referenced} referenced and "
        f"{plan.kept_young} younger than {options.min_age_hours:g} h; "
        f"{collected.ignored_key_count} keys that are not DVC objects left alone"
    )
    if result.failed:
        raise CiCheckFailed(f"{len(result.failed)} deletions failed; see the log")
    if not result.dry_run:
        say(f"deleted {len(result.deleted)} objects ({result.deleted_bytes} bytes)")
    return result
