""" "start a new project" from a dataset in the web UI: `/-/datasets/<id>/new-project`.

The form (Name; Namespace: where the caller may create, as "+ New Dataset…" offers; Version:
the dataset's versions and branches, the shown ref preselected; "What to import": the
dataset's tracked outputs at that ref, all checked) posts to `api_projects.start`, the API
route's own function, so the rules and messages are the API's. A refusal shows the form again
with the message at its field (a taken name at Name, a namespace refusal at Namespace, a path
that is not tracked at "What to import") and the API's 4xx; success shows what was made and
the commands to get the data.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue

from indexer.errors import DshubError, InvalidInput, NotAuthenticated, NotFound
from indexer.store import Dataset
from indexer.write import projects
from indexer.write.datasets import _call
from indexer.write.repository import RepoView
from webhook_service import api_manage, api_projects
from webhook_service.api_datasets import readable_dataset
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer
from webhook_service.ui import blueprint
from webhook_service.ui.browse import Place, place
from webhook_service.ui.manage import FormErrors, _choices, field_of

_PATH_WORDS = ("not a tracked", "the dataset has no dvc-tracked", "paths", "at most")


def _dataset(project_id: int) -> Dataset:
    dataset = readable_dataset(project_id, current_viewer())  # hidden is missing, first
    if not current_viewer().signed_in:
        raise NotAuthenticated("Sign in with your GitLab token to start a new project.")
    return dataset


def _outputs(project_id: int, at: Place) -> list[str]:
    """The tracked files and directories of the dataset at the shown commit (what the API
    imports by default), read with the caller's token."""
    _, client = api_manage.caller_client()
    source = _call(f"reading dataset {project_id}", lambda: client.projects.get(project_id))
    return sorted(projects.dataset_outputs(RepoView(source, at.commit.sha)))


def _form(dataset: Dataset, values: dict[str, Any], errors: FormErrors) -> ResponseReturnValue:
    at = place(dataset, values.get("ref") or None)
    page = render_template(
        "ui/new_project.html",
        dataset=dataset,
        at=at,
        outputs=_outputs(dataset.project_id, at),
        choices=_choices(),
        values=values,
        errors=errors.fields,
    )
    return page, errors.status


def _field(exc: DshubError) -> str:
    words = exc.message.lower()
    if words.startswith(_PATH_WORDS):
        return "paths"
    if isinstance(exc, NotFound) and "version, branch or commit" in words:
        return "ref"
    return field_of(exc)


@blueprint.get("/-/datasets/<int:project_id>/new-project")
def new_project_form(project_id: int) -> ResponseReturnValue:
    """The form, at the ref the dataset page showed (`?ref=`), every output checked."""
    dataset = _dataset(project_id)
    values: dict[str, Any] = {"name": "", "namespace": "", "paths": None}
    return _form(dataset, values, FormErrors())


@blueprint.post("/-/datasets/<int:project_id>/new-project")
def new_project(project_id: int) -> ResponseReturnValue:
    """Start it through the API's function; the page saying what was made (201)."""
    dataset = _dataset(project_id)
    values: dict[str, Any] = {
        "name": request.form.get("name", ""),
        "namespace": request.form.get("namespace", ""),
        "ref": request.form.get("ref", ""),
        "paths": request.form.getlist("paths"),
    }
    errors = FormErrors()
    if not values["name"].strip():
        errors.add(InvalidInput("Name is required: how the new project is called"), "name")
    if not values["namespace"].strip():
        errors.add(
            InvalidInput("Namespace is required: choose where the project lives"), "namespace"
        )
    if not values["paths"]:
        errors.add(InvalidInput("choose at least one tracked path to import"), "paths")
    viewer, client = api_manage.caller_client()
    if not errors.fields:
        try:
            spec = projects.NewProject(
                name=values["name"].strip()[: api_projects.MAX_NAME],
                namespace=values["namespace"].strip().strip("/"),
                ref=values["ref"].strip() or dataset.default_branch or "main",
                paths=tuple(p.strip("/") for p in values["paths"]),
            )
            made = api_projects.start(viewer, client, project_id, spec)
        except DshubError as exc:
            if isinstance(exc, NotAuthenticated) or exc.status >= 500:
                raise
            errors.fields[_field(exc)] = exc.message
            errors.status = max(errors.status, exc.status)
        else:
            page = render_template(
                "ui/project_started.html",
                dataset=dataset,
                made=made,
                login=projects.login_command(
                    made["http_url_to_repo"], services().settings.public_url
                ),
                folder=made["http_url_to_repo"].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"),
            )
            return page, 201
    return _form(dataset, values, errors)
