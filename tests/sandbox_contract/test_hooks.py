"""Project and system hooks CRUD, validated against GitLab's hook schemas."""

from __future__ import annotations

import gitlab
import pytest

from tests.gitlab_sandbox.fixtures import WebhookReceiver
from tests.sandbox_contract.gitlab_schemas import validate


def test_project_hook_crud_matches_schema(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "hooked"})
    hook = project.hooks.create(
        {"url": "http://127.0.0.1:9/h", "token": "s3cret", "tag_push_events": True}
    )
    body = hook.asdict()
    validate("public_api/v4/project_hook.json", body)
    assert "token" not in body
    assert (body["push_events"], body["tag_push_events"], body["merge_requests_events"]) == (
        True,
        True,
        False,
    )
    hook.push_events_branch_filter = "main"
    hook.save()
    assert project.hooks.get(hook.id).push_events_branch_filter == "main"
    listing = gitlab_admin.http_get(f"/projects/{project.id}/hooks")
    validate("public_api/v4/project_hooks.json", listing)
    project.hooks.delete(hook.id)
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.hooks.get(hook.id)
    assert err.value.error_message == "404 Not found"


def test_invalid_hook_url_is_422(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "bad-url"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.hooks.create({"url": "not a url"})
    assert err.value.response_code == 422
    assert err.value.error_message == "Invalid url given"


def test_system_hook_defaults_and_schema(gitlab_admin: gitlab.Gitlab) -> None:
    hook = gitlab_admin.hooks.create({"url": "http://127.0.0.1:9/s"})
    body = hook.asdict()
    validate("public_api/v4/system_hook.json", body)
    assert body["repository_update_events"] is True
    assert (body["push_events"], body["tag_push_events"], body["merge_requests_events"]) == (
        False,
        False,
        False,
    )
    validate("public_api/v4/system_hooks.json", gitlab_admin.http_get("/hooks"))
    gitlab_admin.hooks.delete(hook.id)
    assert gitlab_admin.hooks.list() == []


def test_hook_test_trigger_delivers_a_push(
    gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    project = gitlab_admin.projects.create({"name": "testme", "initialize_with_readme": True})
    hook = project.hooks.create({"url": webhook_receiver.url})
    hook.test("push_events")
    got = webhook_receiver.wait_for(1)
    assert got[-1].headers["X-Gitlab-Event"] == "Push Hook"
    assert got[-1].json()["object_kind"] == "push"


def test_hook_test_on_empty_project_is_422(
    gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    project = gitlab_admin.projects.create({"name": "empty"})
    hook = project.hooks.create({"url": webhook_receiver.url})
    with pytest.raises(gitlab.GitlabHookTestError) as err:
        hook.test("push_events")
    assert err.value.response_code == 422
