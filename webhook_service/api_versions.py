"""`/api/v1`: make and delete versions, compare two refs, revert a commit, restore a version.

- `POST /datasets/<id>/versions {name, ref, message}`: an annotated tag and a GitLab Release
  whose notes are the message, in one Releases API call (`indexer.write.versions`); 201.
  An existing name is a 409 (a version is never moved: make a new one).
- `DELETE /datasets/<id>/versions/<name>`: GitLab decides who may (protected: Maintainers).
- `GET /datasets/<id>/compare?from=&to=[&limit=]`: the data diff between two refs, from the
  one data-diff implementation (`indexer.sync.mr_diff.commits_diff`, as the MR note uses).
- `POST /datasets/<id>/revert {sha, branch?, new_branch?, merge_request?}`: GitLab's revert.
- `POST /datasets/<id>/restore {version, branch?, message?, new_branch?, merge_request?}`:
  one commit whose data pointers equal the version's; `.dvc/config`, `.gitlab-ci.yml` and
  other files stay as on the branch (the answer's `kept` says so).

Writes act with the caller's own token (GitLab decides; its 403 becomes ours with the
reason, a protected branch with the `new_branch` way round), need sign-in (401), and a
dataset the caller may not read is the one 404. The affected ref is re-indexed in-line
(bounded, as uploads do) and the caller's cached permissions are dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from indexer.errors import InvalidInput, NotFound
from indexer.read.resolve import validate_ref
from indexer.store import Dataset
from indexer.sync.mr_diff import CommitsDiff, commits_diff
from indexer.write import versions
from webhook_service import api_manage
from webhook_service.api_datasets import readable_dataset
from webhook_service.api_merge_requests import diff_json, diff_limit
from webhook_service.api_uploads import flag_param, json_body, resync, text_param
from webhook_service.app_settings import services
from webhook_service.auth import request_token

log = logging.getLogger("dshub.versions")
blueprint = Blueprint("api_versions", __name__, url_prefix="/api/v1")

VERSION_FIELDS = ("name", "ref", "message")
REVERT_FIELDS = ("sha", "branch", "new_branch", "merge_request")
RESTORE_FIELDS = ("version", "branch", "message", "new_branch", "merge_request")


def _body(allowed: tuple[str, ...], example: str) -> dict[str, Any]:
    body = json_body(example)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return body


class Caller:
    """The signed-in caller, the dataset (readable, else the one 404) and their GitLab project."""

    def __init__(self, project_id: int) -> None:
        viewer, client = api_manage.caller_client()
        self.project_id = project_id
        self.dataset: Dataset = readable_dataset(project_id, viewer)
        self.project = client.projects.get(project_id, lazy=True)
        self.token = request_token() or ""
        self.user_id = viewer.user_id

    def reindex(self, ref: str | None) -> str:
        services().permissions.forget(self.token)
        if ref is None:
            return "unchanged"
        if ref.startswith("refs/heads/") and ref != f"refs/heads/{self.dataset.default_branch}":
            return "not indexed (not the default branch)"
        return resync(self.project_id, ref)


def _message(body: dict[str, Any], default: str) -> str:
    value = body.get("message")
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > versions.MAX_MESSAGE or "\x00" in value:
        raise InvalidInput(f"message must be a string of at most {versions.MAX_MESSAGE} characters")
    return value


def make_version(caller: Caller, body: dict[str, Any]) -> tuple[versions.Version, str]:
    """Validate `{name, ref, message}`, create the version with the caller's token and
    re-index its tag (what `POST /versions` and the UI's "Create version" form do)."""
    name = versions.check_version_name(body.get("name"))
    ref = text_param(body, "ref", 255) or caller.dataset.default_branch or "main"
    message = _message(body, f"Version {name}")
    made = versions.create_version(caller.project, caller.project_id, name, ref, message)
    return made, caller.reindex(f"refs/tags/{name}")


def remove_version(caller: Caller, name: str) -> str:
    """Delete version `name` (GitLab decides who may) and re-index; the index outcome."""
    versions.check_version_name(name)
    versions.delete_version(caller.project, caller.project_id, name)
    return caller.reindex(f"refs/tags/{name}")


def restore_to(caller: Caller, body: dict[str, Any]) -> tuple[str, versions.Revision, str]:
    """Validate `{version, branch, message, new_branch, merge_request}` and make the restore
    commit; the version, the revision and the index outcome."""
    version = versions.check_version_name(body.get("version"))
    target = _target(body, caller)
    message = _message(body, f"Restore the data of version {version}")
    revision = versions.restore_version(caller.project, caller.project_id, version, target, message)
    ref = f"refs/heads/{revision.branch}" if revision.commit else None
    return version, revision, caller.reindex(ref)


@blueprint.post("/datasets/<int:project_id>/versions")
def create_version(project_id: int) -> ResponseReturnValue:
    """Tag `ref` (default: the default branch) as version `name` with release notes."""
    caller = Caller(project_id)
    body = _body(VERSION_FIELDS, '{"name": "v0.2.0", "ref": "main", "message": "Five cats"}')
    made, index = make_version(caller, body)
    log.info("version created", extra={"project_id": project_id, "user_id": caller.user_id})
    response = jsonify(
        dataset_id=project_id,
        name=made.name,
        commit_sha=made.commit_sha,
        message=made.message,
        release_notes=made.release_notes,
        author={"username": made.author_username, "name": made.author_name},
        index=index,
    )
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/datasets/{project_id}/versions"
    return response


@blueprint.delete("/datasets/<int:project_id>/versions/<path:name>")
def delete_version(project_id: int, name: str) -> ResponseReturnValue:
    """Delete version `name` and its release (GitLab decides who may)."""
    caller = Caller(project_id)
    index = remove_version(caller, name)
    log.info("version deleted", extra={"project_id": project_id, "user_id": caller.user_id})
    return jsonify(dataset_id=project_id, name=name, deleted=True, index=index)


def _ref_arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise InvalidInput(f"{name} is required: a version, branch or commit (e.g. {name}=v0.1.0)")
    try:
        return validate_ref(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc.message}") from None


def data_diff(dataset: Dataset, base: str, head: str) -> tuple[list[str], CommitsDiff]:
    """The two refs' commit shas and the data diff between them (404 for an unknown ref)."""
    ctx = services().request_context
    shas = []
    for ref in (base, head):
        sha = ctx.reader.commit_sha(dataset.project_id, ref)
        if sha is None:
            raise NotFound(f"dataset {dataset.project_id} has no version, branch or commit {ref!r}")
        shas.append(sha)
    return shas, commits_diff(ctx, dataset, shas[0], shas[1])


@blueprint.get("/datasets/<int:project_id>/compare")
def compare(project_id: int) -> ResponseReturnValue:
    """Files added, removed and modified between `from` and `to`, with byte sums."""
    dataset = readable_dataset(project_id)  # first: hidden is missing
    base, head = _ref_arg("from"), _ref_arg("to")
    limit = diff_limit()
    shas, diff = data_diff(dataset, base, head)
    return jsonify(
        {
            "dataset_id": project_id,
            "from": base,
            "to": head,
            "from_sha": shas[0],
            "to_sha": shas[1],
            **diff_json(diff, limit),
        }
    )


def _target(body: dict[str, Any], caller: Caller) -> versions.Target:
    branch = text_param(body, "branch", 255) or caller.dataset.default_branch or "main"
    new_branch = text_param(body, "new_branch", 255)
    merge_request = flag_param(body.get("merge_request"), "merge_request")
    if merge_request and not new_branch:
        raise InvalidInput("merge_request=true needs new_branch=<name>")
    return versions.Target(branch, new_branch, merge_request)


def _revision_json(project_id: int, revision: versions.Revision, index: str) -> dict[str, Any]:
    return {
        "dataset_id": project_id,
        "commit": revision.commit,
        "branch": revision.branch,
        "unchanged": revision.commit is None,
        "changed": revision.changed,
        "merge_request": revision.merge_request,
        "index": index,
    }


@blueprint.post("/datasets/<int:project_id>/revert")
def revert(project_id: int) -> ResponseReturnValue:
    """GitLab's revert of commit `sha` on `branch` (or a `new_branch` from it)."""
    body = _body(REVERT_FIELDS, '{"sha": "1a2b3c4d", "branch": "main"}')
    return jsonify(revert_as_caller(project_id, body)), 201


def revert_as_caller(project_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """Revert `body["sha"]` (the API's revert fields) as the caller; the API's 201 body.
    The UI's "revert this commit" calls this too."""
    caller = Caller(project_id)
    sha = versions.check_sha(body.get("sha"))
    revision = versions.revert_commit(caller.project, project_id, sha, _target(body, caller))
    index = caller.reindex(f"refs/heads/{revision.branch}")
    log.info("commit reverted", extra={"project_id": project_id, "user_id": caller.user_id})
    return _revision_json(project_id, revision, index)


@blueprint.post("/datasets/<int:project_id>/restore")
def restore(project_id: int) -> ResponseReturnValue:
    """One commit making the branch's data pointers those of `version`."""
    caller = Caller(project_id)
    body = _body(RESTORE_FIELDS, '{"version": "v0.1.0", "branch": "main"}')
    version, revision, index = restore_to(caller, body)
    log.info("version restored", extra={"project_id": project_id, "user_id": caller.user_id})
    answer = {**_revision_json(project_id, revision, index), "version": version}
    answer["kept"] = versions.KEPT
    return jsonify(answer), 201 if revision.commit else 200
