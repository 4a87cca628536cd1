"""Sign in with GitLab: the OAuth 2 authorization-code flow with PKCE (S256), scope `api`.

`GET /-/oauth/sign-in?next=` starts it: a random `state` and PKCE verifier, sealed (Fernet,
the service's secret key) into the short-lived pre-login cookie `dshub_oauth_flow`
(HttpOnly, SameSite=Lax, ten minutes, path `/-/oauth`), and a redirect to GitLab's
`/oauth/authorize` with the redirect URI `DSHUB_PUBLIC_URL/-/oauth/callback`. The callback
accepts only the `state` of that cookie, trades the code for tokens at GitLab's
`/oauth/token`, and keeps them server-side (`webhook_service.oauth_sessions`): the browser
gets only the opaque session id in the `dshub_oauth` cookie (HttpOnly, SameSite=Lax). Every
GitLab call made for the session sends the access token as `Authorization: Bearer`
(`indexer.gitlab.tokens.OAuthToken`). Sign-out (`POST /-/sign-out`) revokes it.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import timedelta

from cryptography.fernet import InvalidToken
from flask import abort, current_app, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from indexer.errors import InvalidInput, NotAuthenticated
from indexer.gitlab import oauth
from indexer.gitlab.permissions import token_key
from indexer.gitlab.tokens import OAuthToken
from webhook_service.app_settings import services
from webhook_service.csrf import OAUTH_COOKIE, SESSION_COOKIE
from webhook_service.oauth_sessions import OAuthSessions, SessionRecord, sessions_of
from webhook_service.ui import blueprint
from webhook_service.ui.session import COOKIE_AGE, safe_next, secure_cookies

FLOW_COOKIE = "dshub_oauth_flow"
FLOW_PATH = "/-/oauth"
FLOW_AGE = timedelta(minutes=10)
RESTART = "Start again from the sign-in page."


def _sessions() -> OAuthSessions:
    found = sessions_of(current_app)
    if found is None:
        abort(404)
    return found


def oauth_session() -> SessionRecord | None:
    """The "Sign in with GitLab" record of this browser, when it has one."""
    session_id = request.cookies.get(OAUTH_COOKIE)
    found = sessions_of(current_app)
    if not session_id or found is None:
        return None
    return found.record(session_id)


@blueprint.get("/-/oauth/sign-in")
def oauth_start() -> ResponseReturnValue:
    """Send the browser to GitLab to approve dshub, bound to a pre-login cookie."""
    sessions = _sessions()
    verifier, challenge = oauth.pkce_pair()
    state = secrets.token_urlsafe(32)
    flow = {"state": state, "verifier": verifier, "next": safe_next(request.args.get("next"))}
    sealed = sessions.cipher.encrypt(json.dumps(flow).encode("utf-8")).decode("ascii")
    response = redirect(oauth.authorize_url(sessions.client, state, challenge), code=302)
    response.set_cookie(
        FLOW_COOKIE,
        sealed,
        max_age=int(FLOW_AGE.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(),
        path=FLOW_PATH,
    )
    return response


def _flow(sessions: OAuthSessions) -> dict[str, str]:
    sealed = request.cookies.get(FLOW_COOKIE)
    if not sealed:
        raise InvalidInput(
            f"This sign-in with GitLab was not started in this browser, or took too long. {RESTART}"
        )
    try:
        opened = sessions.cipher.decrypt(sealed.encode("ascii"), ttl=int(FLOW_AGE.total_seconds()))
        flow = json.loads(opened)
    except (InvalidToken, ValueError, UnicodeEncodeError):
        raise InvalidInput(f"This sign-in with GitLab took too long. {RESTART}") from None
    if not isinstance(flow, dict) or not all(isinstance(flow.get(k), str) for k in flow):
        raise InvalidInput(f"This sign-in with GitLab cannot be finished. {RESTART}")
    return flow


@blueprint.get("/-/oauth/callback")
def oauth_callback() -> ResponseReturnValue:
    """GitLab sends the browser back here: check `state`, trade the code, keep the session."""
    sessions = _sessions()
    flow = _flow(sessions)
    state = request.args.get("state", "")
    if not hmac.compare_digest(state.encode("utf-8"), flow["state"].encode("utf-8")):
        raise InvalidInput(
            "This sign-in answer does not belong to the sign-in this browser started "
            f"(the state does not match). {RESTART}"
        )
    if request.args.get("error"):
        raise InvalidInput(f"GitLab did not let dshub use your account. {RESTART}")
    code = request.args.get("code", "")
    if not code or len(code) > 512 or not code.isprintable():
        raise InvalidInput(f"GitLab's answer has no authorization code. {RESTART}")
    try:
        pair = oauth.exchange_code(sessions.client, code, flow["verifier"])
        user = services().request_reader(OAuthToken(pair.access_token)).current_user()
    except NotAuthenticated:
        raise InvalidInput(f"GitLab did not accept this sign-in. {RESTART}") from None
    session_id = sessions.create(SessionRecord.of(pair, user.username))
    return _signed_in(session_id, user.username, flow["next"])


def _signed_in(session_id: str, username: str, target: str) -> Response:
    response = redirect(target, code=303)
    response.set_cookie(
        OAUTH_COOKIE,
        session_id,
        max_age=int(COOKIE_AGE.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(),
        path="/",
    )
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH, httponly=True, samesite="Lax")
    # A personal access token signed in before would win over nothing: one sign-in at a time.
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
    session.clear()
    session["oauth"] = token_key(session_id)[:32]
    session["username"] = username
    return response


def sign_out_oauth() -> None:
    """Revoke this browser's OAuth session at GitLab and forget it (no session: nothing)."""
    session_id = request.cookies.get(OAUTH_COOKIE)
    found = sessions_of(current_app)
    if not session_id or found is None:
        return
    record = found.record(session_id)
    if record is not None:
        services().permissions.forget(record.access_token)
    found.sign_out(session_id)


@blueprint.get("/-/account")
def account() -> ResponseReturnValue:
    """Who is signed in and how; OAuth users learn that DVC and the CLI need a token."""
    record = oauth_session()
    settings = services().settings
    tokens_url = f"{settings.gitlab_url or ''}/-/user_settings/personal_access_tokens"
    return render_template("ui/account.html", record=record, tokens_url=tokens_url)
