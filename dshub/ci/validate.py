"""The validate-storage job: is what this merge request (or tag, or branch) points at real?

Checks, all run and all reported (JUnit XML plus a markdown data diff):
1. the remote in `.dvc/config` is this dataset's (DSHUB_DVC_REMOTE_URL, endpoint, no secrets)
   and does not turn TLS verification off (`ssl_verify = false`);
2. every `.dvc` file at HEAD is well-formed (DVC 2 and 3);
3. every pointer changed by the merge request (against CI_MERGE_REQUEST_DIFF_BASE_SHA), or
   every pointer outside merge requests, references objects present in storage, including
   every entry of tracked directories and the `.dir` manifests;
4. no file over `max_git_file_mb` is committed to git directly;
5. optionally, data files have one of the allowed extensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dshub.ci import gitrepo
from dshub.ci.access import remote_access
from dshub.ci.datadiff import diff_outputs, render_markdown
from dshub.ci.environment import Access
from dshub.ci.errors import CiCheckFailed
from dshub.ci.junit import TestCase, write_junit
from dshub.ci.presence import DirEntry, RemoteObjects, referenced_objects
from dshub.ci.remote import read_remote, remote_problems, tls_problems
from dshub.config import CiVariables
from indexer.data.pointers import PointerError, PointerOut, parse_pointer

SUITE = "validate-storage"


@dataclass(frozen=True)
class ValidateOptions:
    """The job's inputs."""

    remote_name: str | None = None
    jobs: int = 8
    max_git_file_mb: float = 10.0
    allowed_extensions: tuple[str, ...] = ()
    junit_path: Path | None = None
    diff_path: Path | None = None


@dataclass
class ValidateReport:
    """Every check's test case, and the data diff."""

    cases: list[TestCase] = field(default_factory=list)
    diff_markdown: str = ""

    @property
    def failures(self) -> list[TestCase]:
        """The failed checks."""
        return [case for case in self.cases if case.failure is not None]


@dataclass(frozen=True)
class Scope:
    """Which pointers to check against storage, and what to diff against."""

    pointers: list[str]
    base: str | None
    description: str
    compared: frozenset[str] | None = None  # pointers to diff (None: all of them)


def decide_scope(root: Path, variables: CiVariables, head: str, all_pointers: list[str]) -> Scope:
    """Changed pointers in a merge request; every pointer otherwise (tag or branch pipelines)."""
    base = variables.get("CI_MERGE_REQUEST_DIFF_BASE_SHA")
    if base is not None:
        if not gitrepo.has_commit(root, base):
            raise CiCheckFailed(
                f"CI_MERGE_REQUEST_DIFF_BASE_SHA {base} is not in this clone; set GIT_DEPTH: 0 on the job"
            )
        changed = gitrepo.changed_files(root, base, head)
        pointers = sorted(path for path, status in changed.items() if status != "D")
        return Scope(pointers, base, f"pointers changed since {base[:12]}", frozenset(changed))
    previous: str | None = None
    tag = variables.get("CI_COMMIT_TAG")
    before = variables.get("CI_COMMIT_BEFORE_SHA")
    if tag is not None:
        try:
            found = (
                gitrepo.git(root, "describe", "--tags", "--abbrev=0", f"{head}^").decode().strip()
            )
            previous = found or None
        except CiCheckFailed:
            previous = None
    elif before is not None and before != gitrepo.ZERO_SHA and gitrepo.has_commit(root, before):
        previous = before
    return Scope(all_pointers, previous, "every pointer")


