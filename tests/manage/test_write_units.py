"""The pure parts of `indexer.write.datasets`: GitLab's refusals as our errors, namespaces."""

from __future__ import annotations

from typing import Any

import gitlab.exceptions
import pytest
import requests

from indexer.errors import (
    Conflict,
    DshubError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Unavailable,
    Unprocessable,
)
from indexer.write.datasets import (
    DatasetChanges,
    NamespaceChoice,
    check_visibility,
    in_dataset_namespaces,
    translate,
)


def _gitlab(code: int, message: Any) -> gitlab.exceptions.GitlabError:
    return gitlab.exceptions.GitlabCreateError(error_message=message, response_code=code)


@pytest.mark.parametrize(
    ("code", "message", "kind", "words"),
    [
        (400, {"name": ["has already been taken"]}, Conflict, "name already exists"),
        (400, {"path": ["has already been taken"]}, Conflict, "path already exists"),
        (
            400,
            {"visibility_level": ["public is not allowed in a private group."]},
            Unprocessable,
            "public is not allowed in a private group.",
        ),
        (400, {"namespace": ["is not valid"]}, Forbidden, "namespace is not valid"),
        (400, "description is too long", InvalidInput, "description is too long"),
        (403, "403 Forbidden", Forbidden, "403 Forbidden"),
        (404, "404 Project Not Found", NotFound, "GitLab found nothing"),
        (422, "Unprocessable", InvalidInput, "Unprocessable"),
        (429, "slow down", Unavailable, "429"),
        (502, "bad gateway", Unavailable, "502"),
    ],
)
def test_gitlab_answers_become_our_errors_with_gitlabs_reason(
    code: int, message: Any, kind: type[DshubError], words: str
) -> None:
    error = translate(_gitlab(code, message), "creating a project")
    assert type(error) is kind
    assert words in error.message


def test_unauthorised_tokens_and_network_failures() -> None:
    auth = gitlab.exceptions.GitlabAuthenticationError(response_code=401)
    assert isinstance(translate(auth, "x"), NotAuthenticated)
    assert isinstance(translate(requests.ConnectionError(), "x"), Unavailable)
    with pytest.raises(ZeroDivisionError):
        translate(ZeroDivisionError(), "x")


def test_dataset_namespaces_match_whole_path_segments() -> None:
    assert in_dataset_namespaces("anything/at/all", ())
    assert in_dataset_namespaces("imaging", ("imaging",))
    assert in_dataset_namespaces("imaging/ct", ("imaging",))
    assert not in_dataset_namespaces("imaging-old", ("imaging",))
    assert not in_dataset_namespaces("lab", ("imaging", "bio"))


def test_visibility_above_the_namespace_names_the_highest_allowed() -> None:
    internal = NamespaceChoice(1, "imaging", "Imaging", "group", "internal")
    check_visibility("private", internal)
    check_visibility("internal", internal)
    with pytest.raises(Unprocessable, match="highest this namespace allows is 'internal'"):
        check_visibility("public", internal)


def test_changes_send_only_what_was_given() -> None:
    assert DatasetChanges(description="").as_gitlab() == {"description": ""}
    assert DatasetChanges(topics=("a",), name="n").as_gitlab() == {"name": "n", "topics": ["a"]}
