"""Managing a dataset in the web UI: "+ New Dataset…", "Apply" a storage site, move and delete
files and folders, a path's history with "revert this commit", and the settings section
(edit, archive/unarchive, delete with a typed confirmation).

Every page is a form over the REST API's own functions (`api_manage.create`/`edit`/
`set_archived`/`delete`/`commit_history`, `api_sites.apply_site`, `api_uploads.WriteTarget`,
`api_versions.revert_as_caller`), so the rules, limits and messages are the API's; a refused
form is shown again with the API's message next to the field it is about and the status the
API answers. Each destructive action goes through a confirmation page naming what goes. Write
controls are shown only to callers whose GitLab role allows them (Developer for files,
Maintainer for the site and the settings); GitLab still decides every write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import redirect, render_template, request
from flask.typing import ResponseReturnValue

from indexer.errors import Conflict, DshubError, Forbidden, InvalidInput, NotAuthenticated, NotFound
from indexer.read.resolve import DvcObject, Folder
from indexer.store import Dataset
from indexer.write import datasets as write
from indexer.write.changes import Operations
from indexer.write.files import clean_path
from webhook_service import api_manage, api_sites, api_versions
from webhook_service.api_datasets import readable_dataset
from webhook_service.api_uploads import DEVELOPER, WriteTarget
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer, request_token
from webhook_service.params import int_arg
from webhook_service.ui import blueprint
from webhook_service.ui.browse import dataset_url

MAINTAINER = 40
OWNER = 50  # GitLab: archiving and deleting a project need the Owner role
HISTORY_PER_PAGE = 20
CREATE_FIELDS = ("name", "namespace", "description", "visibility", "tags")
# Which form field an API message is about, by the words it starts with.
_FIELD_WORDS = {
    "name": ("name ",),
    "namespace": ("namespace", "projects in "),
    "description": ("description",),
    "visibility": ("visibility", "gitlab refused the visibility"),
    "tags": ("topics", "each topic", "at most"),
    "to": ("to ", "to:"),
    "message": ("message",),
    "new_branch": ("merge_request", "new_branch"),
}


@dataclass
class FormErrors:
    """Messages by form field (`""`: about the whole form) and the status to answer with."""

    fields: dict[str, str] = field(default_factory=dict)
    status: int = 200

    def add(self, exc: DshubError, default: str = "") -> None:
        self.fields[field_of(exc, default)] = exc.message
        self.status = max(self.status, exc.status)


def field_of(exc: DshubError, default: str = "") -> str:
    """The form field the API's error is about (a taken name is about Name)."""
    if isinstance(exc, Conflict) and "already exists" in exc.message:
        return "name"
    words = exc.message.lower()
    for name, starts in _FIELD_WORDS.items():
        if words.startswith(starts) or (name == "visibility" and "visibility" in words):
            return name
    if isinstance(exc, NotFound | Forbidden) and "namespace" in words:
        return "namespace"
    return default


def role(dataset: Dataset) -> int:
    """The caller's GitLab access level on the dataset (0 when anonymous; admins count as
    Owner), read with their own token as the write routes do."""
    viewer = current_viewer()
    token = request_token()
    if not viewer.signed_in or not token:
        return 0
    if viewer.is_admin:
        return OWNER
    try:
        access = (
            services()
            .request_reader(token)
            .project_access(dataset.project_id, viewer.user_id, MAINTAINER)
        )
    except DshubError:
        return 0
    return access.level if access else 0


def _dataset(project_id: int) -> Dataset:
    return readable_dataset(project_id, current_viewer())


def _need(dataset: Dataset, level: int, what: str) -> int:
    """The caller's level, or the API's 401/403 when it is below `level`."""
    if not current_viewer().signed_in:
        raise NotAuthenticated(f"sign in with your GitLab token to {what}")
    have = role(dataset)
    if have < level:
        needed = {OWNER: "Owner", MAINTAINER: "Maintainer"}.get(level, "Developer")
        raise Forbidden(f"to {what} you need the {needed} role or more in its GitLab project")
    return have


# ------------------------------------------------------------------ "+ New Dataset…"


def _choices() -> list[write.NamespaceChoice]:
    _, client = api_manage.caller_client()
    return write.creatable_namespaces(client, services().settings.namespaces)


def _tags(raw: str) -> list[str]:
    return [tag.strip() for tag in raw.split(",") if tag.strip()]


