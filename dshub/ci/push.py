"""The dvc-push job: `dvc push -r <remote> --jobs N`, then proof that storage holds everything.

`dvc push` exits 0 when objects are missing from both the cache and the remote (it only
warns), and assumes every entry of a directory exists once the `.dir` manifest does. After
pushing, this job asks DVC which objects HEAD uses (`Repo.used_objs(push=True)`: `.dvc`
files and pipeline outputs, every entry of tracked directories and the manifests) and checks
each one in the remote itself: with DVC's `oids_exist` in direct mode, and on dshub's remote
(proxy mode) with dshub's batch presence answer (one request per 10,000 objects, where DVC's
http remote would GET each one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dshub.ci.access import remote_access
from dshub.ci.environment import Access
from dshub.ci.errors import CiCheckFailed
from dshub.ci.presence import ObjectRef, RemoteObjects
from dshub.ci.proxy import DshubRemote
from dshub.ci.remote import read_remote, require_expected_remote
from dshub.config import CiVariables


@dataclass(frozen=True)
class PushReport:
    """What the job did: the remote, DVC's exit code and how many objects were verified."""

    remote: str
    verified: int


def used_objects(repo: Any, remote: str, jobs: int) -> list[ObjectRef]:
    """Every object HEAD's workspace uses and `dvc push` would upload, by DVC's own collection."""
    from dvc.exceptions import DvcException

    try:
        used = repo.used_objs(push=True, remote=remote, jobs=jobs, force=False)
    except DvcException as exc:
        raise CiCheckFailed(f"cannot list the objects HEAD uses: {exc}") from exc
    refs = {
        ObjectRef(info.name, info.value, str(info.obj_name or info.value))
        for infos in used.values()
        for info in infos
        if info.value
    }
    return sorted(refs, key=lambda ref: ref.label)


def run_push(
    root: Path,
    variables: CiVariables,
    *,
    remote_name: str | None,
    jobs: int,
    verify: bool,
    say: Callable[[str], None] = print,
) -> PushReport:
    """Push the repository's data to the dataset's remote and, if `verify`, prove it is there."""
    remote = read_remote(root, remote_name)
    require_expected_remote(remote, variables)
    with remote_access(root, remote, variables, Access.READ_WRITE, say) as dshub:
        _push(root, remote.name, jobs, say)
        if not verify:
            return PushReport(remote=remote.name, verified=0)
        refs, missing = _prove(root, remote.name, jobs, dshub)
    if missing:
        for ref in missing:
            say(f"missing from {remote.url}: {ref.label} ({ref.oid})")
        raise CiCheckFailed(
            f"{len(missing)} of {len(refs)} objects HEAD references are not in {remote.url} after "
            "dvc push; push them from a clone whose cache has them (`dvc push`), then re-run"
        )
    say(f"verified: all {len(refs)} objects HEAD references are in {remote.url}")
    return PushReport(remote=remote.name, verified=len(refs))


def _push(root: Path, remote_name: str, jobs: int, say: Callable[[str], None]) -> None:
    from dvc.cli import main as dvc_main

    say(f"$ dvc push -r {remote_name} --jobs {jobs}")
    with contextlib.chdir(root):
        code = dvc_main(["push", "-r", remote_name, "--jobs", str(jobs)])
    if code != 0:
        raise CiCheckFailed(f"dvc push -r {remote_name} failed with exit code {code}")


def _prove(
    root: Path, remote_name: str, jobs: int, dshub: DshubRemote | None
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Every object HEAD uses, and those of them the remote does not hold."""
    objects = RemoteObjects(root, remote_name, jobs, dshub)
    try:
        refs = used_objects(objects.repo, remote_name, jobs)
        return refs, objects.missing(refs)
    finally:
        objects.close()
