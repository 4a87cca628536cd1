"""The sandbox's OAuth 2 provider behaves as GitLab documents it (docs.gitlab.com/api/oauth2):
PKCE checked, codes single-use, refresh tokens rotated, revocation, and OAuth access tokens
accepted as `Authorization: Bearer` but refused as `PRIVATE-TOKEN`."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import gitlab
import pytest
import requests

from indexer.gitlab import oauth
from tests.gitlab_sandbox.server import Sandbox

REDIRECT = "http://127.0.0.1:9/-/oauth/callback"


@pytest.fixture
def app(gitlab_sandbox: Sandbox) -> dict[str, Any]:
    gitlab_sandbox.create_user("alice")
    answer = requests.post(
        f"{gitlab_sandbox.url}/api/v4/applications",
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        json={"name": "dshub", "redirect_uri": REDIRECT, "scopes": "api"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _code(sandbox: Sandbox, app: dict[str, Any], challenge: str, login: str = "alice") -> str:
    client = oauth.OAuthClient(sandbox.url, app["application_id"], app["secret"], REDIRECT)
    url = oauth.authorize_url(client, "st4te", challenge)
    form = requests.get(url, timeout=10)
    assert form.status_code == 200 and "Authorize dshub" in form.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    answer = requests.post(
        f"{sandbox.url}/oauth/authorize",
        data={**query, "login": login},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert back["state"] == ["st4te"]
    return back["code"][0]


def _client(sandbox: Sandbox, app: dict[str, Any]) -> oauth.OAuthClient:
    return oauth.OAuthClient(sandbox.url, app["application_id"], app["secret"], REDIRECT)


def _signed_in(gitlab_sandbox: Sandbox, app: dict[str, Any]) -> oauth.TokenPair:
    verifier, challenge = oauth.pkce_pair()
    code = _code(gitlab_sandbox, app, challenge)
    return oauth.exchange_code(_client(gitlab_sandbox, app), code, verifier)


def test_code_with_the_right_verifier_gives_a_bearer_token(
    gitlab_sandbox: Sandbox, app: dict[str, Any]
) -> None:
    pair = _signed_in(gitlab_sandbox, app)
    user = gitlab.Gitlab(gitlab_sandbox.url, oauth_token=pair.access_token)
    user.auth()
    assert user.user is not None and user.user.username == "alice"
    info = requests.get(
        f"{gitlab_sandbox.url}/oauth/token/info",
        headers={"Authorization": f"Bearer {pair.access_token}"},
        timeout=10,
    ).json()
    assert info["scope"] == ["api"] and 0 < info["expires_in"] <= 7200


def test_oauth_token_is_refused_as_private_token(
    gitlab_sandbox: Sandbox, app: dict[str, Any]
) -> None:
    pair = _signed_in(gitlab_sandbox, app)
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        gitlab.Gitlab(gitlab_sandbox.url, private_token=pair.access_token).auth()


def test_wrong_verifier_is_refused_and_the_code_is_single_use(
    gitlab_sandbox: Sandbox, app: dict[str, Any]
) -> None:
    verifier, challenge = oauth.pkce_pair()
    code = _code(gitlab_sandbox, app, challenge)
    client = _client(gitlab_sandbox, app)
    with pytest.raises(Exception, match="invalid_grant"):
        oauth.exchange_code(client, code, oauth.pkce_pair()[0])
    # The failed attempt used the code up: the right verifier no longer helps.
    with pytest.raises(Exception, match="invalid_grant"):
        oauth.exchange_code(client, code, verifier)
    verifier, challenge = oauth.pkce_pair()
    code = _code(gitlab_sandbox, app, challenge)
    oauth.exchange_code(client, code, verifier)
    with pytest.raises(Exception, match="invalid_grant"):
        oauth.exchange_code(client, code, verifier)


def test_wrong_client_secret_is_invalid_client(
    gitlab_sandbox: Sandbox, app: dict[str, Any]
) -> None:
    answer = requests.post(
        f"{gitlab_sandbox.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["application_id"],
            "client_secret": "x",
        },
        timeout=10,
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_refresh_rotates_and_expired_tokens_are_refused(
    gitlab_sandbox: Sandbox, app: dict[str, Any]
) -> None:
    pair = _signed_in(gitlab_sandbox, app)
    admin = {"PRIVATE-TOKEN": gitlab_sandbox.admin_token}
    assert requests.post(
        f"{gitlab_sandbox.url}/-/sandbox/oauth/expire", headers=admin, timeout=10
    ).ok
    expired = gitlab.Gitlab(gitlab_sandbox.url, oauth_token=pair.access_token)
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        expired.auth()
    client = _client(gitlab_sandbox, app)
    fresh = oauth.refresh(client, pair.refresh_token)
    gitlab.Gitlab(gitlab_sandbox.url, oauth_token=fresh.access_token).auth()
    with pytest.raises(Exception, match="invalid_grant"):
        oauth.refresh(client, pair.refresh_token)
    served = requests.get(
        f"{gitlab_sandbox.url}/-/sandbox/oauth/grants", headers=admin, timeout=10
    ).json()
    assert served == ["authorization_code", "refresh_token", "refresh_token"]


def test_revoked_token_stops_working(gitlab_sandbox: Sandbox, app: dict[str, Any]) -> None:
    pair = _signed_in(gitlab_sandbox, app)
    client = _client(gitlab_sandbox, app)
    oauth.revoke(client, pair.access_token)
    info = requests.get(
        f"{gitlab_sandbox.url}/oauth/token/info",
        headers={"Authorization": f"Bearer {pair.access_token}"},
        timeout=10,
    )
    assert info.status_code == 401 and info.json()["error"] == "invalid_token"
    with pytest.raises(Exception, match="invalid_grant"):
        oauth.refresh(client, pair.refresh_token)


def test_unregistered_redirect_uri_is_an_error_page_not_a_redirect(
    gitlab_sandbox: Sandbox, app: dict[str, Any]
) -> None:
    client = oauth.OAuthClient(
        gitlab_sandbox.url, app["application_id"], app["secret"], "https://evil.example/cb"
    )
    answer = requests.get(oauth.authorize_url(client, "s", "c"), allow_redirects=False, timeout=10)
    assert answer.status_code == 400
