"""Merge requests and notes through python-gitlab: GitLab's schemas, hooks and permissions."""

from __future__ import annotations

from typing import Any

import gitlab
import pytest

from tests.gitlab_sandbox.fixtures import WebhookReceiver
from tests.gitlab_sandbox.gitrepo import GitRepo
from tests.gitlab_sandbox.server import Sandbox
from tests.sandbox_contract.gitlab_schemas import validate
from tests.sandbox_contract.payload_shape import load_example, shape_differences

# Fields the documented example shows with a value but GitLab sends as null here.
NULLABLE = {
    "$.object_attributes.assignee_id",
    "$.object_attributes.human_total_time_spent",
    "$.object_attributes.human_time_change",
    "$.object_attributes.human_time_estimate",
    "$.object_attributes.last_edited_at",
    "$.object_attributes.last_edited_by_id",
}


def _commit(project: Any, branch: str, path: str, content: str) -> str:
    commit = project.commits.create(
        {
            "branch": branch,
            "commit_message": f"write {path}",
            "actions": [{"action": "create", "file_path": path, "content": content}],
        }
    )
    return str(commit.id)


def _project_with_branch(client: gitlab.Gitlab, name: str, **extra: Any) -> Any:
    project = client.projects.create({"name": name, "initialize_with_readme": True, **extra})
    project.branches.create({"branch": "feature", "ref": "main"})
    _commit(project, "feature", "data.dvc", "outs: []\n")
    return project


def _mr_hooks(receiver: WebhookReceiver, count: int) -> list[dict[str, Any]]:
    got = receiver.wait_for(count)
    return [h.json() for h in got if h.headers.get("X-Gitlab-Event") == "Merge Request Hook"]


def _hook_shape(payload: dict[str, Any]) -> list[str]:
    example = load_example("merge_request")
    # `changes` lists only what changed in that event; it is compared on its own.
    example, payload = dict(example), dict(payload)
    example.pop("changes"), payload.pop("changes")
    return shape_differences(
        example, payload, nullable=NULLABLE, allow_extra={"$.object_attributes.oldrev"}
    )


def test_merge_request_lifecycle_matches_gitlab_schemas_and_hooks(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    project = _project_with_branch(gitlab_admin, "lifecycle")
    project.hooks.create(
        {"url": webhook_receiver.url, "merge_requests_events": True, "push_events": False}
    )
    main_tip = project.branches.get("main").commit["id"]
    mr = project.mergerequests.create(
        {
            "source_branch": "feature",
            "target_branch": "main",
            "title": "Add data",
            "description": "pointers",
        }
    )
    body = mr.asdict()
    validate("public_api/v4/merge_request.json", body)
    feature_tip = project.branches.get("feature").commit["id"]
    assert body["diff_refs"] == {
        "base_sha": main_tip,
        "head_sha": feature_tip,
        "start_sha": main_tip,
    }
    assert (body["state"], body["sha"], body["merge_commit_sha"]) == ("opened", feature_tip, None)
    assert body["changes_count"] == "1"

    # A push to the source branch moves `sha`/`diff_refs` and fires `update` with `oldrev`.
    newer = _commit(project, "feature", "more.dvc", "outs: []\n")
    again = project.mergerequests.get(mr.iid)
    refs: dict[str, str] = again.diff_refs
    assert again.sha == newer and refs["head_sha"] == newer and refs["base_sha"] == main_tip

    # Title edits and notes.
    mr = project.mergerequests.get(mr.iid)
    mr.title = "Add more data"
    mr.save()
    note = mr.notes.create({"body": "first"})
    mr.notes.create({"body": "second"})
    listing: Any = gitlab_admin.http_get(f"/projects/{project.id}/merge_requests/{mr.iid}/notes")
    validate("public_api/v4/notes.json", listing)
    assert [n["body"] for n in listing] == ["second", "first"]  # newest first, as GitLab
    note.body = "first, edited"
    note.save()
    assert mr.notes.get(note.id).body == "first, edited"
    mr.notes.delete(note.id)
    assert [n.body for n in mr.notes.list()] == ["second"]
    for item in gitlab_admin.http_get(f"/projects/{project.id}/merge_requests"):
        validate("public_api/v4/merge_request.json", item)

    # Merge: a merge commit with both tips as parents, on the target branch.
    merged = project.mergerequests.get(mr.iid)
    merged.merge()
    final = project.mergerequests.get(mr.iid)
    assert final.state == "merged" and final.merged_by["username"] == "root"
    repo = GitRepo(gitlab_sandbox.state.projects[project.id].repo_path)
    target = project.branches.get("main").commit["id"]
    assert final.merge_commit_sha == target
    info = repo.commit_info(target)
    assert info is not None and info["parent_ids"] == [main_tip, newer]
    assert [m.iid for m in project.mergerequests.list(state="merged")] == [mr.iid]
    assert project.mergerequests.list(state="opened") == []
    with pytest.raises(gitlab.GitlabMRClosedError) as err:
        final.merge()
    assert err.value.response_code == 405

    hooks = _mr_hooks(webhook_receiver, 4)
    actions = [h["object_attributes"]["action"] for h in hooks]
    assert actions == ["open", "update", "update", "merge"]
    for payload in hooks:
        assert _hook_shape(payload) == []
    assert hooks[1]["object_attributes"]["oldrev"] == feature_tip
    assert hooks[2]["changes"]["title"] == {"previous": "Add data", "current": "Add more data"}
    assert hooks[3]["object_attributes"]["state"] == "merged"


def test_close_reopen_and_system_hooks_with_merge_request_events(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    gitlab_admin.hooks.create({"url": webhook_receiver.url, "merge_requests_events": True})
    gitlab_admin.hooks.create({"url": webhook_receiver.url + "/off"})
    project = _project_with_branch(gitlab_admin, "closing")
    mr = project.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "t"}
    )
    mr.state_event = "close"
    mr.save()
    assert project.mergerequests.get(mr.iid).state == "closed"
    mr.state_event = "reopen"
    mr.save()
    assert project.mergerequests.get(mr.iid).state == "opened"
    gitlab_sandbox.webhooks.wait_idle()
    mr_hooks = [
        r
        for r in gitlab_sandbox.deliveries()
        if r.hook_kind == "system" and r.body.get("object_kind") == "merge_request"
    ]
    assert [r.body["object_attributes"]["action"] for r in mr_hooks] == ["open", "close", "reopen"]
    assert {r.url for r in mr_hooks} == {webhook_receiver.url}
    assert all(r.event == "System Hook" for r in mr_hooks)
    with pytest.raises(gitlab.GitlabCreateError) as dup:
        project.mergerequests.create(
            {"source_branch": "feature", "target_branch": "main", "title": "again"}
        )
    assert dup.value.response_code == 409
    with pytest.raises(gitlab.GitlabCreateError) as missing:
        project.mergerequests.create(
            {"source_branch": "nope", "target_branch": "main", "title": "x"}
        )
    assert missing.value.response_code == 400


