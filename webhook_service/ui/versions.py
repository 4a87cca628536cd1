"""The versions page and its forms: create and delete a version, compare two versions,
"restore this version", and the downloads at each version.

Every form is a POST to `/-/datasets/<id>/...` under the CSRF rule and calls what the API
routes call (`webhook_service.api_versions`: `make_version`, `remove_version`, `restore_to`,
`data_diff`), with the caller's own token: GitLab decides who may, and its refusal is shown
inline next to the form with the status the API would answer. Destructive actions (delete,
restore) first show a confirmation page naming what happens; only its button sends
`confirmed=1`. The controls are offered to those GitLab gives the Maintainer role (who may
create the protected `v*` tags); to anyone else the page shows no control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import redirect, render_template, request
from flask.typing import ResponseReturnValue

from indexer.data.diff import FileChange
from indexer.data.pointers import media_type
from indexer.errors import DshubError, InvalidInput
from indexer.read import search
from indexer.read.resolve import validate_ref
from indexer.store import Dataset
from indexer.write import versions as write
from indexer.write.datasets import MAINTAINER
from webhook_service import api_versions
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer, request_token
from webhook_service.ui import blueprint
from webhook_service.ui.browse import THUMBNAIL, dataset_url, file_url
from webhook_service.ui.browse import _absent as absent
from webhook_service.ui.formatting import is_image

COMPARE_LIMIT = 100  # files shown per list (added, removed, modified); the totals are shown


@dataclass
class Outcome:
    """What the versions page reports after a form: an inline error, or what was done."""

    form: str = ""  # which form the error belongs to: create, delete or restore
    error: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    done: str | None = None
    revision: write.Revision | None = None
    kept: str | None = None


def _may_manage(dataset: Dataset) -> bool:
    """True when GitLab gives the caller the Maintainer role (or they are an administrator)."""
    viewer = current_viewer()
    if not viewer.signed_in:
        return False
    if viewer.is_admin:
        return True
    token = request_token()
    try:
        access = (
            services()
            .request_reader(token)
            .project_access(dataset.project_id, viewer.user_id, MAINTAINER)
        )
    except DshubError:
        return False  # GitLab unreachable now: no control; a POST would be decided by GitLab
    return access is not None and access.level >= MAINTAINER


def _branches(dataset: Dataset) -> list[str]:
    names = [r.ref for r in services().index.list_refs(dataset.project_id) if r.kind != "tag"]
    default = dataset.default_branch or "main"
    return [default, *(n for n in names if n != default)]


def versions_page(
    dataset: Dataset, outcome: Outcome | None = None, status: int = 200
) -> ResponseReturnValue:
    """The versions of `dataset`, newest first, with the forms the caller may use."""
    listed = search.list_versions(services().index, current_viewer(), dataset.project_id)
    if listed is None:  # removed between the lookup and here: the one 404
        raise absent(dataset.path_with_namespace)
    outcome = outcome or Outcome(done=_done_from_query())
    page = render_template(
        "ui/versions.html",
        dataset=dataset,
        versions=listed,
        may_manage=_may_manage(dataset),
        branches=_branches(dataset),
        outcome=outcome,
    )
    return page, status


def _done_from_query() -> str | None:
    # After a redirect (post → redirect → get): which version was just made or deleted.
    for key, text in (("created", "Version {} created."), ("deleted", "Version {} deleted.")):
        value = request.args.get(key)
        if value:
            try:
                return text.format(write.check_version_name(value))
            except InvalidInput:
                return None
    return None


def _form(fields: tuple[str, ...]) -> dict[str, str]:
    return {name: value for name in fields if (value := request.form.get(name, "").strip())}


def _refused(
    caller: api_versions.Caller, form: str, exc: DshubError, values: dict[str, str]
) -> ResponseReturnValue:
    outcome = Outcome(form=form, error=exc.message, values=values)
    return versions_page(caller.dataset, outcome, exc.status)


@blueprint.post("/-/datasets/<int:project_id>/versions")
def create_version(project_id: int) -> ResponseReturnValue:
    """ "Create version": name, ref (default branch when empty) and release notes."""
    caller = api_versions.Caller(project_id)
    values = _form(api_versions.VERSION_FIELDS)
    try:
        made, _ = api_versions.make_version(caller, dict(values))
    except DshubError as exc:
        return _refused(caller, "create", exc, values)
    versions_url = dataset_url(caller.dataset, "versions")
    return redirect(f"{versions_url}?created={made.name}", code=303)


@blueprint.post("/-/datasets/<int:project_id>/versions/delete")
def delete_version(project_id: int) -> ResponseReturnValue:
    """Delete a version, after a confirmation that names it."""
    caller = api_versions.Caller(project_id)
    values = _form(("name",))
    try:
        name = write.check_version_name(values.get("name"))
        if request.form.get("confirmed") != "1":
            return _confirm(caller.dataset, "delete", {"name": name})
        api_versions.remove_version(caller, name)
    except DshubError as exc:
        return _refused(caller, "delete", exc, values)
    return redirect(f"{dataset_url(caller.dataset, 'versions')}?deleted={name}", code=303)


@blueprint.post("/-/datasets/<int:project_id>/restore")
def restore_version(project_id: int) -> ResponseReturnValue:
    """ "restore this version": one new commit on the branch (or a new branch with a merge
    request) whose data equals the version's, after a confirmation that says so."""
    caller = api_versions.Caller(project_id)
    values = _form(api_versions.RESTORE_FIELDS)
    if values.get("merge_request") and not values.get("new_branch"):
        values.pop("merge_request")  # the checkbox alone, without a name, means "no"
    try:
        name = write.check_version_name(values.get("version"))
        branch = values.get("branch") or caller.dataset.default_branch or "main"
        validate_ref(branch)
        if values.get("new_branch"):
            validate_ref(values["new_branch"])
        if request.form.get("confirmed") != "1":
            return _confirm(
                caller.dataset, "restore", {**values, "version": name, "branch": branch}
            )
        body: dict[str, Any] = dict(values)
        body["merge_request"] = bool(values.get("merge_request"))
        _, revision, _ = api_versions.restore_to(caller, body)
    except DshubError as exc:
        return _refused(caller, "restore", exc, values)
    if revision.commit is None:
        done = f"The data on {revision.branch} already equals version {name}: nothing to commit."
    else:
        done = f"Restored version {name} on {revision.branch}."
    outcome = Outcome(done=done, revision=revision, kept=write.KEPT)
    return versions_page(caller.dataset, outcome, 201 if revision.commit else 200)


