"""The details view of one dataset: header, README card, storage site, file browser, file page,
versions and "use this dataset" snippets.

URLs are GitLab's shape: `/datasets/<full_path>`, `.../-/tree/<path>?ref=`,
`.../-/blob/<path>?ref=`, `.../-/versions`; `/-/datasets/<id>` redirects to the details view.
Reads go through the API's own functions (`indexer.read.search` for the dataset and its versions,
the API's `Resolver` for refs, folders and files), so a dataset the caller may not read is the
404 page a missing one gets, at every URL, and a folder lists exactly what
`GET /api/v1/datasets/<id>/tree` lists, 100 entries a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from urllib.parse import quote

from flask import current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from indexer.errors import DshubError, NotFound
from indexer.read import search
from indexer.read.resolve import Commit, Folder, GitFile, TreeItem, validate_path, validate_ref
from indexer.store import Dataset, Ref
from indexer.write import datasets as write
from indexer.write.datasets import Commit as HistoryCommit
from webhook_service.api_datasets import used_by
from webhook_service.api_sites import site_json
from webhook_service.app_settings import services, settings_of
from webhook_service.auth import current_viewer, request_token
from webhook_service.ui import blueprint
from webhook_service.ui.datasets import page_number
from webhook_service.ui.formatting import (
    FULL_SHA,
    human_size,
    is_image,
    permanent_ref,
    quote_path,
    with_query,
)
from webhook_service.ui.readme import README_NAMES, decode_readme, render_markdown

PER_PAGE = 100
THUMBNAIL, LARGE_PREVIEW = 256, 1024


def dataset_url(dataset: Dataset, *parts: str) -> str:
    """The UI URL of a dataset (`parts` such as `tree`, `images/a` follow `/-/`)."""
    base = f"/datasets/{quote_path(dataset.path_with_namespace)}"
    tail = "/".join(quote_path(p) for p in parts if p)
    return f"{base}/-/{tail}" if tail else base


def file_url(dataset: Dataset, path: str, ref: str) -> str:
    """The API download URL of one file at `ref` (what "Download" and "Copy link" point at)."""
    return f"/api/v1/datasets/{dataset.project_id}/files/{quote(path)}?ref={quote(ref, safe='')}"


@dataclass(frozen=True)
class RefChoice:
    """One entry of the ref selector."""

    name: str
    kind: str  # "branch", "tag" or "commit"


@dataclass(frozen=True)
class Place:
    """Where the browser stands: the dataset, the requested ref and what it resolves to."""

    dataset: Dataset
    ref: str
    commit: Commit
    refs: list[Ref]
    permanent: str

    @property
    def tags(self) -> set[str]:
        """Names of the dataset's indexed versions."""
        return {r.ref for r in self.refs if r.kind == "tag"}

    def choices(self) -> list[RefChoice]:
        """The ref selector: the default branch, then versions newest first, and the current
        ref if it is neither (another branch or a commit sha)."""
        branches = [RefChoice(r.ref, "branch") for r in self.refs if r.kind != "tag"]
        tags = sorted(
            (r for r in self.refs if r.kind == "tag"),
            key=lambda r: (r.ref_date.timestamp() if r.ref_date else float("-inf"), r.ref),
            reverse=True,
        )
        found = [*branches, *(RefChoice(r.ref, "tag") for r in tags)]
        if all(choice.name != self.ref for choice in found):
            kind = "commit" if FULL_SHA.fullmatch(self.ref) else "branch"
            found.insert(0, RefChoice(self.ref, kind))
        return found


def _absent(full_path: str) -> NotFound:
    # The one message for "no such dataset" and "not yours to see".
    return NotFound(f"There is no dataset at {full_path[:200]} that you can see.")


def find(full_path: str) -> Dataset:
    """The readable dataset at a GitLab path, or the 404 a missing one gets."""
    dataset = search.find_dataset(services().index, current_viewer(), full_path)
    if dataset is None:
        raise _absent(full_path)
    return dataset


