"""Start a new project from a dataset, the DVC way — as the caller, in GitLab.

`create_consumer_project` makes a GitLab project and ONE commit holding, per imported path,
the import pointer `dvc import <dataset git url> <path> --rev <ref>` writes (`frozen`,
`deps: [{path, repo: {url, rev, rev_lock}}]`, the output's md5/size as the dataset's own
pointer at the ref says, and the stage md5 computed by DVC's `compute_md5`), `dvc init`'s
files (a local cache only), the `.gitignore` lines `dvc import` adds, the consumer pipeline
(`gitlab-ci/dataset-consumer.gitlab-ci.yml`) and a README on one-time authentication.
No credential is committed: the repository URL is GitLab's `http_url_to_repo` as is, and
DVC resolves the dataset's remote from the dataset's own `.dvc/config`.

The new project carries the topics `dshub-project` (so it is never indexed as a dataset,
although it holds a `.dvc/config`; see `indexer.gitlab.reader.GitLabReader.is_dataset`)
and `dshub-uses-<dataset id>` ("used by": `consumer_projects` lists the projects the
viewer may see that carry it).
"""

from __future__ import annotations

import contextlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions
import requests
from dvc.stage import Stage
from dvc.stage.utils import compute_md5
from dvc.utils.serialize import dumps_yaml
from dvc_data.hashfile.meta import Meta

from indexer.data.pointers import PointerError, PointerOut, is_pointer_path, parse_pointer
from indexer.errors import InvalidInput, NotFound, Unprocessable
from indexer.gitlab.reader import CONSUMER_TOPIC
from indexer.read.resolve import validate_ref
from indexer.write import skeleton
from indexer.write.datasets import _call, resolve_namespace, translate
from indexer.write.layout import gitignore_add, gitignore_path, output_entry
from indexer.write.repository import RepoView

USES_TOPIC = "dshub-uses-{dataset_id}"
MAX_PATHS = 100
CONSUMER_PIPELINE = "dataset-consumer.gitlab-ci.yml"


@dataclass(frozen=True)
class NewProject:
    """What `POST /datasets/<id>/projects` asks for (validated at the HTTP edge)."""

    name: str
    namespace: str
    ref: str
    paths: tuple[str, ...] = ()  # dataset paths to import; empty: every pointer's outputs
    path: str | None = None  # the GitLab project path (default: derived from the name)


@dataclass(frozen=True)
class Imported:
    """One import: the dataset path, the pointer written and what it pins."""

    path: str
    pointer: str
    md5: str
    size: int | None
    nfiles: int | None


@dataclass
class StartedProject:
    """The new project as GitLab answered, its one commit and what it imports."""

    id: int
    path_with_namespace: str
    web_url: str
    http_url_to_repo: str
    commit_sha: str
    rev: str
    rev_lock: str
    imports: list[Imported] = field(default_factory=list)


def uses_topic(dataset_id: int) -> str:
    """The topic marking a project as started from dataset `dataset_id`."""
    return USES_TOPIC.format(dataset_id=dataset_id)


# --------------------------------------------------------------------------- the pointers


class _ImportStage(Stage):  # type: ignore[misc]  # dvc is untyped
    """Just enough of a stage for DVC's `compute_md5`: its dumped form."""

    def __init__(self, data: dict[str, Any]) -> None:  # no repo: nothing is read
        self._data = data

    def dumpd(self, **kwargs: Any) -> dict[str, Any]:
        return dict(self._data)


def import_pointer_text(out: PointerOut, url: str, rev: str, rev_lock: str) -> str:
    """The `.dvc` file `dvc import <url> <out.path> --rev <rev>` writes beside the output
    (output path relative to the pointer's directory), with `rev_lock` pinned."""
    meta = Meta(isdir=out.is_dir, size=out.size, nfiles=out.nfiles)
    stage: dict[str, Any] = {
        "deps": [{"path": out.path, "repo": {"url": url, "rev": rev, "rev_lock": rev_lock}}],
        "outs": [output_entry(out.oid, meta, posixpath.basename(out.path))],
    }
    md5 = compute_md5(_ImportStage(stage))
    return str(dumps_yaml({"md5": md5, "frozen": True, **stage}))


