"""`/api/v1`: start a new project from a dataset, the DVC way (`indexer.write.projects`).

- `POST /datasets/<id>/projects {name, namespace, ref, paths?, path?}`: as the caller, a
  GitLab project whose one commit holds a DVC import pointer per path (default: every
  tracked file and directory of the dataset at `ref`) pinned to the ref's commit, `dvc
  init`'s files, `.gitignore` lines, the consumer pipeline and a README; 201 with the
  project, the commit and the imports, and `pipelines`: whether the new project's CI job
  token may read the dataset. dshub adds the project to the dataset's CI/CD job token
  allowlist as the caller (`indexer.write.job_token_access`); when GitLab refuses them, the
  answer names the Maintainers who must, and how.

A dataset the caller may not read is the one 404; GitLab's refusals are relayed (namespace
403 with its reason, a name taken 409). No credential is committed or answered.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import gitlab
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from indexer.errors import InvalidInput
from indexer.read.search import Viewer
from indexer.write import projects
from indexer.write.job_token_access import allow_job_token
from webhook_service import api_manage
from webhook_service.api_datasets import readable_dataset
from webhook_service.api_uploads import json_body, text_param
from webhook_service.app_settings import services

log = logging.getLogger("dshub.projects")
blueprint = Blueprint("api_projects", __name__, url_prefix="/api/v1")

FIELDS = ("name", "namespace", "ref", "paths", "path")
EXAMPLE = '{"name": "cat-classifier", "namespace": "team", "ref": "v0.1.0", "paths": ["cats"]}'
MAX_NAME = 255


def _required(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and key == "namespace":
        return str(value)
    text = text_param(body, key, MAX_NAME)
    if text is None or not text.strip():
        raise InvalidInput(f"{key} is required (e.g. {EXAMPLE})")
    return text.strip()


def _paths(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("paths")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip("/") for p in value):
        raise InvalidInput('paths must be a list of dataset paths (e.g. ["cats", "a.png"])')
    if len(value) > projects.MAX_PATHS:
        raise InvalidInput(f"at most {projects.MAX_PATHS} paths per project")
    return tuple(p.strip("/") for p in value)


def _spec() -> projects.NewProject:
    body = json_body(EXAMPLE)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    return projects.NewProject(
        name=_required(body, "name"),
        namespace=_required(body, "namespace").strip("/"),
        ref=_required(body, "ref"),
        paths=_paths(body),
        path=text_param(body, "path", MAX_NAME),
    )


def start(
    viewer: Viewer, client: gitlab.Gitlab, project_id: int, spec: projects.NewProject
) -> dict[str, Any]:
    """Create the project as the caller, allow its job token, and answer what was made (the
    API's 201 body; the "start a new project" form shows the same)."""
    settings = services().settings
    made = projects.create_consumer_project(
        client, project_id, spec, settings.data_dir / "dvc-state", settings.public_url
    )
    access = allow_job_token(client, project_id, made.id)
    log.info(
        "project started from dataset",
        extra={"project_id": project_id, "user_id": viewer.user_id},
    )
    return {
        "dataset_id": project_id,
        "id": made.id,
        "path_with_namespace": made.path_with_namespace,
        "web_url": made.web_url,
        "http_url_to_repo": made.http_url_to_repo,
        "commit": {"id": made.commit_sha},
        "rev": made.rev,
        "rev_lock": made.rev_lock,
        "imports": [asdict(i) for i in made.imports],
        "pipelines": {
            "allowed": access.allowed,
            "added_to_allowlist": access.added,
            "must_ask": list(access.must_ask),
            "message": access.message
            or "the new project's CI jobs may read this dataset with their CI_JOB_TOKEN",
        },
    }


@blueprint.post("/datasets/<int:project_id>/projects")
def start_project(project_id: int) -> ResponseReturnValue:
    """Create a project importing the dataset at `ref` (201)."""
    viewer, client = api_manage.caller_client()
    readable_dataset(project_id, viewer)  # first: hidden is missing
    response = jsonify(start(viewer, client, project_id, _spec()))
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/datasets/{project_id}"
    return response
