"""Another project's CI job token reads a dataset through dshub's DVC remote exactly when
GitLab lets it fetch the dataset's repository (the dataset's CI/CD job token allowlist and
the job user's own role), and never writes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.dvc_remote.conftest import World
from tests.dvc_remote.test_http_contract import (
    _basic,
    _error,
    _get,
    _new_object,
    _put,
    _upload,
    _url,
)

pytestmark = pytest.mark.slow


def _consumer(world: World, *developers: str) -> Any:
    """A new project of the `vision` group whose pipelines `developers` run."""
    admin = world.projects["cats"].manager.gitlab
    group = admin.groups.get("vision")
    project = admin.projects.create(
        {"name": f"consumer-{uuid.uuid4().hex[:8]}", "namespace_id": group.id}
    )
    for name in developers:
        project.members.create({"user_id": world.users[name][0].id, "access_level": 30})
    return project


def _job(world: World, project: Any, user: str) -> str:
    return world.sandbox.create_job_token(project.id, world.users[user][0])


def _refused_like_any_other_project(answer: Any, token: str) -> None:
    status, code, message = _error(answer)
    assert (status, code) == (403, "forbidden")
    assert "this CI job token belongs to another project" in message
    assert token not in answer.text


def test_an_allowlisted_projects_job_reads_but_never_writes(world: World) -> None:
    data, key = _upload(world, "cats")
    consumer = _consumer(world, "dev")
    cats = world.projects["cats"]
    cats.job_token_scope.get().allowlist.create({"target_project_id": consumer.id})
    try:
        token = _job(world, consumer, "dev")
        for headers in ({"JOB-TOKEN": token}, _basic("gitlab-ci-token", token)):
            answer = _get(_url(world, "cats", key), headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.content == data

        new, new_key = _new_object()
        status, code, message = _error(
            _put(_url(world, "cats", new_key), data=new, headers={"JOB-TOKEN": token})
        )
        assert (status, code) == (403, "forbidden")
        assert "other projects' jobs only read" in message
        assert new_key not in world.lab_files("cats")
    finally:
        cats.job_token_scope.get().allowlist.delete(consumer.id)

    # Off the list: a new job's token gets the answer any other project's token gets.
    again = _job(world, consumer, "dev")
    _refused_like_any_other_project(
        _get(_url(world, "cats", key), headers={"JOB-TOKEN": again}), again
    )


def test_a_project_not_on_the_allowlist_is_refused(world: World) -> None:
    _, key = _upload(world, "cats")
    consumer = _consumer(world, "dev")
    token = _job(world, consumer, "dev")
    for _ in range(2):  # the second answer comes from the cache, and is the same
        _refused_like_any_other_project(
            _get(_url(world, "cats", key), headers={"JOB-TOKEN": token}), token
        )


def test_the_allowlist_does_not_lift_the_job_users_own_role(world: World) -> None:
    _, key = _upload(world, "cats")
    user, personal = world.sandbox.create_user(f"ext-{uuid.uuid4().hex[:6]}")
    world.users[user.username] = (user, personal)
    consumer = _consumer(world, user.username)
    cats = world.projects["cats"]
    cats.job_token_scope.get().allowlist.create({"target_project_id": consumer.id})
    try:
        token = _job(world, consumer, user.username)
        _refused_like_any_other_project(
            _get(_url(world, "cats", key), headers={"JOB-TOKEN": token}), token
        )
    finally:
        cats.job_token_scope.get().allowlist.delete(consumer.id)
        del world.users[user.username]