def place(dataset: Dataset, raw: str | None = None) -> Place:
    """Resolve `raw`, else `?ref=` (default branch when absent), for `dataset`."""
    raw = raw or request.args.get("ref") or None
    ref = validate_ref(raw) if raw else None
    commit = services().resolver.commit(dataset, ref)
    refs = services().index.list_refs(dataset.project_id)
    shown = ref or commit.ref
    tags = {r.ref for r in refs if r.kind == "tag"}
    return Place(dataset, shown, commit, refs, permanent_ref(shown, commit.sha, tags))


@blueprint.get("/-/datasets/<int:project_id>")
def dataset_by_id(project_id: int) -> ResponseReturnValue:
    """`/-/datasets/<id>` → the details view (404 page when absent or not readable)."""
    dataset = search.get_dataset(services().index, current_viewer(), project_id)
    if dataset is None:
        raise NotFound(f"There is no dataset {project_id} that you can see.")
    return redirect(dataset_url(dataset), code=302)


@blueprint.get("/datasets/<path:rest>")
def dataset_page(rest: str) -> ResponseReturnValue:
    """Every view of one dataset, dispatched on the part after `/-/`."""
    full_path, _, action = rest.partition("/-/")
    dataset = find(full_path)
    view, _, path = action.partition("/")
    if view in ("", "tree"):
        return _tree(dataset, path.strip("/"), home=not action)
    if view == "blob" and path:
        return _blob(dataset, path)
    if view in ("versions", "compare") and not path:
        from webhook_service.ui import versions  # imports this module

        return (
            versions.versions_page(dataset)
            if view == "versions"
            else versions.compare_page(dataset)
        )
    raise NotFound(f"There is no page {action[:100]} for this dataset.")


def _previews_on() -> bool:
    return request.args.get("previews") == "1"


def _tree(dataset: Dataset, path: str, *, home: bool) -> ResponseReturnValue:
    path = validate_path(path, allow_root=True) if path else ""
    at = place(dataset)
    page = page_number()
    level = services().resolver.list_level(dataset, at.commit, path, offset=(page - 1) * PER_PAGE)
    chosen: list[TreeItem] = list(islice(level, PER_PAGE + 1))
    if page > 1 and not chosen:
        raise NotFound(f"Page {page} of this folder is empty; go back to page 1.")
    more = len(chosen) > PER_PAGE
    previews = _previews_on()
    items = chosen[:PER_PAGE]
    links = _Links(dataset, at, previews)
    return render_template(
        "ui/dataset.html",
        dataset=dataset,
        at=at,
        path=path,
        rows=rows_of(links, items),
        page=page,
        more=more,
        previews=previews,
        grid=previews and any(i.type == "file" and is_image(i.media_type) for i in items),
        home=home,
        readme=_readme(dataset, at) if home and not path else None,
        site=_site(dataset),
        candidates=_candidates(dataset) if home else [],
        snippets=_snippets(dataset, at) if home and not path else None,
        version_count=len(at.tags),
        links=links,
        used_by=used_by(dataset.project_id) if home and not path else None,
    )


@dataclass(frozen=True)
class _Links:
    """URL builders for one view, keeping `ref` and the preview toggle."""

    dataset: Dataset
    at: Place
    previews: bool

    def tree(self, path: str = "", *, previews: bool | None = None, page: int | None = None) -> str:
        keep = self.previews if previews is None else previews
        base = dataset_url(self.dataset, "tree", path) if path else dataset_url(self.dataset)
        ref = None if self.at.ref == self.dataset.default_branch else self.at.ref
        return with_query(base, ref=ref, previews="1" if keep else None, page=page)

    def blob(self, path: str) -> str:
        return with_query(dataset_url(self.dataset, "blob", path), ref=self.at.ref)

    def download(self, path: str) -> str:
        return file_url(self.dataset, path, self.at.ref)

    def preview(self, path: str, size: int) -> str:
        return f"{file_url(self.dataset, path, self.at.ref)}&preview={size}"

    def permanent(self, path: str) -> str:
        root = request.host_url.rstrip("/")
        return root + file_url(self.dataset, path, self.at.permanent)


@dataclass(frozen=True)
class Row:
    """One entry of a folder page with its URLs built once (a page has up to 100)."""

    item: TreeItem
    href: str
    download: str = ""
    permanent: str = ""
    preview: str | None = None
    size_text: str = ""
    kind_label: str = ""