def test_merge_request_permissions_follow_gitlab_roles(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, make_client: Any, anonymous: Any
) -> None:
    project = _project_with_branch(gitlab_admin, "secret", visibility="private")
    mr = project.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "t"}
    )
    clients = {}
    for name, level in (("guest", 10), ("reporter", 20), ("developer", 30), ("maint", 40)):
        user, client = make_client(name)
        project.members.create({"user_id": user.id, "access_level": level})
        clients[name] = client
    _, outsider = make_client("outsider")

    def status(client: gitlab.Gitlab, method: str, path: str, **data: Any) -> int:
        try:
            client.http_request(method, f"/projects/{project.id}{path}", post_data=data or None)
        except gitlab.GitlabError as exc:
            return int(exc.response_code or 0)
        return 200

    read = f"/merge_requests/{mr.iid}"
    assert status(anonymous, "get", read) == 404
    assert status(outsider, "get", read) == 404
    assert status(clients["guest"], "get", read) == 403
    assert status(clients["reporter"], "get", read) == 200
    # Reporters comment but do not open or merge; Developers open; the protected default
    # branch takes a Maintainer to merge into.
    assert status(clients["reporter"], "post", f"{read}/notes", body="hi") == 200
    opened = {"source_branch": "feature", "target_branch": "main", "title": "x"}
    assert status(clients["reporter"], "post", "/merge_requests", **opened) == 403
    assert status(clients["reporter"], "put", f"{read}/merge") == 401
    assert status(clients["developer"], "put", f"{read}/merge") == 401
    note_id = project.mergerequests.get(mr.iid).notes.list()[0].id
    assert status(clients["developer"], "put", f"{read}/notes/{note_id}", body="x") == 403
    assert status(clients["maint"], "delete", f"{read}/notes/{note_id}") == 200
    assert status(clients["maint"], "put", f"{read}/merge") == 200
    assert project.mergerequests.get(mr.iid).state == "merged"


def test_conflicting_merge_is_refused_and_fast_forward_keeps_the_source_commit(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    project = _project_with_branch(gitlab_admin, "conflicts")
    _commit(project, "main", "data.dvc", "outs: [other]\n")
    mr = project.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "clash"}
    )
    with pytest.raises(gitlab.GitlabMRClosedError) as err:
        mr.merge()
    assert err.value.response_code == 406

    ff = _project_with_branch(gitlab_admin, "ff")
    with gitlab_sandbox.state.mutation():
        gitlab_sandbox.state.projects[ff.id].extra["merge_method"] = "ff"
    mr = ff.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "f"}
    )
    mr.merge()
    feature_tip = ff.branches.get("feature").commit["id"]
    assert ff.branches.get("main").commit["id"] == feature_tip
    assert ff.mergerequests.get(mr.iid).merge_commit_sha is None
