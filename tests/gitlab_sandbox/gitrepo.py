"""Bare git repositories for the GitLab sandbox, driven only through the `git` command line.

Every write goes through git plumbing the way Gitaly does it: blobs with `hash-object -w`, a
tree built in a private index (`GIT_INDEX_FILE`), `commit-tree`, then `update-ref` with the
expected old value so two writers can never silently overwrite each other. Reads return dicts
already in GitLab's JSON shapes (tree entries, commits, compare) so the API layer stays thin.
Errors carry the message GitLab shows for the same situation.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
ARCHIVE_FORMATS = ("tar.gz", "tar", "zip", "tar.bz2")
REVERT_FAILED = (
    "Sorry, we cannot revert this commit automatically. This commit may already have been "
    "reverted, or a more recent commit may have updated some of its content."
)
_SHA_RE = re.compile(r"^[0-9a-f]{4,40}$")
_COMMIT_ACTIONS = ("create", "update", "delete", "move", "chmod")


class GitError(Exception):
    """A git operation failed for a reason the caller should show to the user."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CommitError(GitError):
    """A commit could not be made (GitLab answers these with 400 and this message)."""


class RefError(GitError):
    """A branch or tag could not be created or deleted (bad name, exists, unknown target)."""


class RevertError(GitError):
    """A revert conflicts or changes nothing; `code` is GitLab's `conflict` or `empty`."""


@dataclass(frozen=True)
class Person:
    """An author or committer identity with the instant of the act."""

    name: str
    email: str
    when: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class BlobInfo:
    """A file at a ref: its bytes and the ids GitLab reports alongside them."""

    path: str
    content: bytes
    blob_id: str
    mode: str
    commit_id: str
    last_commit_id: str

    @property
    def size(self) -> int:
        """Length of the content in bytes."""
        return len(self.content)

    @property
    def executable(self) -> bool:
        """Whether the file has the executable mode (100755)."""
        return self.mode == "100755"


def valid_ref_input(ref: str) -> bool:
    """Whether `ref` may be handed to git as a revision (no option-like or range syntax)."""
    if not ref or ref.startswith("-") or ".." in ref or "@{" in ref:
        return False
    # `~` and `^` stay allowed: GitLab resolves revisions such as `main~1`.
    return not any(ch in ref for ch in " \t\n\r\0:?*[\\")


