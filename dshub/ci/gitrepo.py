"""The git operations the CI jobs need, run with the `git` command in the job's clone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from dshub.ci.errors import CiCheckFailed, CiConfigError

ZERO_SHA = "0" * 40


def git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Run `git <args>` in `root` and return stdout; a failure becomes `CiCheckFailed`."""
    result = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        last = detail[-1] if detail else f"exit code {result.returncode}"
        raise CiCheckFailed(f"git {args[0]} failed: {last}")
    return result.stdout


def head_sha(root: Path) -> str:
    """The commit checked out in `root`."""
    return git(root, "rev-parse", "HEAD").decode().strip()


def has_commit(root: Path, sha: str) -> bool:
    """True when `sha` names a commit present in the clone."""
    result = subprocess.run(
        ["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=root, capture_output=True, check=False
    )
    return result.returncode == 0


def is_shallow(root: Path) -> bool:
    """True when the clone is shallow (history cut off at some depth)."""
    return git(root, "rev-parse", "--is-shallow-repository").decode().strip() == "true"


def fetch_full_history(root: Path, url: str) -> None:
    """Fetch all history, every branch (as `refs/remotes/origin/*`) and every tag from `url`."""
    args = ["fetch", "--quiet", "--tags", "--force"]
    if is_shallow(root):
        args.append("--unshallow")
    git(root, *args, url, "+refs/heads/*:refs/remotes/origin/*")


def files_at(root: Path, rev: str, suffix: str = ".dvc") -> list[str]:
    """Paths of the files ending with `suffix` in the tree of `rev`."""
    out = git(root, "ls-tree", "-r", "-z", "--name-only", rev)
    return sorted(p for p in out.decode().split("\0") if p.endswith(suffix))


def changed_files(root: Path, base: str, head: str, suffix: str = ".dvc") -> dict[str, str]:
    """`{path: status}` of files ending with `suffix` that differ between `base` and `head`.

    Status is git's letter (A added, M modified, D deleted, T type change); renames count as
    a deletion plus an addition.
    """
    out = git(root, "diff", "--name-status", "-z", "--no-renames", base, head).decode()
    fields = out.split("\0")
    changed: dict[str, str] = {}
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if path.endswith(suffix):
            changed[path] = status[:1]
    return changed


def read_files(root: Path, rev: str, paths: Iterable[str]) -> dict[str, str]:
    """The text of each of `paths` at `rev`, read in one `git cat-file --batch` call."""
    wanted = list(paths)
    if not wanted:
        return {}
    request = "".join(f"{rev}:{path}\n" for path in wanted).encode()
    out = git(root, "cat-file", "--batch", stdin=request)
    texts: dict[str, str] = {}
    position = 0
    for path in wanted:
        header_end = out.index(b"\n", position)
        header = out[position:header_end].split()
        if len(header) < 3 or header[1] == b"missing":
            raise CiCheckFailed(f"{path} is not in {rev}")
        size = int(header[2])
        body = out[header_end + 1 : header_end + 1 + size]
        texts[path] = body.decode("utf-8", errors="replace")
        position = header_end + 1 + size + 1
    return texts


def blobs_over(root: Path, head: str, base: str | None, limit: int) -> list[tuple[str, int]]:
    """`(path, size)` of git blobs larger than `limit` bytes: in `head`'s tree, or, with `base`,
    in any commit of `base..head` (a large file added then removed still bloats history)."""
    if base is None:
        listing = git(root, "ls-tree", "-r", "-l", "-z", head).decode()
        found = []
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            kind, size = meta.split()[1], meta.split()[3]
            if kind == "blob" and size.isdigit() and int(size) > limit:
                found.append((path, int(size)))
        return sorted(found)
    objects = git(root, "rev-list", "--objects", f"{base}..{head}").decode().splitlines()
    paths = {}
    for line in objects:
        sha, _, path = line.partition(" ")
        if path:
            paths[sha] = path
    if not paths:
        return []
    request = "".join(f"{sha}\n" for sha in paths).encode()
    checked = git(
        root, "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)", stdin=request
    )
    found = []
    for line in checked.decode().splitlines():
        sha, kind, size = line.split()
        if kind == "blob" and int(size) > limit:
            found.append((paths[sha], int(size)))
    return sorted(found)


def require_default_branch(branch: str | None, default: str | None) -> None:
    """Raise `CiConfigError` unless the pipeline runs for the default branch."""
    if not default:
        raise CiConfigError(
            "CI_DEFAULT_BRANCH is not set: gc runs only in GitLab CI on the default branch"
        )
    if branch != default:
        shown = branch or "(no branch: a tag or merge-request pipeline)"
        raise CiConfigError(
            f"gc runs only on the default branch {default!r}; this pipeline is for {shown} (CI_COMMIT_BRANCH)"
        )
