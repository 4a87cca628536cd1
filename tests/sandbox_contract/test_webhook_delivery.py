"""Webhook delivery: GitLab's headers, system-hook payload shapes, push hooks, fault knobs."""

from __future__ import annotations

from typing import Any

import gitlab
import pytest

from tests.gitlab_sandbox.fixtures import WebhookReceiver
from tests.gitlab_sandbox.server import Sandbox
from tests.sandbox_contract.payload_shape import load_example, shape_differences


def _system_hook(gl: gitlab.Gitlab, receiver: WebhookReceiver, **flags: bool) -> None:
    gl.hooks.create({"url": receiver.url, "token": "sys-secret", **flags})


def test_delivery_headers_are_gitlabs(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    _system_hook(gitlab_admin, webhook_receiver)
    gitlab_admin.projects.create({"name": "p"})
    request = webhook_receiver.wait_for(1)[0]
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("GitLab/")
    assert headers["X-Gitlab-Event"] == "System Hook"
    assert headers["X-Gitlab-Token"] == "sys-secret"
    assert headers["X-Gitlab-Instance"] == gitlab_sandbox.url
    for name in ("Idempotency-Key", "X-Gitlab-Event-Uuid", "X-Gitlab-Webhook-Uuid"):
        assert len(headers[name]) == 36


def test_no_token_header_without_a_token(
    gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    gitlab_admin.hooks.create({"url": webhook_receiver.url})
    gitlab_admin.projects.create({"name": "p"})
    assert "X-Gitlab-Token" not in webhook_receiver.wait_for(1)[0].headers


@pytest.mark.parametrize(
    "event",
    ["project_create", "project_update", "project_rename", "project_transfer", "project_destroy"],
)
def test_project_event_payloads_match_documented_examples(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    webhook_receiver: WebhookReceiver,
    event: str,
) -> None:
    _system_hook(gitlab_admin, webhook_receiver)
    group = gitlab_admin.groups.create({"name": "grp", "path": "grp"})
    project = gitlab_admin.projects.create({"name": "proj"})
    project.description = "changed"
    project.save()
    project.path = "proj2"
    project.save()
    gitlab_admin.projects.get(project.id).transfer(group.id)
    gitlab_admin.projects.delete(project.id)
    gitlab_sandbox.webhooks.wait_idle()
    bodies = [r.json() for r in webhook_receiver.received]
    found = [b for b in bodies if b.get("event_name") == event]
    assert found, f"no {event} among {[b.get('event_name') for b in bodies]}"
    assert shape_differences(load_example(f"system_{event}"), found[0]) == []


@pytest.mark.parametrize(
    "event", ["user_add_to_team", "user_update_for_team", "user_remove_from_team"]
)
def test_team_member_payloads_match_documented_examples(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    webhook_receiver: WebhookReceiver,
    make_client: Any,
    event: str,
) -> None:
    project = gitlab_admin.projects.create({"name": "team"})
    _system_hook(gitlab_admin, webhook_receiver)
    user, _ = make_client("member")
    member = project.members.create({"user_id": user.id, "access_level": 30})
    member.access_level = 40
    member.save()
    project.members.delete(user.id)
    gitlab_sandbox.webhooks.wait_idle()
    found = [r.json() for r in webhook_receiver.received if r.json().get("event_name") == event]
    assert len(found) == 1
    assert shape_differences(load_example(f"system_{event}"), found[0]) == []
    assert found[0]["user_username"] == "member"


def test_group_member_payload_matches_documented_example(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    webhook_receiver: WebhookReceiver,
    make_client: Any,
) -> None:
    group = gitlab_admin.groups.create({"name": "g", "path": "g"})
    _system_hook(gitlab_admin, webhook_receiver)
    user, _ = make_client("gm")
    group.members.create({"user_id": user.id, "access_level": 20})
    body = webhook_receiver.wait_for(1)[0].json()
    assert shape_differences(load_example("system_user_add_to_group"), body) == []


def test_readme_commit_fires_push_and_repository_update(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    _system_hook(gitlab_admin, webhook_receiver, push_events=True)
    gitlab_admin.projects.create({"name": "r", "initialize_with_readme": True})
    gitlab_sandbox.webhooks.wait_idle()
    kinds = [
        r.json().get("object_kind") or r.json().get("event_name") for r in webhook_receiver.received
    ]
    assert "push" in kinds and "repository_update" in kinds
    assert all(r.headers["X-Gitlab-Event"] == "System Hook" for r in webhook_receiver.received)


def test_project_push_hook_honours_branch_filter(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    project = gitlab_admin.projects.create({"name": "f", "initialize_with_readme": True})
    project.hooks.create({"url": webhook_receiver.url, "push_events_branch_filter": "release/*"})
    record = gitlab_sandbox.state.projects[project.id]
    root = gitlab_sandbox.state.user_by_username("root")
    assert root is not None
    from tests.gitlab_sandbox.gitrepo import GitRepo

    repo = GitRepo(record.repo_path)
    head = repo.branch_sha("main")
    assert head is not None
    repo.create_branch("release/1", "main")
    gitlab_sandbox.state.fire_push(record, root, [("0" * 40, head, "refs/heads/main")])
    gitlab_sandbox.state.fire_push(record, root, [("0" * 40, head, "refs/heads/release/1")])
    gitlab_sandbox.webhooks.wait_idle()
    refs = [r.json()["ref"] for r in webhook_receiver.received]
    assert refs == ["refs/heads/release/1"]
    assert webhook_receiver.received[0].headers["X-Gitlab-Event"] == "Push Hook"


def test_more_than_three_refs_fire_no_push_hooks(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    project = gitlab_admin.projects.create({"name": "many", "initialize_with_readme": True})
    project.hooks.create({"url": webhook_receiver.url})
    _system_hook(gitlab_admin, webhook_receiver)
    record = gitlab_sandbox.state.projects[project.id]
    root = gitlab_sandbox.state.user_by_username("root")
    assert root is not None
    from tests.gitlab_sandbox.gitrepo import GitRepo

    head = GitRepo(record.repo_path).branch_sha("main")
    assert head is not None
    updates = [("0" * 40, head, f"refs/heads/b{i}") for i in range(4)]
    gitlab_sandbox.state.fire_push(record, root, updates)
    gitlab_sandbox.webhooks.wait_idle()
    events = [r.json().get("event_name") for r in webhook_receiver.received]
    assert events == ["repository_update"]
    assert len(webhook_receiver.received[0].json()["refs"]) == 4


def _group_without_member_events(gitlab_admin: gitlab.Gitlab) -> int:
    """A group root owns: projects created there fire project_create and no member event
    (in a personal namespace the owner's Owner membership fires user_add_to_team too)."""
    return int(gitlab_admin.groups.create({"name": "quiet", "path": "quiet"}).id)


def test_duplicate_knob_resends_with_same_idempotency_key(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    group = _group_without_member_events(gitlab_admin)
    _system_hook(gitlab_admin, webhook_receiver)
    gitlab_sandbox.faults.duplicate_webhooks(1)
    gitlab_admin.projects.create({"name": "twice", "namespace_id": group})
    first, second = webhook_receiver.wait_for(2)[:2]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["X-Gitlab-Webhook-Uuid"] != second.headers["X-Gitlab-Webhook-Uuid"]


def test_drop_knob_loses_a_delivery_and_records_it(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    group = _group_without_member_events(gitlab_admin)
    _system_hook(gitlab_admin, webhook_receiver)
    gitlab_sandbox.faults.drop_webhooks(1)
    gitlab_admin.projects.create({"name": "a", "namespace_id": group})
    gitlab_admin.projects.create({"name": "b", "namespace_id": group})
    gitlab_sandbox.webhooks.wait_idle()
    assert [r.json()["name"] for r in webhook_receiver.received] == ["b"]
    assert [d.outcome for d in gitlab_sandbox.deliveries()] == ["dropped", "delivered"]


def test_reorder_knob_releases_held_deliveries_in_reverse(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    group = _group_without_member_events(gitlab_admin)
    _system_hook(gitlab_admin, webhook_receiver)
    gitlab_sandbox.faults.reorder_webhooks(2)
    gitlab_admin.projects.create({"name": "first", "namespace_id": group})
    gitlab_admin.projects.create({"name": "second", "namespace_id": group})
    got = webhook_receiver.wait_for(2)
    assert [r.json()["name"] for r in got] == ["second", "first"]


def test_redelivery_keeps_the_idempotency_key(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    group = _group_without_member_events(gitlab_admin)
    _system_hook(gitlab_admin, webhook_receiver)
    gitlab_admin.projects.create({"name": "again", "namespace_id": group})
    original = gitlab_sandbox.wait_for_deliveries(1)[0]
    gitlab_sandbox.webhooks.redeliver(original.id)
    got = webhook_receiver.wait_for(2)
    assert got[0].headers["Idempotency-Key"] == got[1].headers["Idempotency-Key"]


def test_failing_project_hook_is_disabled_after_four_failures(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.status = 500
    project = gitlab_admin.projects.create({"name": "flaky", "initialize_with_readme": True})
    hook = project.hooks.create({"url": webhook_receiver.url})
    record = gitlab_sandbox.state.projects[project.id]
    root = gitlab_sandbox.state.user_by_username("root")
    assert root is not None
    from tests.gitlab_sandbox.gitrepo import GitRepo

    head = GitRepo(record.repo_path).branch_sha("main")
    assert head is not None
    for _ in range(5):
        gitlab_sandbox.state.fire_push(record, root, [("0" * 40, head, "refs/heads/main")])
    gitlab_sandbox.webhooks.wait_idle()
    assert len(webhook_receiver.received) == 4
    assert project.hooks.get(hook.id).alert_status == "temporarily_disabled"
    assert [d.outcome for d in gitlab_sandbox.deliveries()][-1] == "disabled"


def test_deliveries_endpoint_lists_attempts_for_admins(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    group = _group_without_member_events(gitlab_admin)
    _system_hook(gitlab_admin, webhook_receiver)
    gitlab_admin.projects.create({"name": "listed", "namespace_id": group})
    gitlab_sandbox.webhooks.wait_idle()
    import requests

    listed = requests.get(
        f"{gitlab_sandbox.url}/-/sandbox/deliveries",
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=10,
    ).json()
    assert [d["body"]["event_name"] for d in listed] == ["project_create"]
    assert listed[0]["status"] == 200