def _git_date(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{int(when.timestamp())} {sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _iso_from_git(stamp: str, tz: str) -> str:
    """GitLab renders commit dates as `2016-09-20T09:26:24.000-07:00` (milliseconds, offset)."""
    sign = -1 if tz.startswith("-") else 1
    minutes = sign * (int(tz[1:3]) * 60 + int(tz[3:5]))
    moment = datetime.fromtimestamp(int(stamp), timezone(timedelta(minutes=minutes)))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000") + f"{tz[:3]}:{tz[3:5]}"


def commit_title(message: str) -> str:
    """GitLab's commit title: the first line, shortened past 100 characters with an ellipsis."""
    first = re.split(r"[\r\n]", message.strip(), maxsplit=1)[0] if message.strip() else ""
    if len(first) <= 100:
        return first
    cut = first[:80]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut + "…"


def _parse_person(line: str) -> tuple[str, str, str, str]:
    match = re.match(r"^(.*) <(.*)> (\d+) ([+-]\d{4})$", line)
    if not match:
        return ("", "", "0", "+0000")
    return match.group(1), match.group(2), match.group(3), match.group(4)


def parse_commit_object(sha: str, raw: bytes) -> dict[str, Any]:
    """Turn a raw commit object into GitLab's basic commit JSON (without `web_url`)."""
    header, _, body = raw.partition(b"\n\n")
    parents: list[str] = []
    author = committer = ("", "", "0", "+0000")
    for line in header.decode("utf-8", "replace").split("\n"):
        key, _, value = line.partition(" ")
        if key == "parent":
            parents.append(value)
        elif key == "author":
            author = _parse_person(value)
        elif key == "committer":
            committer = _parse_person(value)
    message = body.decode("utf-8", "replace")
    committed = _iso_from_git(committer[2], committer[3])
    return {
        "id": sha,
        "short_id": sha[:11],
        "created_at": committed,
        "parent_ids": parents,
        "title": commit_title(message),
        "message": message,
        "author_name": author[0],
        "author_email": author[1],
        "authored_date": _iso_from_git(author[2], author[3]),
        "committer_name": committer[0],
        "committer_email": committer[1],
        "committed_date": committed,
        "trailers": {},
        "extended_trailers": {},
    }


class GitRepo:
    """One bare repository on disk; every method runs real `git` subprocesses."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ plumbing

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("GIT_") or key in ("GIT_CONFIG_NOSYSTEM", "GIT_TERMINAL_PROMPT")
        }
        env.update(
            {
                "GIT_DIR": str(self.path),
                "GIT_LITERAL_PATHSPECS": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": str(self.path),
                "LC_ALL": "C",
            }
        )
        if extra:
            env.update(extra)
        return env

    def git(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `git <args>` against this repository and return the completed process."""
        proc = subprocess.run(
            ["git", "-c", "core.quotepath=false", *args],
            input=input,
            capture_output=True,
            env=self._env(env),
            check=False,
        )
        if check and proc.returncode != 0:
            raise GitError(
                f"git {args[0]} failed: {proc.stderr.decode('utf-8', 'replace').strip()}"
            )
        return proc

    def _out(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        return self.git(*args, input=input, env=env).stdout.decode("utf-8", "replace")

    @contextlib.contextmanager
    def _index(self) -> Iterator[dict[str, str]]:
        with tempfile.TemporaryDirectory(prefix="sandbox-index-") as tmp:
            yield {"GIT_INDEX_FILE": str(Path(tmp) / "index")}

    # ------------------------------------------------------------------ setup and refs

    def init_bare(self, default_branch: str = "main") -> None:
        """Create the bare repository with HEAD on `default_branch` (no commits yet)."""
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", "."],
            cwd=self.path,
            env=self._env(),
            check=True,
            capture_output=True,
        )
        # Smart-HTTP pushes go to this repository; allow them and keep objects loose-friendly.
        self.git("config", "http.receivepack", "true")
        self.git("config", "receive.denyNonFastForwards", "false")

    def set_default_branch(self, branch: str) -> None:
        """Point HEAD at `branch` (GitLab's default branch)."""
        self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def refs(self) -> dict[str, str]:
        """Every ref name mapped to the object it points to (tag objects not peeled)."""
        out = self._out("for-each-ref", "--format=%(objectname) %(refname)")
        result: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition(" ")
            result[name] = sha
        return result

    def is_empty(self) -> bool:
        """Whether the repository has no refs at all (GitLab's `empty_repo`)."""
        return not self._out("for-each-ref", "--count=1").strip()

    def _rev_parse(self, spec: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", spec, check=False)
        sha = proc.stdout.decode().strip()
        return sha if proc.returncode == 0 and len(sha) == 40 else None

    def resolve(self, ref: str | None) -> str | None:
        """The commit sha `ref` names (branch, tag, full or short sha, HEAD), or None."""
        if ref is None or not valid_ref_input(ref):
            return None
        return self._rev_parse(f"{ref}^{{commit}}")

    def resolve_object(self, ref: str) -> str | None:
        """The object `ref` names without peeling (a tag object for an annotated tag)."""
        return self._rev_parse(ref) if valid_ref_input(ref) else None

    def object_type(self, sha: str) -> str | None:
        """`blob`, `tree`, `commit` or `tag` for an existing object, else None."""
        if not _SHA_RE.match(sha):
            return None
        proc = self.git("cat-file", "-t", sha, check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def branch_sha(self, name: str) -> str | None:
        """The tip of branch `name`, or None when it does not exist."""
        return self.refs().get(f"refs/heads/{name}")

    def valid_ref_name(self, full_name: str) -> bool:
        """Whether git accepts `full_name` (e.g. `refs/heads/x`) as a ref name."""
        if full_name.rsplit("/", 1)[-1].startswith("-"):
            return False
        return self.git("check-ref-format", full_name, check=False).returncode == 0

    def update_ref(self, ref: str, new: str, old: str) -> None:
        """Compare-and-swap `ref` from `old` (ZERO_SHA: must not exist) to `new` (ZERO_SHA: delete)."""
        if new == ZERO_SHA:
            proc = self.git("update-ref", "-d", ref, old, check=False)
        else:
            proc = self.git("update-ref", ref, new, old, check=False)
        if proc.returncode != 0:
            raise CommitError(f"Could not update {ref}. Please refresh and try again.")

    # ------------------------------------------------------------------ reading

    def tree(
        self, ref: str, path: str = "", recursive: bool = False
    ) -> list[dict[str, str]] | None:
        """Entries under `path` at `ref` in GitLab's tree shape (trees first), or None if absent."""
        commit = self.resolve(ref)
        if commit is None:
            return None
        path = path.strip("/")
        tree_sha = self._rev_parse(f"{commit}:{path}" if path else f"{commit}^{{tree}}")
        if tree_sha is None or self.object_type(tree_sha) != "tree":
            return None
        args = ["ls-tree", "-z", "--full-tree"]
        if recursive:
            args += ["-r", "-t"]
        raw = self.git(*args, tree_sha).stdout.decode("utf-8", "replace")
        trees: list[dict[str, str]] = []
        others: list[dict[str, str]] = []
        for record in filter(None, raw.split("\0")):
            meta, _, rel = record.partition("\t")
            mode, kind, sha = meta.split(" ")
            full = f"{path}/{rel}" if path else rel
            entry = {
                "id": sha,
                "name": rel.rsplit("/", 1)[-1],
                "type": kind,
                "path": full,
                "mode": mode,
            }
            (trees if kind == "tree" else others).append(entry)
        return trees + others

    def _entry(self, commit: str, path: str) -> tuple[str, str, str] | None:
        raw = self.git("ls-tree", "-z", "--full-tree", commit, "--", path).stdout.decode(
            "utf-8", "replace"
        )
        for record in filter(None, raw.split("\0")):
            meta, _, rel = record.partition("\t")
            if rel == path:
                mode, kind, sha = meta.split(" ")
                return mode, kind, sha
        return None

    def last_commit_for_path(self, ref: str, path: str) -> str | None:
        """The newest commit reachable from `ref` that touched `path`."""
        commit = self.resolve(ref)
        if commit is None:
            return None
        out = self._out("log", "-1", "--format=%H", commit, "--", path).strip()
        return out or None

    def read_blob(self, ref: str, path: str) -> BlobInfo | None:
        """The file `path` at `ref` with GitLab's ids, or None when the ref or file is missing."""
        commit = self.resolve(ref)
        path = path.strip("/")
        if commit is None or not path:
            return None
        entry = self._entry(commit, path)
        if entry is None or entry[1] != "blob":
            return None
        mode, _, sha = entry
        return BlobInfo(
            path=path,
            content=self.git("cat-file", "blob", sha).stdout,
            blob_id=sha,
            mode=mode,
            commit_id=commit,
            last_commit_id=self.last_commit_for_path(commit, path) or commit,
        )

    def blob(self, sha: str) -> bytes | None:
        """The bytes of blob `sha` (full or short), or None if it is not a blob."""
        full = self.resolve_object(sha) if _SHA_RE.match(sha) else None
        if full is None or self.object_type(full) != "blob":
            return None
        return self.git("cat-file", "blob", full).stdout

    def blob_id(self, sha: str) -> str | None:
        """The full id of blob `sha`, or None when no such blob exists."""
        full = self.resolve_object(sha) if _SHA_RE.match(sha) else None
        return full if full and self.object_type(full) == "blob" else None

    def commit_info(self, sha: str) -> dict[str, Any] | None:
        """GitLab's basic commit JSON for `sha` (any commit-ish), without `web_url`."""
        full = self.resolve(sha)
        if full is None:
            return None
        return parse_commit_object(full, self.git("cat-file", "commit", full).stdout)

    def _commit_infos(self, shas: list[str]) -> list[dict[str, Any]]:
        if not shas:
            return []
        out = self.git("cat-file", "--batch", input="".join(f"{s}\n" for s in shas).encode()).stdout
        result: list[dict[str, Any]] = []
        pos = 0
        for sha in shas:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            body = out[header_end + 1 : header_end + 1 + size]
            pos = header_end + 1 + size + 1
            result.append(parse_commit_object(sha, body))
        return result

    def commits(
        self,
        ref: str,
        *,
        path: str | None = None,
        since: str | None = None,
        until: str | None = None,
        first_parent: bool = False,
        offset: int = 0,
        limit: int | None = None,
        all_refs: bool = False,
    ) -> list[dict[str, Any]] | None:
        """Commits reachable from `ref` newest first (like `git log`), or None for a bad ref."""
        args = ["rev-list"]
        if first_parent:
            args.append("--first-parent")
        if since:
            args.append(f"--since={since}")
        if until:
            args.append(f"--until={until}")
        if offset:
            args.append(f"--skip={offset}")
        if limit is not None:
            args.append(f"--max-count={limit}")
        if all_refs:
            args.append("--all")
        else:
            commit = self.resolve(ref)
            if commit is None:
                return None
            args.append(commit)
        if path:
            args += ["--", path]
        return self._commit_infos(self._out(*args).split())

    def count_commits(self, exclude: str | None, include: str) -> int:
        """How many commits `include` has that `exclude` lacks (`exclude` None: all of them)."""
        args = ["rev-list", "--count", include]
        if exclude and exclude != ZERO_SHA:
            args.append(f"^{exclude}")
        return int(self._out(*args).strip())

    def commits_between(
        self, exclude: list[str], include: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Commits reachable from `include` but from none of `exclude`, oldest first."""
        args = ["rev-list", "--reverse", include]
        args += [f"^{sha}" for sha in exclude if sha and sha != ZERO_SHA]
        shas = self._out(*args).split()
        if limit is not None:
            shas = shas[-limit:]
        return self._commit_infos(shas)

    def changed_paths(self, before: str | None, after: str) -> dict[str, list[str]]:
        """Files `added`/`modified`/`removed` from `before` (None: empty tree) to `after`."""
        old = before if before and before != ZERO_SHA else EMPTY_TREE
        raw = self.git("diff-tree", "-r", "-z", "--no-renames", "--name-status", old, after)
        parts = [p for p in raw.stdout.decode("utf-8", "replace").split("\0") if p]
        changes: dict[str, list[str]] = {"added": [], "modified": [], "removed": []}
        for status, path in zip(parts[::2], parts[1::2], strict=False):
            key = {"A": "added", "D": "removed"}.get(status[0], "modified")
            changes[key].append(path)
        return changes

    def commit_changes(self, sha: str) -> dict[str, list[str]]:
        """The files a commit added/modified/removed against its first parent."""
        info = self.commit_info(sha)
        parents = info["parent_ids"] if info else []
        return self.changed_paths(parents[0] if parents else None, sha)

    def stats(self, sha: str) -> dict[str, int]:
        """GitLab's commit `stats`: lines added/deleted against the first parent."""
        info = self.commit_info(sha)
        if info is None:
            return {"additions": 0, "deletions": 0, "total": 0}
        parent = info["parent_ids"][0] if info["parent_ids"] else EMPTY_TREE
        out = self._out("diff-tree", "-r", "--numstat", "-M", parent, info["id"])
        additions = deletions = 0
        for line in out.splitlines():
            added, deleted, _ = line.split("\t", 2)
            additions += int(added) if added.isdigit() else 0
            deletions += int(deleted) if deleted.isdigit() else 0
        return {"additions": additions, "deletions": deletions, "total": additions + deletions}

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether commit `ancestor` is reachable from `descendant`."""
        proc = self.git("merge-base", "--is-ancestor", ancestor, descendant, check=False)
        return proc.returncode == 0

    def diffs(self, old: str, new: str) -> list[dict[str, Any]]:
        """GitLab diff entries from tree-ish `old` to `new` (renames detected)."""
        raw = self.git("diff-tree", "-r", "-z", "-M", "--raw", old, new).stdout.decode(
            "utf-8", "replace"
        )
        tokens = [t for t in raw.split("\0")]
        entries: list[dict[str, Any]] = []
        i = 0
        while i < len(tokens) and tokens[i].startswith(":"):
            old_mode, new_mode, _, _, status = tokens[i][1:].split(" ")
            if status[0] in "RC":
                old_path, new_path = tokens[i + 1], tokens[i + 2]
                i += 3
            else:
                old_path = new_path = tokens[i + 1]
                i += 2
            entries.append(
                {
                    "old_path": old_path,
                    "new_path": new_path,
                    "a_mode": old_mode,
                    "b_mode": new_mode,
                    "new_file": status[0] == "A",
                    "renamed_file": status[0] == "R",
                    "deleted_file": status[0] == "D",
                    "generated_file": None,
                }
            )
        patch = self.git("diff-tree", "-r", "-p", "-M", "--no-color", "--no-ext-diff", old, new)
        chunks = re.split(rb"(?m)^diff --git ", patch.stdout)[1:]
        for entry, chunk in zip(entries, chunks, strict=False):
            text = chunk.decode("utf-8", "replace")
            match = re.search(r"(?m)^(@@ |Binary files )", text)
            entry["diff"] = text[match.start() :] if match else ""
        return entries

    def compare(self, base: str, head: str, straight: bool = False) -> dict[str, Any] | None:
        """GitLab's compare result (without web URLs), or None if either ref is unknown."""
        from_sha, to_sha = self.resolve(base), self.resolve(head)
        if from_sha is None or to_sha is None:
            return None
        commits = self.commits_between([from_sha], to_sha)
        if straight:
            diff_base = from_sha
        else:
            proc = self.git("merge-base", from_sha, to_sha, check=False)
            diff_base = proc.stdout.decode().strip() or EMPTY_TREE
        same = from_sha == to_sha
        return {
            "commit": commits[-1] if commits else None,
            "commits": commits,
            "diffs": [] if same else self.diffs(diff_base, to_sha),
            "compare_timeout": False,
            "compare_same_ref": same,
        }

    def refs_containing(self, sha: str, kind: str = "all") -> list[dict[str, str]]:
        """Branches and/or tags whose history contains commit `sha` (`kind`: branch/tag/all)."""
        result: list[dict[str, str]] = []
        if kind in ("branch", "all"):
            out = self._out(
                "for-each-ref", f"--contains={sha}", "--format=%(refname:lstrip=2)", "refs/heads"
            )
            result += [{"type": "branch", "name": n} for n in out.splitlines()]
        if kind in ("tag", "all"):
            out = self._out(
                "for-each-ref", f"--contains={sha}", "--format=%(refname:lstrip=2)", "refs/tags"
            )
            result += [{"type": "tag", "name": n} for n in out.splitlines()]
        return result

    # ------------------------------------------------------------------ writing commits

    def _hash_blob(self, content: bytes) -> str:
        return self._out("hash-object", "-w", "--stdin", input=content).strip()

    def _tree_entries(self, commit: str | None) -> dict[str, tuple[str, str]]:
        if commit is None:
            return {}
        raw = self.git("ls-tree", "-r", "-z", "--full-tree", commit).stdout.decode(
            "utf-8", "replace"
        )
        entries: dict[str, tuple[str, str]] = {}
        for record in filter(None, raw.split("\0")):
            meta, _, path = record.partition("\t")
            mode, _, sha = meta.split(" ")
            entries[path] = (mode, sha)
        return entries

    def commit(
        self,
        branch: str,
        actions: list[dict[str, Any]],
        message: str,
        author_name: str,
        author_email: str,
        *,
        start_branch: str | None = None,
        last_commit_id: str | None = None,
        created_at: datetime | None = None,
        force: bool = False,
        start_sha: str | None = None,
    ) -> str:
        """Apply GitLab commit `actions` on `branch` (created from `start_branch`/`start_sha`) and return the new sha.

        `last_commit_id` is the Files API's optimistic lock for a single-file action; each
        action may carry its own `last_commit_id` (Commits API). Raises CommitError with
        GitLab's wording.
        """
        if not self.valid_ref_name(f"refs/heads/{branch}"):
            raise CommitError(
                f"Branch name is invalid: {branch}" if branch else "branch is missing"
            )
        target_ref = f"refs/heads/{branch}"
        current = self.branch_sha(branch)
        empty = self.is_empty()
        base: str | None
        if start_sha:
            base = self.resolve(start_sha) if _SHA_RE.match(start_sha) else None
            if base is None:
                raise CommitError(f"Cannot find start_sha '{start_sha}'")
        else:
            source = start_branch or branch
            base = self.branch_sha(source)
            if base is None and not empty:
                raise CommitError("You can only create or edit files when you are on a branch")
        different = (start_sha is not None) or (start_branch not in (None, branch))
        if different and current is not None and not force:
            raise CommitError(
                f"A branch called '{branch}' already exists. Switch to that branch in order to make changes"
            )
        entries = self._tree_entries(base)
        source_ref = base
        for action in actions:
            self._apply(entries, action, source_ref, last_commit_id, len(actions) == 1)
        with self._index() as idx:
            lines = "".join(f"{mode} {sha}\t{path}\0" for path, (mode, sha) in entries.items())
            self.git("update-index", "-z", "--index-info", input=lines.encode(), env=idx)
            tree = self._out("write-tree", env=idx).strip() if entries else EMPTY_TREE
        if not entries:
            self.git("mktree", input=b"")
        when = _git_date(created_at or datetime.now(UTC))
        person = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
            "GIT_COMMITTER_DATE": when,
        }
        parents = ["-p", base] if base else []
        sha = self.git("commit-tree", tree, *parents, input=message.encode(), env=person)
        new = sha.stdout.decode().strip()
        self.update_ref(target_ref, new, current or ZERO_SHA)
        return new

    def _apply(
        self,
        entries: dict[str, tuple[str, str]],
        action: dict[str, Any],
        base: str | None,
        files_lock: str | None,
        single: bool,
    ) -> None:
        kind = action.get("action")
        if kind not in _COMMIT_ACTIONS:
            raise CommitError(f"Unknown action '{kind}'", code="invalid_action")
        path = _clean_path(str(action.get("file_path") or ""))
        lock = action.get("last_commit_id") or None
        if kind in ("update", "delete", "chmod") and path not in entries:
            if any(p.startswith(path + "/") for p in entries) and kind == "delete":
                raise CommitError("A file with this name doesn't exist")
            raise CommitError("A file with this name doesn't exist")
        if kind == "create" and path in entries:
            raise CommitError("A file with this name already exists")
        if kind == "create" and any(p.startswith(path + "/") for p in entries):
            raise CommitError("A directory with this name already exists")
        previous = path
        if kind == "move":
            previous = _clean_path(str(action.get("previous_path") or ""))
            if previous not in entries:
                raise CommitError("A file with this name doesn't exist")
            if path in entries:
                raise CommitError("A file with this name already exists")
        if base is not None and (lock or files_lock) and kind != "create":
            last = self._out("log", "-1", "--format=%H", base, "--", previous).strip()
            if lock and last != lock:
                raise CommitError(f"The file has changed since you started editing it: {previous}")
            if files_lock and single and last != files_lock:
                verb = "delete" if kind == "delete" else "update"
                raise CommitError(
                    "You are attempting to delete a file that has been previously updated."
                    if verb == "delete"
                    else "You are attempting to update a file that has changed since you started editing it."
                )
        mode = entries.get(previous, ("100644", ""))[0]
        if kind == "delete":
            del entries[path]
            return
        if kind == "chmod":
            mode = "100755" if _truthy(action.get("execute_filemode")) else "100644"
            entries[path] = (mode, entries[path][1])
            return
        if "execute_filemode" in action and action["execute_filemode"] is not None:
            mode = "100755" if _truthy(action.get("execute_filemode")) else "100644"
        content = action.get("content")
        if kind == "move" and content is None:
            sha = entries.pop(previous)[1]
            entries[path] = (mode, sha)
            self._check_placement(entries, path)
            return
        if kind == "move":
            entries.pop(previous)
        entries[path] = (mode, self._hash_blob(_decode_content(content, action.get("encoding"))))
        self._check_placement(entries, path)

    @staticmethod
    def _check_placement(entries: dict[str, tuple[str, str]], path: str) -> None:
        """A file may neither sit below another file nor replace a directory."""
        if any(parent in entries for parent in _parents(path)):
            raise CommitError("A file with this name already exists")
        if any(p.startswith(path + "/") for p in entries):
            raise CommitError("A directory with this name already exists")

    # ------------------------------------------------------------------ revert

    def revert(self, sha: str, branch: str, author: Person) -> str:
        """Commit on `branch` the inverse of commit `sha`; RevertError like GitLab on conflict/empty."""
        info = self.commit_info(sha)
        tip = self.branch_sha(branch)
        if info is None:
            raise GitError("404 Commit Not Found", code="not_found")
        if tip is None:
            raise GitError("404 Branch Not Found", code="not_found")
        parent = info["parent_ids"][0] if info["parent_ids"] else EMPTY_TREE
        patch = self.git("diff-tree", "-p", "--binary", "--full-index", parent, info["id"]).stdout
        with self._index() as idx:
            self.git("read-tree", tip, env=idx)
            if patch.strip():
                applied = self.git(
                    "apply", "--cached", "--3way", "-R", "-", input=patch, env=idx, check=False
                )
                if applied.returncode != 0:
                    raise RevertError(REVERT_FAILED, code="conflict")
            tree = self._out("write-tree", env=idx).strip()
        if tree == self._rev_parse(f"{tip}^{{tree}}"):
            raise RevertError(REVERT_FAILED, code="empty")
        message = f'Revert "{info["title"]}"\n\nThis reverts commit {info["id"]}.'
        when = _git_date(author.when)
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
            "GIT_COMMITTER_DATE": when,
        }
        new = self._out("commit-tree", tree, "-p", tip, input=message.encode(), env=env).strip()
        self.update_ref(f"refs/heads/{branch}", new, tip)
        return new

    # ------------------------------------------------------------------ branches and tags

    def branches(self) -> list[tuple[str, str]]:
        """(name, tip sha) of every branch, sorted by name."""
        out = self._out(
            "for-each-ref",
            "--sort=refname",
            "--format=%(objectname) %(refname:lstrip=2)",
            "refs/heads",
        )
        return [(line[41:], line[:40]) for line in out.splitlines()]

    def create_branch(self, name: str, ref: str) -> str:
        """Create branch `name` at `ref` and return its sha; RefError with GitLab's wording."""
        if not self.valid_ref_name(f"refs/heads/{name}") or name == "HEAD":
            raise RefError("Branch name is invalid")
        if self.branch_sha(name) is not None:
            raise RefError("Branch already exists")
        sha = self.resolve(ref)
        if sha is None:
            raise RefError(f"Invalid reference name: {ref}")
        self.update_ref(f"refs/heads/{name}", sha, ZERO_SHA)
        return sha

    def delete_branch(self, name: str) -> str:
        """Delete branch `name` and return its old tip; RefError when it does not exist."""
        old = self.branch_sha(name)
        if old is None:
            raise RefError("404 Branch Not Found", code="not_found")
        self.update_ref(f"refs/heads/{name}", ZERO_SHA, old)
        return old

    def tags(self) -> list[dict[str, Any]]:
        """Every tag: name, target (tag object or commit), commit sha, message, created_at."""
        fmt = "%(refname:lstrip=2)%00%(objectname)%00%(objecttype)%00%(*objectname)%00%(taggerdate:iso-strict)%00%(contents)%00%01"
        out = self._out("for-each-ref", f"--format={fmt}", "refs/tags")
        result: list[dict[str, Any]] = []
        for chunk in out.split("\x01"):
            record = chunk.lstrip("\n")
            if not record:
                continue
            name, target, kind, peeled, date, contents, _ = record.split("\0")
            annotated = kind == "tag"
            commit = peeled if annotated else target
            result.append(
                {
                    "name": name,
                    "target": target,
                    "commit_sha": commit if self.object_type(commit) == "commit" else None,
                    "message": contents if annotated else None,
                    "tagger_date": date or None,
                }
            )
        return result

    def tag(self, name: str) -> dict[str, Any] | None:
        """One tag in the `tags()` shape, or None."""
        return next((t for t in self.tags() if t["name"] == name), None)

    def create_tag(self, name: str, ref: str, message: str | None, tagger: Person) -> str:
        """Create tag `name` at `ref` (annotated when `message`), returning the ref's new value."""
        if not name or not self.valid_ref_name(f"refs/tags/{name}"):
            raise RefError("Tag name invalid")
        if f"refs/tags/{name}" in self.refs():
            raise RefError(f"Tag {name} already exists")
        sha = self.resolve(ref)
        if sha is None:
            raise RefError(f"Target {ref} is invalid")
        if message:
            when = _git_date(tagger.when)
            body = (
                f"object {sha}\ntype commit\ntag {name}\n"
                f"tagger {tagger.name} <{tagger.email}> {when}\n\n{message.rstrip()}\n"
            )
            target = self._out("mktag", input=body.encode()).strip()
        else:
            target = sha
        self.update_ref(f"refs/tags/{name}", target, ZERO_SHA)
        return target

    def delete_tag(self, name: str) -> str:
        """Delete tag `name` and return the object it pointed to."""
        old = self.refs().get(f"refs/tags/{name}")
        if old is None:
            raise RefError("404 Tag Not Found", code="not_found")
        self.update_ref(f"refs/tags/{name}", ZERO_SHA, old)
        return old

    # ------------------------------------------------------------------ archive

    def archive(self, ref: str, fmt: str, prefix: str, path: str | None = None) -> bytes | None:
        """An archive of `ref` (optionally only `path`) with every entry under `prefix/`."""
        commit = self.resolve(ref)
        if commit is None or fmt not in ARCHIVE_FORMATS:
            return None
        path = (path or "").strip("/")
        if path and self._entry(commit, path) is None:
            return None
        git_fmt = {"tar.gz": "tar.gz", "tar": "tar", "zip": "zip", "tar.bz2": "tar"}[fmt]
        args = ["archive", f"--format={git_fmt}", f"--prefix={prefix}/", commit]
        if path:
            args += ["--", path]
        data = self.git(*args).stdout
        return bz2.compress(data) if fmt == "tar.bz2" else data


def archive_prefix(
    project_path: str, ref: str, sha: str, path: str | None = None, *, append_sha: bool = True
) -> str:
    """GitLab's archive folder (and file) name: `<project>-<ref>[-<sha>][-<path>]`.

    `Gitlab::Git::Repository#archive_prefix`: the API always passes `append_sha: true`, so
    the sha is there even when the ref is the sha itself; `/` in the ref and path become `-`."""
    segments = [project_path, ref.replace("/", "-")]
    if append_sha:
        segments.append(sha)
    if path and path.strip("/"):
        segments.append(path.strip("/").replace("/", "-"))
    return "-".join(segments)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(value)


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _clean_path(path: str) -> str:
    """A repository-relative file path, or CommitError for paths GitLab refuses."""
    cleaned = path.strip("/")
    parts = cleaned.split("/")
    if (
        not cleaned
        or any(p in ("", ".", "..") for p in parts)
        or "\0" in cleaned
        or parts[0] == ".git"
    ):
        raise CommitError(
            f"Invalid path: {path!r}" if path else "file_path is missing", code="invalid_path"
        )
    return cleaned


def _decode_content(content: Any, encoding: Any) -> bytes:
    if content is None:
        content = ""
    if (encoding or "text") == "base64":
        try:
            return base64.b64decode(str(content), validate=False)
        except (binascii.Error, ValueError) as exc:
            raise CommitError("Invalid base64 content") from exc
    if encoding not in (None, "text"):
        raise CommitError("encoding does not have a valid value", code="invalid_encoding")
    return str(content).encode("utf-8")