def dataset_outputs(view: RepoView) -> dict[str, PointerOut]:
    """Every output the dataset's `.dvc` pointers track at the commit, by repository path."""
    found: dict[str, PointerOut] = {}
    for path in view.walk(""):
        if not is_pointer_path(path) or posixpath.basename(path) == "dvc.lock":
            continue
        pointer = view.file(path)
        if pointer is None:
            continue
        try:
            outs = parse_pointer(pointer.content, path)
        except PointerError:
            continue  # a broken pointer is not importable; the dataset's index reports it
        for out in outs:
            if not out.imported:
                found[out.path] = out
    return found


def chosen_outputs(available: dict[str, PointerOut], paths: tuple[str, ...]) -> list[PointerOut]:
    """The outputs to import: `paths` (each a tracked file or directory), else all (422 else)."""
    if not available:
        raise Unprocessable("the dataset has no DVC-tracked data at this ref to import")
    if not paths:
        return [available[p] for p in sorted(available)]
    missing = [p for p in paths if p not in available]
    if missing:
        listed = ", ".join(sorted(available)[:20])
        raise Unprocessable(
            f"not a tracked file or directory of the dataset at this ref: {', '.join(missing)}; "
            f"importable paths: {listed}"
        )
    return [available[p] for p in dict.fromkeys(paths)]


# --------------------------------------------------------------------------- the project


def project_files(
    outs: list[PointerOut],
    *,
    url: str,
    rev: str,
    rev_lock: str,
    dvc_files: dict[str, str],
    readme: str,
) -> tuple[dict[str, str], list[Imported]]:
    """`{path: text}` of the new project's first commit, and the imports it holds."""
    files: dict[str, str] = dict(dvc_files)
    imports: list[Imported] = []
    for out in outs:
        pointer = f"{out.path}.dvc"
        files[pointer] = import_pointer_text(out, url, rev, rev_lock)
        ignore = gitignore_path(out.path)
        files[ignore] = gitignore_add(files.get(ignore), out.path) or files.get(ignore, "")
        imports.append(Imported(out.path, pointer, out.oid, out.size, out.nfiles))
    files["README.md"] = readme
    files[".gitlab-ci.yml"] = consumer_pipeline_text()
    return files, imports


def consumer_pipeline_text() -> str:
    """The shipped consumer pipeline (`.gitlab-ci.yml` of every project started here)."""
    for candidate in skeleton.PIPELINE_CANDIDATES:
        path = Path(candidate).with_name(CONSUMER_PIPELINE)
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return skeleton.pipeline_text()  # raises the reinstall hint when nothing is installed


def create_consumer_project(
    client: gitlab.Gitlab,
    dataset_id: int,
    spec: NewProject,
    dvc_state_dir: Any,
    dshub_url: str | None,
) -> StartedProject:
    """Create the project and its one commit as the caller; deleted again if the commit fails."""
    validate_ref(spec.ref)
    if len(spec.paths) > MAX_PATHS:
        raise InvalidInput(f"at most {MAX_PATHS} paths per project")
    source = _call(f"reading dataset {dataset_id}", lambda: client.projects.get(dataset_id))
    try:
        commit = source.commits.get(spec.ref)
    except gitlab.exceptions.GitlabError as exc:
        if exc.response_code == 404:
            raise NotFound(
                f"dataset {dataset_id} has no version, branch or commit {spec.ref!r}"
            ) from None
        raise translate(exc, f"reading ref {spec.ref!r}") from exc
    except requests.RequestException as exc:
        raise translate(exc, f"reading ref {spec.ref!r}") from exc
    rev_lock = str(commit.id)
    outs = chosen_outputs(dataset_outputs(RepoView(source, rev_lock)), spec.paths)
    url = str(source.http_url_to_repo)
    namespace = resolve_namespace(client, spec.namespace)
    attrs: dict[str, Any] = {
        "name": spec.name,
        "namespace_id": namespace.id,
        "description": f"Started from dataset {source.path_with_namespace} at {spec.ref}",
        "visibility": "private",
        "topics": [CONSUMER_TOPIC, uses_topic(dataset_id)],
    }
    if spec.path:
        attrs["path"] = spec.path
    project = _call(
        f"creating a project in {namespace.full_path!r}", lambda: client.projects.create(attrs)
    )
    readme = readme_text(
        spec.name,
        dataset=str(source.path_with_namespace),
        rev=spec.ref,
        clone_url=str(project.http_url_to_repo),
        outs=outs,
        dshub_url=dshub_url,
    )
    files, imports = project_files(
        outs,
        url=url,
        rev=spec.ref,
        rev_lock=rev_lock,
        dvc_files=skeleton.dvc_init_files(dvc_state_dir),
        readme=readme,
    )
    actions = [{"action": "create", "file_path": p, "content": t} for p, t in files.items()]
    try:
        made = project.commits.create(
            {
                "branch": str(project.default_branch or "main"),
                "commit_message": f"Import {source.path_with_namespace} at {spec.ref}\n\n"
                f"DVC import pointers pinned to {rev_lock}, made by dshub.",
                "actions": actions,
            }
        )
    except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
        error = translate(exc, "the project's first commit")
        with contextlib.suppress(gitlab.exceptions.GitlabError, requests.RequestException):
            project.delete()  # best effort; the error below says what failed
        raise error from exc
    return StartedProject(
        id=int(project.id),
        path_with_namespace=str(project.path_with_namespace),
        web_url=str(project.web_url),
        http_url_to_repo=str(project.http_url_to_repo),
        commit_sha=str(made.id),
        rev=spec.ref,
        rev_lock=rev_lock,
        imports=imports,
    )


