"""`allow_job_token`: a dataset's Maintainer lets another project's pipelines read it (GitLab's
CI/CD job token allowlist, against the sandbox); anyone else learns who must."""

from __future__ import annotations

from typing import Any

import gitlab
import pytest

from indexer.errors import NotFound
from indexer.write.job_token_access import JobTokenAccess, allow_job_token
from tests.gitlab_sandbox.server import Sandbox


@pytest.fixture
def dataset_and_people(gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab) -> dict[str, Any]:
    dataset = gitlab_admin.projects.create({"name": "cats", "visibility": "private"})
    consumer = gitlab_admin.projects.create({"name": "consumer", "visibility": "private"})
    clients: dict[str, Any] = {"dataset": dataset, "consumer": consumer}
    for name, level in (("mia", 40), ("maya", 40), ("rep", 20)):
        user, token = gitlab_sandbox.create_user(name)
        dataset.members.create({"user_id": user.id, "access_level": level})
        consumer.members.create({"user_id": user.id, "access_level": 40})
        clients[name] = gitlab.Gitlab(gitlab_sandbox.url, private_token=token)
    return clients


def _allowlist(dataset: Any) -> list[int]:
    return [p.id for p in dataset.job_token_scope.get().allowlist.list(get_all=True)]


def test_a_maintainer_adds_the_project_once(dataset_and_people: dict[str, Any]) -> None:
    dataset, consumer = dataset_and_people["dataset"], dataset_and_people["consumer"]
    first = allow_job_token(dataset_and_people["mia"], dataset.id, consumer.id)
    assert first == JobTokenAccess(allowed=True, added=True)
    assert _allowlist(dataset) == [dataset.id, consumer.id]
    again = allow_job_token(dataset_and_people["maya"], dataset.id, consumer.id)
    assert again == JobTokenAccess(allowed=True, added=False)
    assert _allowlist(dataset) == [dataset.id, consumer.id]


def test_a_reporter_is_told_which_maintainers_must_do_it(
    dataset_and_people: dict[str, Any],
) -> None:
    dataset, consumer = dataset_and_people["dataset"], dataset_and_people["consumer"]
    refused = allow_job_token(dataset_and_people["rep"], dataset.id, consumer.id)
    assert refused.allowed is False and refused.added is False
    assert refused.must_ask == ("maya", "mia", "root")  # root created it: its Owner
    assert "ask maya, mia, root to add project" in refused.message
    assert f"/api/v4/projects/{dataset.id}/job_token_scope/allowlist" in refused.message
    assert _allowlist(dataset) == [dataset.id]


def test_a_dataset_without_the_limit_needs_nothing(dataset_and_people: dict[str, Any]) -> None:
    dataset, consumer = dataset_and_people["dataset"], dataset_and_people["consumer"]
    dataset.job_token_scope.update(new_data={"enabled": False})
    done = allow_job_token(dataset_and_people["mia"], dataset.id, consumer.id)
    assert done == JobTokenAccess(allowed=True, added=False)


def test_a_dataset_the_caller_cannot_see_is_not_found(
    gitlab_sandbox: Sandbox, dataset_and_people: dict[str, Any]
) -> None:
    _, token = gitlab_sandbox.create_user("out")
    outsider = gitlab.Gitlab(gitlab_sandbox.url, private_token=token)
    dataset, consumer = dataset_and_people["dataset"], dataset_and_people["consumer"]
    with pytest.raises(NotFound):
        allow_job_token(outsider, dataset.id, consumer.id)