def _confirm(dataset: Dataset, action: str, values: dict[str, str]) -> ResponseReturnValue:
    return render_template("ui/version_confirm.html", dataset=dataset, action=action, values=values)


# ------------------------------------------------------------------------------ compare


@dataclass(frozen=True)
class ChangeRow:
    """One file of the comparison, with thumbnails of each side when it is an image."""

    change: FileChange
    before: str | None
    after: str | None


def _thumbnail(dataset: Dataset, path: str, sha: str, present: bool) -> str | None:
    if not present or not is_image(media_type(path)):
        return None
    return f"{file_url(dataset, path, sha)}&preview={THUMBNAIL}"


def compare_page(dataset: Dataset) -> ResponseReturnValue:
    """`.../-/compare?from=&to=`: files added, removed and modified between two refs."""
    listed = search.list_versions(services().index, current_viewer(), dataset.project_id) or []
    names = [v.name for v in listed]
    refs = [*names, *_branches(dataset)]
    raw_from, raw_to = request.args.get("from", ""), request.args.get("to", "")
    chosen_from = raw_from or (names[1] if len(names) > 1 else (names[0] if names else ""))
    chosen_to = raw_to or (names[0] if len(names) > 1 else dataset.default_branch or "main")
    context: dict[str, Any] = {
        "dataset": dataset,
        "refs": refs,
        "chosen_from": chosen_from,
        "chosen_to": chosen_to,
        "version_count": len(names),
        "limit": COMPARE_LIMIT,
        "diff": None,
        "rows": {},
        "error": None,
    }
    if not (raw_from and raw_to):
        return render_template("ui/compare.html", **context)
    try:
        base, head = validate_ref(raw_from), validate_ref(raw_to)
        shas, diff = api_versions.data_diff(dataset, base, head)
    except DshubError as exc:
        context["error"] = exc.message
        return render_template("ui/compare.html", **context), exc.status
    context["diff"], context["shas"] = diff, shas
    context["rows"] = {
        kind: [
            ChangeRow(
                item,
                _thumbnail(dataset, item.path, shas[0], kind != "added"),
                _thumbnail(dataset, item.path, shas[1], kind != "removed"),
            )
            for item in getattr(diff, kind)[:COMPARE_LIMIT]
        ]
        for kind in ("added", "removed", "modified")
    }
    return render_template("ui/compare.html", **context)
