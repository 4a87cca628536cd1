"""GitLab's OAuth 2 provider as documented (docs.gitlab.com/api/oauth2): applications,
`/oauth/authorize` (authorization code, PKCE S256), `/oauth/token` (authorization_code and
refresh_token grants, refresh tokens rotated), `/oauth/revoke`, `/oauth/token/info`.

Access tokens live `expires_in` seconds (7200, as GitLab's) and are accepted only as
`Authorization: Bearer` — as `PRIVATE-TOKEN` GitLab answers 401. The sandbox approves
without a consent screen click-through: `GET /oauth/authorize` shows a form asking for the
user's login, `POST /oauth/authorize` with `login` approves as that user. Control endpoints
(admin): `POST /-/sandbox/oauth/expire` expires every access token now,
`GET /-/sandbox/oauth/grants` lists the grant types `/oauth/token` served,
`POST /-/sandbox/oauth/settings` sets `access_token_ttl`. Held in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, field
from html import escape
from urllib.parse import urlencode

from tests.gitlab_sandbox.http import ApiError, Request, Response, forbidden, router, unauthorized
from tests.gitlab_sandbox.state import SandboxState, User
from tests.support import leakcheck

CODE_AGE = 600.0


@dataclass
class Application:
    id: int
    uid: str
    secret: str
    name: str
    redirect_uri: str
    scopes: str


@dataclass
class Grant:
    code: str
    app_uid: str
    user_id: int
    redirect_uri: str
    challenge: str
    scopes: str
    created: float
    used: bool = False


@dataclass
class AccessToken:
    token: str
    refresh_token: str
    app_uid: str
    user_id: int
    scopes: str
    created: float
    expires_in: int
    revoked: bool = False
    refresh_used: bool = False

    def active(self, now: float) -> bool:
        return not self.revoked and now < self.created + self.expires_in


@dataclass
class OAuthState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    apps: dict[str, Application] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, AccessToken] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)
    ttl: int = 7200


_STATES: weakref.WeakKeyDictionary[SandboxState, OAuthState] = weakref.WeakKeyDictionary()


def oauth_of(state: SandboxState) -> OAuthState:
    """The OAuth provider state of one sandbox."""
    with state.lock:
        found = _STATES.get(state)
        if found is None:
            found = _STATES[state] = OAuthState()
        return found


def user_for_access_token(state: SandboxState, secret: str) -> tuple[bool, User | None]:
    """(is it an OAuth access token at all, its active user or None)."""
    store = oauth_of(state)
    record = store.tokens.get(secret)
    if record is None:
        return False, None
    if not record.active(time.time()):
        return True, None
    return True, state.users.get(record.user_id)


def _error(status: int, code: str, description: str) -> ApiError:
    return ApiError(status, {"error": code, "error_description": description})


def _admin(req: Request) -> None:
    if req.user is None:
        raise unauthorized()
    if not req.user.admin:
        raise forbidden()


@router.route("POST", "/api/v4/applications")
def create_application(req: Request) -> Response:
    """Register an OAuth application (admin): name, redirect_uri, scopes."""
    _admin(req)
    name, redirect_uri = req.params.get("name"), req.params.get("redirect_uri")
    scopes = req.params.get("scopes")
    if not (isinstance(name, str) and isinstance(redirect_uri, str) and isinstance(scopes, str)):
        raise ApiError(400, {"message": "name, redirect_uri and scopes are required"})
    store = oauth_of(req.state)
    app = Application(
        id=req.state.next_id("applications"),
        uid=secrets.token_hex(32),
        secret=f"gloas-{secrets.token_hex(32)}",
        name=name,
        redirect_uri=redirect_uri,
        scopes=scopes,
    )
    leakcheck.register(app.secret, "GitLab OAuth application secret")
    with store.lock:
        store.apps[app.uid] = app
    body = {
        "id": app.id,
        "application_id": app.uid,
        "application_name": app.name,
        "secret": app.secret,
        "callback_url": app.redirect_uri,
        "confidential": True,
    }
    return Response(201, body)


def _authorize_app(req: Request) -> Application:
    store = oauth_of(req.state)
    app = store.apps.get(str(req.params.get("client_id", "")))
    if app is None or req.params.get("redirect_uri") != app.redirect_uri:
        # GitLab shows an error page, never redirects to an unregistered URI.
        raise ApiError(400, "The client or its redirect URI is not registered.\n")
    return app


def _redirect(app: Application, query: dict[str, str]) -> Response:
    return Response(302, b"", {"Location": f"{app.redirect_uri}?{urlencode(query)}"})


@router.route("GET", "/oauth/authorize")
def authorize_form(req: Request) -> Response:
    """The consent page: a form naming the application, asking for the user's login."""
    app = _authorize_app(req)
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(str(v))}">'
        for k, v in req.query.items()
    )
    page = (
        "<!doctype html><html lang='en'><head><title>Authorize</title></head><body><main>"
        f"<h1>Authorize {escape(app.name)} to use your account?</h1>"
        f"<form method='post' action='/oauth/authorize'>{hidden}"
        "<label for='login'>Username</label><input id='login' name='login'>"
        "<button type='submit'>Authorize</button></form></main></body></html>"
    )
    return Response(200, page, None, "text/html; charset=utf-8")