def rows_of(links: _Links, items: list[TreeItem]) -> list[Row]:
    """The rows of a folder page: folders link to their tree, files to their file page, with
    "Download", the permanent link and (with previews on) a thumbnail URL."""
    dataset, at = links.dataset, links.at
    ref_query = "?ref=" + quote(at.ref, safe="")
    permanent_query = "?ref=" + quote(at.permanent, safe="")
    files = f"/api/v1/datasets/{dataset.project_id}/files/"
    root = request.host_url.rstrip("/")
    rows: list[Row] = []
    for item in items:
        if item.type == "dir":
            rows.append(Row(item, links.tree(item.path)))
            continue
        quoted = quote(item.path)
        download = files + quoted + ref_query
        size = human_size(item.size) if item.size is not None else ""
        suffix = item.name.strip(".").rpartition(".")[2] if "." in item.name.strip(".") else ""
        rows.append(
            Row(
                item,
                href=f"{dataset_url(dataset)}/-/blob/{quoted}{ref_query}",
                download=download,
                permanent=root + files + quoted + permanent_query,
                preview=f"{download}&preview={THUMBNAIL}"
                if links.previews and is_image(item.media_type)
                else None,
                size_text=size or ("unknown" if item.source != "git" else ""),
                kind_label=(suffix or "file")[:6].upper(),
            )
        )
    return rows


def _readme(dataset: Dataset, at: Place) -> Markup | None:
    """The README card at the commit; kept per (dataset, commit sha), which never changes, in
    the process's `Services.commit_facts` (not when GitLab could not be read)."""

    def read() -> tuple[Markup | None, bool]:
        card = _read_readme(dataset, at)
        if card is _UNREACHABLE:
            return None, False  # the page still shows, without the card; asked again next time
        return card, True

    key = ("readme", dataset.project_id, at.commit.sha, "")
    card: Markup | None = services().commit_facts.get_or_make(key, read)
    return card


_UNREACHABLE = Markup("")


def _read_readme(dataset: Dataset, at: Place) -> Markup | None:
    reader = services().resolver.reader
    for name in README_NAMES:
        try:
            raw = reader.read_file(dataset.project_id, name, at.commit.sha)
        except DshubError:
            return _UNREACHABLE
        if raw is not None:
            text = decode_readme(raw)
            return render_markdown(text) if text is not None else None
    return None


@dataclass(frozen=True)
class SiteView:
    """The storage-site section: the selected site (no credential, ever) or candidates."""

    name: str | None
    kind: str | None = None
    access_mode: str | None = None
    description: str = ""
    registered: bool = True


def selected_site(dataset: Dataset) -> str | None:
    """The dataset's site: the index's, else an applied selection the index has not synced yet
    (just after "Apply", before the queued sync ran)."""
    if dataset.storage_site:
        return dataset.storage_site
    selection = services().sites.selection(dataset.project_id)
    return selection.site if selection and selection.applied_at else None


def _site(dataset: Dataset) -> SiteView:
    name = selected_site(dataset)
    if not name:
        return SiteView(name=None)
    record = services().sites.record(name)
    if record is None:
        return SiteView(name=name, registered=False)
    site = record.site
    return SiteView(site.name, site.kind, site.access_mode, site.description or "")


def _candidates(dataset: Dataset) -> list[dict[str, object]]:
    """Sites a signed-in user may pick from (`?site_q=` filters), when none is selected."""
    if selected_site(dataset) or not current_viewer().signed_in:
        return []
    q = (request.args.get("site_q") or "")[:200]
    return [site_json(record) for record in services().sites.records(q or None)[:10]]


@dataclass(frozen=True)
class Snippets:
    """Copyable commands for using the dataset at the current ref (a token placeholder, never
    a token)."""

    clone: str
    download: str
    curl: str
    python: str