def _new_form(values: dict[str, str], errors: FormErrors) -> ResponseReturnValue:
    choices = _choices()
    chosen = next((c for c in choices if c.full_path == values.get("namespace")), None)
    chosen = chosen or (choices[0] if choices else None)
    page = render_template(
        "ui/new_dataset.html",
        values=values,
        errors=errors.fields,
        choices=choices,
        chosen=chosen,
        visibilities=write.VISIBILITIES,
        rank={v: i for i, v in enumerate(write.VISIBILITIES)},
    )
    return page, errors.status


@blueprint.get("/-/new-dataset")
def new_dataset_form() -> ResponseReturnValue:
    """The form: Name, Namespace (where the caller may create), Description, Visibility, Tags."""
    values = {"namespace": request.args.get("namespace", ""), "visibility": "private"}
    return _new_form(values, FormErrors())


@blueprint.post("/-/new-dataset")
def new_dataset() -> ResponseReturnValue:
    """Create it through the API's function; redirect (303) to the new dataset's details."""
    values = {name: request.form.get(name, "") for name in CREATE_FIELDS}
    errors = FormErrors()
    body: dict[str, Any] = {
        "name": values["name"],
        "namespace": values["namespace"],
        "description": values["description"],
        "visibility": values["visibility"] or "private",
        "topics": _tags(values["tags"]),
    }
    if not values["name"].strip():
        errors.add(InvalidInput("Name is required: how the dataset is called"), "name")
    if not values["namespace"]:
        errors.add(InvalidInput("Namespace is required: choose where the dataset lives"))
    if errors.fields:
        return _new_form(values, errors)
    viewer, client = api_manage.caller_client()
    try:
        project_id, _, _ = api_manage.create(viewer, client, body)
    except (InvalidInput, Conflict, Forbidden, NotFound, DshubError) as exc:
        if isinstance(exc, NotAuthenticated) or exc.status >= 500:
            raise
        errors.add(exc)
        return _new_form(values, errors)
    return redirect(dataset_url(_dataset(project_id)), code=303)


# ------------------------------------------------------------------ storage site


@blueprint.get("/-/datasets/<int:project_id>/storage-site")
def site_confirm(project_id: int) -> ResponseReturnValue:
    """The confirmation step of "Apply": which site, and that it cannot be changed."""
    dataset = _dataset(project_id)
    _need(dataset, MAINTAINER, "choose the storage site of this dataset")
    name = (request.args.get("name") or "").strip()
    record = services().sites.record(name) if name else None
    if record is None:
        raise NotFound(f"There is no registered storage site {name[:100]!r}; search again.")
    return render_template("ui/apply_site.html", dataset=dataset, site=record.site)


@blueprint.post("/-/datasets/<int:project_id>/storage-site")
def site_apply(project_id: int) -> ResponseReturnValue:
    """Apply the site through the API's function, then show the dataset (which site)."""
    dataset = _dataset(project_id)
    name = (request.form.get("name") or "").strip()
    if not name:
        raise InvalidInput("choose a storage site to apply")
    api_sites.apply_site(project_id, name)
    return redirect(dataset_url(dataset), code=303)


# ------------------------------------------------------------------ move, delete


@dataclass(frozen=True)
class Branching:
    """The branch choice of a write: the default branch, or (needed when it is protected
    against the caller) a new branch and a merge request."""

    default_branch: str
    protected: bool
    must_branch: bool


def branching(dataset: Dataset, level: int) -> Branching:
    """Whether the default branch is protected against the caller's role (GitLab's
    protected-branch push levels, read with the caller's token)."""
    branch = dataset.default_branch or "main"
    token = request_token()
    try:
        project = (
            services().request_reader(token).client.projects.get(dataset.project_id, lazy=True)
        )
        rule = project.protectedbranches.get(branch).asdict()
    except Exception:  # not protected, or not readable: GitLab decides on the write
        return Branching(branch, False, False)
    levels = [int(p.get("access_level") or 0) for p in rule.get("push_access_levels") or []]
    must = bool(levels) and level < min(levels)
    return Branching(branch, True, must)


def _write_params(form: Any, dataset: Dataset) -> dict[str, Any]:
    """The API's write parameters from the form's branch choice and commit message."""
    params: dict[str, Any] = {"message": form.get("message", "")}
    if form.get("target") == "new":
        params["new_branch"] = form.get("new_branch", "").strip()
        params["merge_request"] = "true"
        if not params["new_branch"]:
            raise InvalidInput("new_branch: name the new branch the merge request comes from")
    return params