@router.route("POST", "/oauth/authorize")
def authorize(req: Request) -> Response:
    """Approve as the user named `login`: redirect back with a single-use code."""
    app = _authorize_app(req)
    state_param = str(req.params.get("state", ""))
    back = {"state": state_param} if state_param else {}
    if req.params.get("response_type") != "code":
        return _redirect(app, {"error": "unsupported_response_type", **back})
    scopes = str(req.params.get("scope", app.scopes))
    if not set(scopes.split()) <= set(app.scopes.split()):
        return _redirect(app, {"error": "invalid_scope", **back})
    challenge = str(req.params.get("code_challenge", ""))
    if challenge and req.params.get("code_challenge_method") != "S256":
        return _redirect(app, {"error": "invalid_request", **back})
    login = str(req.params.get("login", ""))
    user = next((u for u in req.state.users.values() if u.username == login), None)
    if user is None:
        return _redirect(app, {"error": "access_denied", **back})
    grant = Grant(
        code=secrets.token_hex(32),
        app_uid=app.uid,
        user_id=user.id,
        redirect_uri=app.redirect_uri,
        challenge=challenge,
        scopes=scopes,
        created=time.time(),
    )
    store = oauth_of(req.state)
    with store.lock:
        store.grants[grant.code] = grant
    return _redirect(app, {"code": grant.code, **back})


def _client(req: Request) -> Application:
    store = oauth_of(req.state)
    app = store.apps.get(str(req.params.get("client_id", "")))
    sent = str(req.params.get("client_secret", ""))
    if app is None or not hmac.compare_digest(sent.encode(), app.secret.encode()):
        raise _error(401, "invalid_client", "Client authentication failed")
    return app