def _snippets(dataset: Dataset, at: Place) -> Snippets:
    public = settings_of(current_app).public_url.rstrip("/")
    name = dataset.path_with_namespace.rsplit("/", 1)[-1]
    clone_url = (dataset.web_url or f"{public}/{dataset.path_with_namespace}") + ".git"
    remote = f"{public}/dvc/{dataset.project_id}"
    example = _example_file(dataset, at)
    url = public + (
        file_url(dataset, example, at.permanent)
        if example
        else f"/api/v1/datasets/{dataset.project_id}/files/<path>?ref={quote(at.permanent, safe='')}"
    )
    file_name = example.rsplit("/", 1)[-1] if example else "<file name>"
    clone = (
        f"git clone {clone_url}\ncd {name}\ngit checkout {at.permanent}\n"
        f"# dshub's DVC remote for this dataset is {remote}\n"
        "dvc remote modify --local <remote> auth basic\n"
        "dvc remote modify --local <remote> user <your GitLab user name>\n"
        "dvc remote modify --local <remote> password <your GitLab token>\n"
        "dvc pull"
    )
    download = (
        f"export DSHUB_URL={public}\nexport DSHUB_TOKEN=<your GitLab token>\n"
        f"dshub download --project-id {dataset.project_id} --ref {at.permanent} "
        f"--output . {file_name} {example or '<path>'}"
    )
    curl = f'curl -b "tokenGitLab=<your GitLab token>" "{url}" --output "{file_name}"'
    python = (
        "import requests\n\n"
        f'url = "{url}"\n'
        'headers = {"PRIVATE-TOKEN": "<your GitLab token>"}\n'
        "with requests.get(url, headers=headers, stream=True, timeout=60) as answer:\n"
        "    answer.raise_for_status()\n"
        f'    with open("{file_name}", "wb") as out:\n'
        "        for chunk in answer.iter_content(1 << 20):\n"
        "            out.write(chunk)"
    )
    return Snippets(clone, download, curl, python)


def _example_file(dataset: Dataset, at: Place) -> str | None:
    """A DVC-tracked file of the indexed ref, to make the snippets concrete."""
    indexed = services().resolver.indexed_ref(dataset, at.commit)
    if indexed is None:
        return None
    first = next(services().index.iter_ref_files(dataset.project_id, indexed), None)
    return first.path if first is not None else None


def _blob(dataset: Dataset, path: str) -> ResponseReturnValue:
    path = validate_path(path)
    at = place(dataset)
    target = services().resolver.resolve(dataset, at.commit, path)
    previews = _previews_on()
    links = _Links(dataset, at, previews)
    if isinstance(target, Folder):
        return redirect(links.tree(path), code=302)
    if isinstance(target, GitFile):
        facts = {"Stored in": "git", "Size": target.size, "Git blob": target.blob_id}
        media = target.media_type
        changed_by = _last_commit(dataset, at, path)
    else:
        facts = {
            "Stored in": f"storage site {dataset.storage_site or '(none selected)'}",
            "Size": target.size,
            "MD5": target.md5,
            "Hash": target.hash_name,
        }
        media = target.media_type
        changed_by = _last_commit(dataset, at, target.pointer_path or f"{path}.dvc")
    return render_template(
        "ui/file.html",
        dataset=dataset,
        at=at,
        path=path,
        name=path.rsplit("/", 1)[-1],
        media_type=media,
        facts=facts,
        target=target,
        changed_by=changed_by,
        links=links,
        large=LARGE_PREVIEW,
    )


def _last_commit(dataset: Dataset, at: Place, path: str) -> HistoryCommit | None:
    """Who committed it: the last commit up to the viewed one that touched `path` (the file's
    pointer, or the git file itself), asked of GitLab with the caller's own token and kept
    per (dataset, commit sha, path) — history up to a commit never changes. None when GitLab
    cannot say now (the page shows without it)."""

    def ask() -> tuple[HistoryCommit | None, bool]:
        token = request_token()
        try:
            client = services().request_reader(token).client
            page = write.commits(
                client, dataset.project_id, ref=at.commit.sha, path=path, page=1, per_page=1
            )
        except DshubError:
            return None, False
        return (page.items[0] if page.items else None), True

    key = ("last-commit", dataset.project_id, at.commit.sha, path)
    found: HistoryCommit | None = services().commit_facts.get_or_make(key, ask)
    return found
