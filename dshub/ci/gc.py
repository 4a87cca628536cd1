"""The dvc-gc job: compute what every commit, branch and tag needs, then collect the rest.

Safety rules (ARCHITECTURE.md): default branch only; full history (a shallow clone is
deepened from CI_REPOSITORY_URL with every branch and tag, or the job refuses); the keep set
comes from DVC itself (`Repo.used_objs` over all commits, branches and tags, every entry of
every directory); objects younger than `min_age_hours` and objects of versions dshub has
indexed are kept; the remote must be this dataset's own. Deletion is `indexer.gc`, the same
code dshub's gc endpoint runs. Dry run unless `delete` is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from dshub.ci.environment import Access, CiVariables, apply_environment, storage_environment
from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.gitrepo import fetch_full_history, is_shallow, require_default_branch
from dshub.ci.remote import read_remote, require_owned_remote
from dshub.ci.storage import open_remote_store
from indexer.gc import GcResult, collect_garbage
from indexer.storage import ObjectMeta


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


def _dshub_error(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason or "no message"


def indexed_objects(dshub_url: str, variables: CiVariables) -> IndexedVersions:
    """Object ids of versions dshub has indexed (GET /api/v1/datasets/<id>/objects?indexed=true)."""
    dataset_id = variables.require("DSHUB_DATASET_ID", "needed to ask dshub for indexed versions")
    token = variables.require("CI_JOB_TOKEN", "needed to authenticate to dshub")
    url = f"{dshub_url.rstrip('/')}/api/v1/datasets/{dataset_id}/objects"
    try:
        response = requests.get(
            url, params={"indexed": "true"}, headers={"JOB-TOKEN": token}, timeout=60
        )
    except requests.RequestException as exc:
        raise CiConfigError(
            f"could not read the objects of indexed versions from {url} ({type(exc).__name__}); "
            "refusing to collect"
        ) from exc
    if response.status_code != 200:
        raise CiConfigError(
            f"could not read the objects of indexed versions from {url}: dshub answered "
            f"{response.status_code} ({_dshub_error(response)}); refusing to collect"
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


def write_report(path: Path, result: GcResult, options: GcOptions, keep_count: int) -> None:
    """Write the job's artifact: the candidates (count, bytes) and what happened to them."""
    plan = result.plan
    report = {
        "dry_run": result.dry_run,
        "min_age_hours": options.min_age_hours,
        "keep_set_size": keep_count,
        "candidate_count": len(plan.candidates),
        "candidate_bytes": plan.candidate_bytes,
        "kept_referenced": plan.kept_referenced,
        "kept_young": plan.kept_young,
        "ignored_keys": list(plan.ignored_keys),
        "candidates": [_describe(item) for item in plan.candidates],
        "deleted_count": len(result.deleted),
        "deleted_bytes": result.deleted_bytes,
        "failed": [{**_describe(item), "error": error} for item, error in result.failed],
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


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
    apply_environment(os.environ, storage_environment(variables, remote.url, Access.READ_WRITE))
    ensure_full_history(root, variables, say)
    keep = keep_set(root, remote.name, options.jobs)
    say(f"keep set: {len(keep)} objects referenced by history")
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
        store,
        keep,
        min_age_hours=options.min_age_hours,
        dry_run=not options.delete,
        now=now,
    )
    plan = result.plan
    if options.report_path is not None:
        write_report(options.report_path, result, options, len(keep))
    if result.dry_run:
        for item in plan.candidates:
            say(f"would delete {item.key} ({item.size} bytes)")
    say(
        f"{'dry run: ' if result.dry_run else ''}{len(plan.candidates)} candidates "
        f"({plan.candidate_bytes} bytes); kept {plan.kept_referenced} referenced and "
        f"{plan.kept_young} younger than {options.min_age_hours:g} h; "
        f"{len(plan.ignored_keys)} keys that are not DVC objects left alone"
    )
    if result.failed:
        raise CiCheckFailed(f"{len(result.failed)} deletions failed; see the log")
    if not result.dry_run:
        say(f"deleted {len(result.deleted)} objects ({result.deleted_bytes} bytes)")
    return result
