"""`dshub get`: materialise a dataset (or the part `--include` globs choose) into a folder.

The ref is pinned to one commit first (the tree answer names it), so a branch that moves
meanwhile cannot mix versions. The files are listed through the tree API, then fetched in
parallel by `dshub.download.download_file` (resumable `.part` files, every file verified
against the hash its pointer records). A file already present with the right hash is
skipped, so running the command again resumes an interrupted copy. Every name the server
sends passes the download path rules (`indexer.read.resolve.validate_entry_name`) and must stay inside
the output folder once resolved: a hostile name never writes outside it.
"""

from __future__ import annotations

import fnmatch
import posixpath
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dshub.client import ApiClient
from dshub.download import compute_hash, download_file
from indexer.errors import InvalidInput
from indexer.read.resolve import validate_entry_name

PER_PAGE = 1000
JOBS = 8


@dataclass(frozen=True)
class Wanted:
    """One file to materialise: its dataset path, the hash it must have and its size."""

    path: str
    hash_name: str
    hash_value: str
    size: int | None


@dataclass(frozen=True)
class GetReport:
    """What `get` did."""

    commit: str
    files: int
    downloaded: int
    present: int
    resumed: int
    bytes: int


def local_target(output: Path, dataset_path: str) -> Path:
    """Where `dataset_path` goes under `output`; `InvalidInput` for a name that could escape."""
    try:
        clean = validate_entry_name(dataset_path)
    except InvalidInput as exc:
        raise InvalidInput(
            f"the server named a file {dataset_path[:80]!r} that is not a safe local name "
            f"({exc.message}); nothing was written for it"
        ) from None
    root = output.resolve()
    target = (root / clean).resolve()
    if not target.is_relative_to(root) or target == root:
        raise InvalidInput(f"{clean!r} would be written outside {output}; refused")
    return target


def list_files(
    client: ApiClient, project_id: int, ref: str | None, includes: list[str]
) -> tuple[str, list[Wanted]]:
    """The commit `ref` names and the files there (those matching one of `includes`)."""
    commit: str | None = None
    found: list[Wanted] = []
    folders = [""]
    while folders:
        folder = folders.pop()
        for item, sha in _level(client, project_id, commit or ref, folder):
            commit = commit or sha
            path = str(item["path"])
            if item.get("type") == "dir":
                if _may_match(path, includes):
                    folders.append(path)
            elif not includes or any(fnmatch.fnmatchcase(path, g) for g in includes):
                if item.get("source") == "git":
                    hash_name, value = "git-sha1", str(item.get("blob_id") or "")
                else:
                    hash_name, value = str(item.get("hash_name")), str(item.get("md5"))
                size = item.get("size")
                found.append(
                    Wanted(path, hash_name, value, size if isinstance(size, int) else None)
                )
    if commit is None:
        raise InvalidInput(f"dataset {project_id} has no files at {ref or 'its default branch'}")
    return commit, sorted(found, key=lambda w: w.path)


def _may_match(folder: str, includes: list[str]) -> bool:
    """Whether anything below `folder` could match a glob (`*` matches `/` in fnmatch)."""
    if not includes:
        return True
    for glob in includes:
        head = glob.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        if head.startswith(folder + "/") or (folder + "/").startswith(head) or head == "":
            return True
    return False


def _level(
    client: ApiClient, project_id: int, ref: str | None, folder: str
) -> Iterator[tuple[dict[str, Any], str]]:
    page: int | None = 1
    while page is not None:
        params: dict[str, Any] = {"path": folder, "page": page, "per_page": PER_PAGE}
        if ref:
            params["ref"] = ref
        data = client.get_json(f"/api/v1/datasets/{project_id}/tree", params)
        for item in data.get("items", []):
            yield item, str(data["commit_sha"])
        page = data.get("next_page")


def _present(target: Path, wanted: Wanted) -> bool:
    if not target.is_file():
        return False
    with target.open("rb") as handle:
        return compute_hash(handle, wanted.hash_name) == wanted.hash_value


def get(
    client: ApiClient,
    project_id: int,
    *,
    ref: str | None,
    output: Path,
    includes: list[str] | None = None,
    jobs: int = JOBS,
    progress: bool = True,
) -> GetReport:
    """Materialise the files at `ref` into `output`, resuming what an earlier run left."""
    commit, wanted = list_files(client, project_id, ref, includes or [])
    targets = [(w, local_target(output, w.path)) for w in wanted]  # every name, before any byte
    output.mkdir(parents=True, exist_ok=True)
    bar = _bar(progress, len(wanted))
    lock = threading.Lock()
    counts = {"downloaded": 0, "present": 0, "resumed": 0, "bytes": 0}

    def fetch(item: tuple[Wanted, Path]) -> None:
        want, target = item
        if _present(target, want):
            key, size, resumed = "present", target.stat().st_size, False
        else:
            done = download_file(
                client,
                project_id,
                want.path,
                ref=commit,
                output_dir=target.parent,
                name=posixpath.basename(want.path),
            )
            key, size, resumed = "downloaded", done.size, bool(done.resumed_from)
        with lock:
            counts[key] += 1
            counts["resumed"] += resumed
            counts["bytes"] += size
        bar(1)

    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for future in [pool.submit(fetch, item) for item in targets]:
                future.result()
    finally:
        bar(0, close=True)
    return GetReport(commit, len(wanted), **counts)


def _bar(enabled: bool, total: int) -> Callable[..., None]:
    tqdm_bar: Any = None
    if enabled:
        from tqdm import tqdm

        tqdm_bar = tqdm(total=total, unit="file", desc="get")

    def advance(amount: int, close: bool = False) -> None:
        if tqdm_bar is not None:
            tqdm_bar.update(amount)
            if close:
                tqdm_bar.close()

    return advance


def _cmd_get(args: Any) -> int:
    from dshub.client_cli import _client, _report
    from indexer.errors import DshubError

    try:
        report = get(
            _client(),
            args.project_id,
            ref=args.ref,
            output=Path(args.output),
            includes=args.include or [],
            jobs=args.jobs,
            progress=not args.quiet,
        )
    except DshubError as exc:
        return _report(exc)
    if not args.quiet:
        print(
            f"{report.files} files ({report.bytes} bytes) at commit {report.commit} in "
            f"{args.output}: {report.downloaded} downloaded ({report.resumed} resumed), "
            f"{report.present} already present and verified"
        )
    return 0


def register(sub: Any) -> None:
    """Add `get` to the `dshub` argument parser."""
    parser = sub.add_parser(
        "get",
        help="materialise a dataset (or a part) into a folder, verified and resumable",
        description="Download every file at --ref (or those matching --include globs, "
        "e.g. 'images/*') into --output, in parallel; run it again to resume.",
    )
    parser.add_argument("--project-id", type=int, required=True)
    parser.add_argument("--ref", help="tag, branch or commit sha (default: default branch)")
    parser.add_argument("--output", required=True, help="folder to write into")
    parser.add_argument("--include", action="append", metavar="GLOB", help="repeat for more")
    parser.add_argument("-j", "--jobs", type=int, default=JOBS, help="parallel downloads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=_cmd_get)