def _issue(store: OAuthState, app: Application, user_id: int, scopes: str) -> Response:
    record = AccessToken(
        token=secrets.token_hex(32),
        refresh_token=secrets.token_hex(32),
        app_uid=app.uid,
        user_id=user_id,
        scopes=scopes,
        created=time.time(),
        expires_in=store.ttl,
    )
    leakcheck.register(record.token, "GitLab OAuth access token")
    leakcheck.register(record.refresh_token, "GitLab OAuth refresh token")
    store.tokens[record.token] = record
    store.refresh[record.refresh_token] = record
    body = {
        "access_token": record.token,
        "token_type": "Bearer",
        "expires_in": record.expires_in,
        "refresh_token": record.refresh_token,
        "scope": record.scopes,
        "created_at": int(record.created),
    }
    return Response(200, body, {"Cache-Control": "no-store"})


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@router.route("POST", "/oauth/token")
def token(req: Request) -> Response:
    """The token endpoint: `authorization_code` (with PKCE) and `refresh_token` grants."""
    app = _client(req)
    store = oauth_of(req.state)
    grant_type = req.params.get("grant_type")
    with store.lock:
        store.served.append(str(grant_type))
        if grant_type == "authorization_code":
            grant = store.grants.get(str(req.params.get("code", "")))
            invalid = _error(400, "invalid_grant", "The provided authorization grant is invalid")
            if grant is None or grant.used or grant.app_uid != app.uid:
                raise invalid
            grant.used = True
            if time.time() > grant.created + CODE_AGE:
                raise invalid
            if req.params.get("redirect_uri") != grant.redirect_uri:
                raise invalid
            if grant.challenge:
                verifier = str(req.params.get("code_verifier", ""))
                if not hmac.compare_digest(_s256(verifier), grant.challenge):
                    raise invalid
            return _issue(store, app, grant.user_id, grant.scopes)
        if grant_type == "refresh_token":
            old = store.refresh.get(str(req.params.get("refresh_token", "")))
            if old is None or old.revoked or old.refresh_used or old.app_uid != app.uid:
                raise _error(400, "invalid_grant", "The provided authorization grant is invalid")
            old.refresh_used = True  # rotation: the old refresh token stops working
            return _issue(store, app, old.user_id, old.scopes)
    raise _error(400, "unsupported_grant_type", "The authorization grant type is not supported")


@router.route("POST", "/oauth/revoke")
def revoke(req: Request) -> Response:
    """Revoke an access or refresh token (and its pair); unknown tokens answer 200 too."""
    _client(req)
    store = oauth_of(req.state)
    secret = str(req.params.get("token", ""))
    with store.lock:
        record = store.tokens.get(secret) or store.refresh.get(secret)
        if record is not None:
            record.revoked = True
    return Response(200, {})


@router.route("GET", "/oauth/token/info")
def token_info(req: Request) -> Response:
    """The access token's owner, scopes and remaining lifetime; 401 once it is not active."""
    auth = req.header("authorization")
    secret = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    secret = secret or str(req.query.get("access_token", ""))
    record = oauth_of(req.state).tokens.get(secret)
    now = time.time()
    if record is None or not record.active(now):
        raise _error(401, "invalid_token", "The access token is invalid")
    body = {
        "resource_owner_id": record.user_id,
        "scope": record.scopes.split(),
        "scopes": record.scopes.split(),
        "expires_in": int(record.created + record.expires_in - now),
        "expires_in_seconds": int(record.created + record.expires_in - now),
        "application": {"uid": record.app_uid},
        "created_at": int(record.created),
    }
    return Response(200, body)


@router.route("POST", "/-/sandbox/oauth/expire")
def expire_now(req: Request) -> Response:
    """Make every OAuth access token expire now (admin); refresh tokens keep working."""
    _admin(req)
    store = oauth_of(req.state)
    with store.lock:
        for record in store.tokens.values():
            record.expires_in = min(record.expires_in, int(time.time() - record.created) - 1)
    return Response(204)


@router.route("GET", "/-/sandbox/oauth/grants")
def grants_served(req: Request) -> Response:
    """The grant types `/oauth/token` was asked for, in order (admin)."""
    _admin(req)
    return Response(200, list(oauth_of(req.state).served))


@router.route("POST", "/-/sandbox/oauth/settings")
def settings(req: Request) -> Response:
    """`access_token_ttl`: the lifetime (seconds) of access tokens issued from now on (admin)."""
    _admin(req)
    ttl = req.params.get("access_token_ttl")
    if not isinstance(ttl, int) or ttl <= 0:
        raise ApiError(400, {"error": "access_token_ttl must be a positive whole number"})
    oauth_of(req.state).ttl = ttl
    return Response(200, {"access_token_ttl": ttl})