def _file_form(
    dataset: Dataset, action: str, path: str, errors: FormErrors, values: dict[str, str]
) -> ResponseReturnValue:
    level = _need(dataset, DEVELOPER, "change the files of this dataset")
    is_dir = _is_folder(dataset, path)
    choice = branching(dataset, level)
    page = render_template(
        "ui/file_action.html",
        dataset=dataset,
        action=action,
        path=path,
        is_dir=is_dir,
        branching=choice,
        errors=errors.fields,
        values=values,
        back=dataset_url(dataset, "tree" if is_dir else "blob", path),
    )
    return page, errors.status


def _is_folder(dataset: Dataset, path: str) -> bool:
    at = services().resolver.commit(dataset, None)
    try:
        return isinstance(services().resolver.resolve(dataset, at, path), Folder)
    except DshubError:
        return False


@blueprint.get("/-/datasets/<int:project_id>/files/<any(delete, move):action>")
def file_action_form(project_id: int, action: str) -> ResponseReturnValue:
    """The confirmation page of a delete or move, naming exactly the path that goes."""
    dataset = _dataset(project_id)
    path = clean_path(request.args.get("path") or "")
    values = {"to": path, "target": "", "message": ""}
    return _file_form(dataset, action, path, FormErrors(), values)


@blueprint.post("/-/datasets/<int:project_id>/files/<any(delete, move):action>")
def file_action(project_id: int, action: str) -> ResponseReturnValue:
    """Delete or move through the API's write (`WriteTarget`), then show the folder."""
    dataset = _dataset(project_id)
    path = clean_path(request.form.get("path") or "")
    values = {k: request.form.get(k, "") for k in ("to", "target", "new_branch", "message")}
    errors = FormErrors()
    try:
        params = _write_params(request.form, dataset)
        if action == "delete":
            operations, default = Operations(removes=[path]), f"Delete {path}"
        else:
            to = clean_path(values["to"], "to")
            operations, default = Operations(moves=[(path, to)]), f"Move {path} to {to}"
        WriteTarget(project_id).write(operations, params, default)
    except DshubError as exc:
        if isinstance(exc, NotAuthenticated) or exc.status >= 500 or exc.status == 404:
            raise
        errors.add(exc)
        return _file_form(dataset, action, path, errors, values)
    parent = path.rpartition("/")[0] if action == "delete" else values["to"].rpartition("/")[0]
    target = dataset_url(dataset, "tree", parent) if parent else dataset_url(dataset)
    return redirect(target, code=303)


# ------------------------------------------------------------------ history, revert


@blueprint.get("/-/datasets/<int:project_id>/history")
def history(project_id: int) -> ResponseReturnValue:
    """The commits touching `?path=` (a file's pointer or a folder), newest first."""
    dataset = _dataset(project_id)
    path = (request.args.get("path") or "").strip("/")
    if path:
        clean_path(path)
    page = int_arg("page", 1, 1, api_manage.MAX_PAGE)
    ref, commits = api_manage.commit_history(
        project_id, None, _history_path(dataset, path), page, HISTORY_PER_PAGE
    )
    return render_template(
        "ui/history.html",
        dataset=dataset,
        path=path,
        ref=ref,
        commits=commits,
        may_revert=role(dataset) >= DEVELOPER,
    )


def _history_path(dataset: Dataset, path: str) -> str | None:
    """A DVC-tracked file's history is its pointer's (`<path>.dvc`)."""
    if not path:
        return None
    try:
        at = services().resolver.commit(dataset, None)
        target = services().resolver.resolve(dataset, at, path)
    except DshubError:
        return path
    if isinstance(target, DvcObject) and target.pointer_path:
        return target.pointer_path
    return path


def _revert_form(
    dataset: Dataset, errors: FormErrors, values: dict[str, str]
) -> ResponseReturnValue:
    level = _need(dataset, DEVELOPER, "revert a commit of this dataset")
    sha = values.get("sha", "")
    page = render_template(
        "ui/revert.html",
        dataset=dataset,
        sha=sha,
        path=values.get("path", ""),
        title=values.get("title", ""),
        branching=branching(dataset, level),
        errors=errors.fields,
        values=values,
    )
    return page, errors.status


@blueprint.get("/-/datasets/<int:project_id>/revert")
def revert_form(project_id: int) -> ResponseReturnValue:
    """The confirmation of "revert this commit"."""
    dataset = _dataset(project_id)
    values = {k: request.args.get(k, "")[:500] for k in ("sha", "path", "title")}
    return _revert_form(dataset, FormErrors(), values)


