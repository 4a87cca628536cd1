"""Project CI/CD variables in GitLab's REST shape: masked, hidden, protected, scopes."""

from __future__ import annotations

from typing import Any, cast

import gitlab
import pytest

EXPECTED_KEYS = {
    "variable_type",
    "key",
    "value",
    "hidden",
    "protected",
    "masked",
    "raw",
    "environment_scope",
    "description",
}


def test_create_get_update_delete(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "vars"})
    created = project.variables.create({"key": "DSHUB_URL", "value": "http://x", "protected": True})
    assert set(created.asdict()) == EXPECTED_KEYS
    assert (created.protected, created.masked, created.environment_scope) == (True, False, "*")
    got = project.variables.get("DSHUB_URL")
    got.value = "http://y"
    got.save()
    assert project.variables.get("DSHUB_URL").value == "http://y"
    project.variables.delete("DSHUB_URL")
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.variables.get("DSHUB_URL")
    assert err.value.error_message == "404 Variable Not Found"


def test_masked_and_hidden_value_is_never_returned(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "hidden"})
    created = project.variables.create(
        {"key": "RW_SECRET", "value": "abcdefgh12345", "masked_and_hidden": True}
    )
    assert (created.value, created.masked, created.hidden) == (None, True, True)
    assert project.variables.get("RW_SECRET").value is None
    assert project.variables.list()[0].value is None


def test_masked_value_must_be_maskable(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "masked"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.variables.create({"key": "SHORT", "value": "abc", "masked": True})
    assert err.value.response_code == 400
    assert cast(Any, err.value.error_message) == {"value": ["is invalid"]}


def test_duplicate_key_in_same_scope_is_rejected(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "dup"})
    project.variables.create({"key": "K", "value": "1"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.variables.create({"key": "K", "value": "2"})
    assert cast(Any, err.value.error_message) == {"key": ["(K) has already been taken"]}


def test_scopes_need_filter_when_ambiguous(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "scoped"})
    project.variables.create({"key": "K", "value": "prod-value", "environment_scope": "prod"})
    project.variables.create({"key": "K", "value": "dev-value", "environment_scope": "dev"})
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.variables.get("K")
    assert err.value.response_code == 409
    picked = project.variables.get("K", filter={"environment_scope": "dev"})
    assert picked.value == "dev-value"


def test_invalid_key_is_rejected(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "badkey"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.variables.create({"key": "NOT-VALID", "value": "x"})
    assert err.value.response_code == 400
