"""GitLab's OAuth 2 authorization-code flow with PKCE, as dshub's "Sign in with GitLab" uses it.

Sans-Flask: builds the authorize URL, exchanges a code, refreshes and revokes, each a form
POST to GitLab (`/oauth/token`, `/oauth/revoke`, documented at docs.gitlab.com/api/oauth2).
Tokens travel only in request bodies and are never part of an exception's message.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from indexer.errors import NotAuthenticated, Unavailable

SCOPE = "api"
CALLBACK_PATH = "/-/oauth/callback"
TIMEOUT = 15.0
DEFAULT_LIFETIME = 7200.0  # GitLab's access tokens live two hours
REFRESH_MARGIN = 60.0  # the permission cache's lifetime (indexer.gitlab.permissions)


@dataclass(frozen=True)
class OAuthClient:
    """dshub's GitLab OAuth application: where GitLab is, who dshub is, where users return."""

    gitlab_url: str
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(frozen=True)
class TokenPair:
    """What GitLab's token endpoint answered: the access token, the refresh token, and the
    epoch second dshub refreshes at — shortly before the access token expires (a minute, or
    a tenth of a short lifetime), so no permission cached for it outlives it."""

    access_token: str
    refresh_token: str
    refresh_at: float


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 defines them."""
    verifier = secrets.token_urlsafe(64)
    return verifier, challenge_of(verifier)


def challenge_of(verifier: str) -> str:
    """The S256 code challenge of a verifier: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(client: OAuthClient, state: str, challenge: str) -> str:
    """Where the browser goes to let GitLab ask the user (scope `api`, PKCE S256)."""
    query = urlencode(
        {
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "response_type": "code",
            "state": state,
            "scope": SCOPE,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{client.gitlab_url}/oauth/authorize?{query}"


def exchange_code(client: OAuthClient, code: str, verifier: str) -> TokenPair:
    """Trade an authorization code (and the PKCE verifier) for tokens; `NotAuthenticated`
    when GitLab refuses the code."""
    return _token_request(
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        },
    )


def refresh(client: OAuthClient, refresh_token: str) -> TokenPair:
    """A new token pair for a refresh token (GitLab rotates it: the old one stops working);
    `NotAuthenticated` when GitLab refuses it (revoked, already used)."""
    return _token_request(client, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def revoke(client: OAuthClient, token: str) -> None:
    """Ask GitLab to revoke a token (RFC 7009: unknown tokens are not an error)."""
    try:
        requests.post(
            f"{client.gitlab_url}/oauth/revoke",
            data={"token": token, **_credentials(client)},
            timeout=TIMEOUT,
        )
    except requests.RequestException:
        raise Unavailable("GitLab could not be reached to revoke the sign-in") from None


def _credentials(client: OAuthClient) -> dict[str, str]:
    return {"client_id": client.client_id, "client_secret": client.client_secret}


def _token_request(client: OAuthClient, form: dict[str, str]) -> TokenPair:
    try:
        answer = requests.post(
            f"{client.gitlab_url}/oauth/token",
            data={**form, **_credentials(client)},
            timeout=TIMEOUT,
        )
    except requests.RequestException:
        raise Unavailable("GitLab could not be reached to finish signing in") from None
    if answer.status_code in (400, 401):
        raise NotAuthenticated(f"GitLab refused the sign-in ({_oauth_error(answer)})")
    if answer.status_code != 200:
        raise Unavailable(f"GitLab answered {answer.status_code} to the token request")
    try:
        body = answer.json()
        return TokenPair(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            refresh_at=_refresh_at(float(body.get("expires_in") or DEFAULT_LIFETIME)),
        )
    except (ValueError, KeyError, TypeError):
        raise Unavailable("GitLab's token answer was not the documented JSON") from None


def _refresh_at(lifetime: float) -> float:
    return time.time() + lifetime - min(REFRESH_MARGIN, lifetime / 10)


def _oauth_error(answer: requests.Response) -> str:
    """The `error` code of an OAuth error answer (never its description: it may echo input)."""
    try:
        code = answer.json().get("error")
    except ValueError:
        code = None
    return code if isinstance(code, str) and code.isidentifier() else "unknown error"