@dataclass
class _Parsed:
    """Pointers read with dshub's one pointer model: outputs kept here, errors, and skips."""

    outputs: dict[str, list[PointerOut]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _parse_all(texts: dict[str, str]) -> _Parsed:
    """Parse every pointer; outputs whose bytes live elsewhere are skipped with the reason."""
    result = _Parsed()
    for pointer, text in texts.items():
        try:
            outs = parse_pointer(text, pointer)
        except PointerError as exc:
            result.errors[pointer] = exc.message
            continue
        versioned = [out.path for out in outs if out.cloud_versioned]
        if versioned:
            result.errors[pointer] = (
                f"{pointer}: {versioned[0]} uses cloud versioning (`files:`), which dshub does "
                "not support"
            )
            continue
        result.outputs[pointer] = [out for out in outs if out.stored_elsewhere is None]
        result.skipped.extend(
            (f"{out.path} ({pointer})", out.stored_elsewhere)
            for out in outs
            if out.stored_elsewhere is not None
        )
    return result


Manifests = dict[tuple[str, str], list[DirEntry] | None]


def _base_outputs(root: Path, scope: Scope) -> list[PointerOut]:
    if scope.base is None:
        return []
    base_pointers = set(gitrepo.files_at(root, scope.base))
    if scope.compared is not None:
        base_pointers &= scope.compared
    base_parsed = _parse_all(gitrepo.read_files(root, scope.base, sorted(base_pointers)))
    return [out for outs in base_parsed.outputs.values() for out in outs]


def _storage_cases(
    objects: RemoteObjects,
    checked: list[str],
    new_outputs: list[PointerOut],
    base_outputs: list[PointerOut],
    say: Callable[[str], None],
) -> tuple[list[TestCase], Manifests]:
    """One test case per checked pointer: are all its objects (and directory entries) stored?"""
    new_keys = {(out.hash_name, out.oid) for out in new_outputs}
    removed_dirs = [out for out in base_outputs if (out.hash_name, out.oid) not in new_keys]
    manifests = objects.manifests([*new_outputs, *removed_dirs])
    refs, unreadable = referenced_objects(new_outputs, manifests)
    missing = objects.missing(refs)
    by_pointer: dict[str, list[str]] = {}
    for ref in missing:
        label, _, pointer = ref.label.rpartition(" (")
        by_pointer.setdefault(pointer.rstrip(")"), []).append(
            f"missing from storage: {label} ({ref.oid})"
        )
    for out in unreadable:
        by_pointer.setdefault(out.pointer_path, []).append(
            f"directory manifest of {out.path} ({out.oid}) is readable neither locally nor in storage"
        )
    say(f"storage: {len(refs)} objects checked, {len(missing)} missing")
    cases = [
        TestCase(
            "storage", pointer, "\n".join(by_pointer[pointer]) if pointer in by_pointer else None
        )
        for pointer in checked
    ]
    return cases, manifests


def _git_size_case(root: Path, head: str, base: str | None, limit_mb: float) -> TestCase:
    big = gitrepo.blobs_over(root, head, base, int(limit_mb * 1024 * 1024))
    failure = "\n".join(
        f"{path} is {size:,} bytes, committed to git directly (limit {limit_mb:g} MB); "
        "track it with `dvc add`"
        for path, size in big
    )
    return TestCase("git", f"no file over {limit_mb:g} MB in git", failure or None)


def _extension_case(
    outputs: list[PointerOut], manifests: Manifests, extensions: tuple[str, ...]
) -> TestCase:
    allowed = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    files = [out.path for out in outputs if not out.is_dir]
    for out in outputs:
        entries = manifests.get((out.hash_name, out.oid)) if out.is_dir else None
        files.extend(f"{out.path}/{entry.relpath}" for entry in entries or [])
    bad = sorted(path for path in files if PurePosixPath(path).suffix.lower() not in allowed)
    failure = "\n".join(f"{path}: extension not in {', '.join(allowed)}" for path in bad)
    return TestCase("extensions", "data files have allowed extensions", failure or None)


def run_validate(
    root: Path, variables: CiVariables, options: ValidateOptions, say: Callable[[str], None] = print
) -> ValidateReport:
    """Run every check in `root`, write the reports, and raise `CiCheckFailed` if any failed."""
    report = ValidateReport()
    cases = report.cases
    remote = read_remote(root, options.remote_name)
    problems = remote_problems(remote, variables)
    cases.append(TestCase("remote", ".dvc/config remote", "\n".join(problems) or None))
    cases.append(TestCase("remote", "TLS verification", "\n".join(tls_problems(remote)) or None))

    head = gitrepo.head_sha(root)
    all_pointers = gitrepo.files_at(root, head)
    read = _parse_all(gitrepo.read_files(root, head, all_pointers))
    parsed = read.outputs
    cases.extend(TestCase("pointer-format", p, e) for p, e in sorted(read.errors.items()))
    cases.append(TestCase("pointer-format", f"{len(all_pointers)} pointer files parsed"))
    cases.extend(
        TestCase("pointer-format", f"{label}: not in this dataset's storage", skipped=reason)
        for label, reason in read.skipped
    )

    scope = decide_scope(root, variables, head, all_pointers)
    say(f"checking {len(scope.pointers)} pointers ({scope.description}) against {remote.url}")
    checked = [pointer for pointer in scope.pointers if pointer in parsed]
    new_outputs = [out for pointer in checked for out in parsed[pointer]]
    base_outputs = _base_outputs(root, scope)

    manifests: Manifests = {}
    if problems:
        reason = "the remote is not this dataset's; not checked"
        cases.append(TestCase("storage", "objects present", skipped=reason))
    else:
        with remote_access(root, remote, variables, Access.READ_ONLY, say) as dshub:
            objects = RemoteObjects(root, remote.name, options.jobs, dshub)
            try:
                storage, manifests = _storage_cases(
                    objects, checked, new_outputs, base_outputs, say
                )
            finally:
                objects.close()
        cases.extend(storage)

    if options.max_git_file_mb > 0:
        mr_base = scope.base if scope.compared is not None else None
        cases.append(_git_size_case(root, head, mr_base, options.max_git_file_mb))
    if options.allowed_extensions:
        cases.append(_extension_case(new_outputs, manifests, options.allowed_extensions))

    span = f" ({scope.base[:12]}..{head[:12]})" if scope.base else ""
    changes = diff_outputs(base_outputs, new_outputs, manifests)
    report.diff_markdown = render_markdown(
        f"Data diff: {scope.description}{span}", changes, base_outputs, new_outputs
    )
    _finish(report, options, say)
    return report


def _finish(report: ValidateReport, options: ValidateOptions, say: Callable[[str], None]) -> None:
    if options.junit_path is not None:
        write_junit(options.junit_path, SUITE, report.cases)
    if options.diff_path is not None:
        options.diff_path.write_text(report.diff_markdown, encoding="utf-8")
    for case in report.failures:
        say(f"FAILED {case.classname}: {case.name}")
        for line in (case.failure or "").splitlines():
            say(f"  {line}")
    if report.failures:
        raise CiCheckFailed(
            f"{len(report.failures)} of {len(report.cases)} checks failed; "
            f"see {SUITE} in the test report"
        )
    say(f"all {len(report.cases)} checks passed")
