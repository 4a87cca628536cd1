"""HTTP contract: unknown routes, `%2F` paths, auth errors, pagination headers and Link URLs."""

from __future__ import annotations

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.server import Sandbox


def _get(sandbox: Sandbox, path: str, token: str | None = None) -> requests.Response:
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return requests.get(f"{sandbox.url}{path}", headers=headers, timeout=10)


def test_unknown_api_route_answers_grape_404(gitlab_sandbox: Sandbox) -> None:
    response = _get(gitlab_sandbox, "/api/v4/no/such/route", gitlab_sandbox.admin_token)
    assert response.status_code == 404
    assert response.json() == {"error": "404 Not Found"}
    assert response.headers["Content-Type"] == "application/json"


def test_health_answers_ok(gitlab_sandbox: Sandbox) -> None:
    assert _get(gitlab_sandbox, "/-/health").status_code == 200


def test_unknown_token_is_401_with_gitlab_message(gitlab_sandbox: Sandbox) -> None:
    client = gitlab.Gitlab(gitlab_sandbox.url, private_token="glpat-wrong")
    with pytest.raises(gitlab.GitlabAuthenticationError) as err:
        client.auth()
    assert err.value.response_code == 401
    assert err.value.error_message == "401 Unauthorized"


def test_bearer_and_query_tokens_authenticate(gitlab_sandbox: Sandbox) -> None:
    bearer = requests.get(
        f"{gitlab_sandbox.url}/api/v4/user",
        headers={"Authorization": f"Bearer {gitlab_sandbox.admin_token}"},
        timeout=10,
    )
    query = requests.get(
        f"{gitlab_sandbox.url}/api/v4/user",
        params={"private_token": gitlab_sandbox.admin_token},
        timeout=10,
    )
    assert bearer.json()["username"] == query.json()["username"] == "root"


def test_encoded_slash_is_one_segment_and_plain_slash_misses(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    group = gitlab_admin.groups.create({"name": "g", "path": "g"})
    gitlab_admin.projects.create({"name": "p", "namespace_id": group.id})
    token = gitlab_sandbox.admin_token
    assert (
        _get(gitlab_sandbox, "/api/v4/projects/g%2Fp", token).json()["path_with_namespace"] == "g/p"
    )
    missed = _get(gitlab_sandbox, "/api/v4/projects/g/p", token)
    assert missed.status_code == 404
    assert missed.json() == {"error": "404 Not Found"}


def test_offset_pagination_headers_and_link_carry_every_filter(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    for index in range(5):
        gitlab_admin.projects.create(
            {"name": f"data-{index}", "visibility": "public", "topics": ["imaging"]}
        )
    response = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects",
        params={"topic": "imaging", "visibility": "public", "per_page": "2", "page": "2"},
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=10,
    )
    headers = response.headers
    assert (
        headers["X-Page"],
        headers["X-Per-Page"],
        headers["X-Total"],
        headers["X-Total-Pages"],
    ) == (
        "2",
        "2",
        "5",
        "3",
    )
    assert (headers["X-Next-Page"], headers["X-Prev-Page"]) == ("3", "1")
    links = response.links
    assert set(links) == {"prev", "next", "first", "last"}
    for link in links.values():
        assert link["url"].startswith(f"{gitlab_sandbox.url}/api/v4/projects?")
        assert "topic=imaging" in link["url"] and "visibility=public" in link["url"]
        assert "per_page=2" in link["url"]
    assert "page=3" in links["next"]["url"]


def test_last_page_has_empty_next_page_header(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    gitlab_admin.projects.create({"name": "only"})
    response = _get(gitlab_sandbox, "/api/v4/projects?per_page=5", gitlab_sandbox.admin_token)
    assert response.headers["X-Next-Page"] == ""
    assert response.headers["X-Prev-Page"] == ""
    assert "next" not in response.links


def test_python_gitlab_follows_link_pages(gitlab_admin: gitlab.Gitlab) -> None:
    for index in range(7):
        gitlab_admin.projects.create({"name": f"p{index}"})
    names = {p.name for p in gitlab_admin.projects.list(per_page=2, get_all=True)}
    assert names == {f"p{index}" for index in range(7)}


def test_keyset_pagination_links_only_next_with_id_after(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    created = [gitlab_admin.projects.create({"name": f"k{i}"}).id for i in range(5)]
    response = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects",
        params={"pagination": "keyset", "order_by": "id", "sort": "asc", "per_page": "2"},
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=10,
    )
    assert [p["id"] for p in response.json()] == created[:2]
    assert set(response.links) == {"next"}
    assert f"id_after={created[1]}" in response.links["next"]["url"]
    assert "X-Total" not in response.headers
    every = gitlab_admin.projects.list(
        pagination="keyset", order_by="id", sort="asc", per_page=2, get_all=True
    )
    assert [p.id for p in every] == created


def test_keyset_needs_order_by_id(gitlab_sandbox: Sandbox) -> None:
    response = _get(
        gitlab_sandbox,
        "/api/v4/projects?pagination=keyset&order_by=name",
        gitlab_sandbox.admin_token,
    )
    assert response.status_code == 405


def test_bad_enum_gets_grape_error(gitlab_sandbox: Sandbox) -> None:
    response = _get(gitlab_sandbox, "/api/v4/projects?order_by=colour", gitlab_sandbox.admin_token)
    assert response.status_code == 400
    assert response.json() == {"error": "order_by does not have a valid value"}


def test_the_request_log_filters_token_parameters_as_gitlab_does() -> None:
    from tests.gitlab_sandbox.server import filtered_path

    assert (
        filtered_path("/api/v4/user?private_token=glpat-x&per_page=2&job_token=glcbt-y")
        == "/api/v4/user?private_token=[FILTERED]&per_page=2&job_token=[FILTERED]"
    )