@blueprint.post("/-/datasets/<int:project_id>/revert")
def revert(project_id: int) -> ResponseReturnValue:
    """Revert through the API's function; back to the history."""
    dataset = _dataset(project_id)
    values = {k: request.form.get(k, "") for k in ("sha", "path", "title", "target", "new_branch")}
    errors = FormErrors()
    try:
        params = _write_params(request.form, dataset)
        params.pop("message", None)
        api_versions.revert_as_caller(project_id, {"sha": values["sha"], **params})
    except DshubError as exc:
        if isinstance(exc, NotAuthenticated) or exc.status >= 500 or exc.status == 404:
            raise
        errors.add(exc)
        return _revert_form(dataset, errors, values)
    query = f"?path={values['path']}" if values["path"] else ""
    return redirect(f"/-/datasets/{project_id}/history{query}", code=303)


# ------------------------------------------------------------------ settings


def _settings_page(
    dataset: Dataset, errors: FormErrors, values: dict[str, str]
) -> ResponseReturnValue:
    level = _need(dataset, MAINTAINER, "change the settings of this dataset")
    _, client = api_manage.caller_client()
    try:  # the namespace's highest visibility (GitLab still decides on save)
        namespace: write.NamespaceChoice | None = write.namespace_of_project(
            client, dataset.project_id
        )
    except DshubError:
        namespace = None
    page = render_template(
        "ui/settings.html",
        dataset=dataset,
        owner=level >= OWNER,
        errors=errors.fields,
        values=values,
        visibilities=write.VISIBILITIES,
        namespace=namespace,
        rank={v: i for i, v in enumerate(write.VISIBILITIES)},
    )
    return page, errors.status


def _current_values(dataset: Dataset) -> dict[str, str]:
    return {
        "name": dataset.name,
        "description": dataset.description or "",
        "tags": ", ".join(dataset.topics),
        "visibility": dataset.visibility,
    }


@blueprint.get("/-/datasets/<int:project_id>/settings")
def settings_page(project_id: int) -> ResponseReturnValue:
    """Edit, archive/unarchive and delete (Maintainers and Owners)."""
    dataset = _dataset(project_id)
    return _settings_page(dataset, FormErrors(), _current_values(dataset))


@blueprint.post("/-/datasets/<int:project_id>/settings")
def settings_save(project_id: int) -> ResponseReturnValue:
    """Save name, description, tags and visibility through the API's edit."""
    dataset = _dataset(project_id)
    values = {k: request.form.get(k, "") for k in ("name", "description", "tags", "visibility")}
    current = _current_values(dataset)
    body: dict[str, Any] = {}
    for key in ("name", "description", "visibility"):
        if values[key] != current[key]:
            body[key] = values[key]
    if _tags(values["tags"]) != list(dataset.topics):
        body["topics"] = _tags(values["tags"])
    errors = FormErrors()
    try:
        viewer, client = api_manage.caller_client()
        if body:
            api_manage.edit(viewer, client, project_id, body)
    except DshubError as exc:
        if isinstance(exc, NotAuthenticated) or exc.status >= 500 or exc.status == 404:
            raise
        errors.add(exc)
        return _settings_page(dataset, errors, values)
    return redirect(f"/-/datasets/{project_id}/settings", code=303)


@blueprint.post("/-/datasets/<int:project_id>/<any(archive, unarchive):action>")
def archive(project_id: int, action: str) -> ResponseReturnValue:
    """GitLab's archive or unarchive through the API's function."""
    _need(_dataset(project_id), OWNER, f"{action} this dataset")
    api_manage.set_archived(project_id, action == "archive")
    return redirect(f"/-/datasets/{project_id}/settings", code=303)


@blueprint.post("/-/datasets/<int:project_id>/delete")
def delete(project_id: int) -> ResponseReturnValue:
    """Delete after the dataset's path was typed; then the list with a notice."""
    dataset = _dataset(project_id)
    _need(dataset, OWNER, "delete this dataset")
    typed = (request.form.get("confirm") or "").strip()
    if typed != dataset.path_with_namespace:
        errors = FormErrors()
        errors.add(
            InvalidInput(
                f"type {dataset.path_with_namespace} exactly to delete this dataset "
                "(nothing was deleted)"
            ),
            "confirm",
        )
        return _settings_page(dataset, errors, _current_values(dataset))
    api_manage.delete(project_id)
    return redirect(f"/?deleted={dataset.path_with_namespace}", code=303)