@dataclass(frozen=True)
class ConsumerProject:
    """A project started from a dataset, as the viewer may see it."""

    id: int
    name: str
    path_with_namespace: str
    web_url: str


def consumer_projects(
    client: gitlab.Gitlab, dataset_id: int, limit: int = 20
) -> list[ConsumerProject]:
    """Projects started from the dataset that the client's token may see (newest first)."""
    listing = _call(
        f"listing projects started from dataset {dataset_id}",
        lambda: client.projects.list(
            topic=uses_topic(dataset_id), order_by="id", sort="desc", per_page=limit, page=1
        ),
    )
    return [
        ConsumerProject(int(p.id), str(p.name), str(p.path_with_namespace), str(p.web_url))
        for p in listing
    ]


# --------------------------------------------------------------------------- README


def gitlab_base_of(clone_url: str) -> str:
    """The GitLab base URL (scheme and host) of a project's clone URL."""
    parts = clone_url.split("/", 3)
    return "/".join(parts[:3]) if len(parts) > 2 else clone_url


def login_command(clone_url: str, dshub_url: str | None) -> str:
    """The one-time `dshub login` line for a project cloned from `clone_url`."""
    dshub = dshub_url or "https://dshub.example.org"
    return f"dshub login --gitlab-url {gitlab_base_of(clone_url)} --dshub-url {dshub}"


def readme_text(
    name: str,
    *,
    dataset: str,
    rev: str,
    clone_url: str,
    outs: list[PointerOut],
    dshub_url: str | None,
) -> str:
    """How to get the data: one-time authentication, `dvc pull`, `dvc update --rev`."""
    folder = clone_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    gitlab_base = gitlab_base_of(clone_url)
    pointers = " ".join(f"{o.path}.dvc" for o in outs)
    listed = "\n".join(f"- `{o.path}` ({o.oid})" for o in outs)
    return "\n".join(
        [
            f"# {name}",
            "",
            f"Started from the dataset **{dataset}** at `{rev}` with dshub. The data is a",
            "[DVC](https://dvc.org) import pinned to the version's commit (`rev_lock` in the",
            "`.dvc` files), so this project's data is reproducible:",
            "",
            listed,
            "",
            "## One-time authentication",
            "",
            "DVC fetches the data by cloning the dataset's repository and reading its storage",
            "from dshub, so git and dshub's DVC remote both need your GitLab token. Nothing in",
            "this repository holds a credential. Once per machine:",
            "",
            "```sh",
            login_command(clone_url, dshub_url),
            "```",
            "",
            "It reads the token without echoing it and writes, readable only by you, a git",
            "credential (`~/.git-credentials`, git's `store` helper) and a `~/.netrc` entry.",
            "`dshub logout` removes them. By hand instead:",
            "",
            "```sh",
            f"git config --global credential.{gitlab_base}.helper store",
            f"printf 'url={gitlab_base}\\nusername=oauth2\\npassword=%s\\n\\n' \"$TOKEN\" "
            "| git credential approve",
            "touch ~/.netrc && chmod 600 ~/.netrc",
            'echo "machine <dshub host> login oauth2 password $TOKEN" >> ~/.netrc',
            "```",
            "",
            "## Get the data",
            "",
            "```sh",
            f"git clone {clone_url}",
            f"cd {folder}",
            "dvc pull",
            "```",
            "",
            "## Move to a newer version",
            "",
            "```sh",
            f"dvc update --rev <newer version> {pointers}",
            'git commit -am "Use the newer version"',
            "```",
            "",
            "The pipeline (`.gitlab-ci.yml`) pulls the data in CI with the job's own token.",
            "",
        ]
    )
