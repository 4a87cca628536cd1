"""Running the sandbox: a threaded werkzeug server on loopback, started and stopped from Python."""

from __future__ import annotations

import logging
import re
import secrets
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.gitlab_sandbox.app import SandboxApp
from tests.gitlab_sandbox.faults import Faults
from tests.gitlab_sandbox.state import SandboxState, Token, User
from tests.gitlab_sandbox.webhooks import Delivery, WebhookDispatcher

ADMIN_USERNAME = "root"


# GitLab's logs show these parameters as [FILTERED] (config.filter_parameters); so does ours.
_FILTERED = re.compile(r"([?&](?:private_token|job_token|access_token|token|password)=)[^&]*", re.I)


def filtered_path(path: str) -> str:
    """The request target with token-like query parameters replaced by `[FILTERED]`."""
    return _FILTERED.sub(r"\1[FILTERED]", path)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logging.getLogger("gitlab_sandbox.access").debug(
            "%s %s %s", self.command, filtered_path(self.path), code
        )


def ensure_admin(state: SandboxState, token: str | None = None) -> str:
    """Make sure the admin `root` exists and owns `token` (a new random one when None)."""
    with state.mutation():
        root = state.user_by_username(ADMIN_USERNAME)
        if root is None:
            root = state.create_user(ADMIN_USERNAME, "Administrator", "admin@example.com", True)
        if token is None:
            existing = [t for t in state.tokens.values() if t.user_id == root.id and not t.revoked]
            if existing:
                return existing[0].token
            token = f"glpat-{secrets.token_urlsafe(20)}"
        if token not in state.tokens:
            state.create_token(root, "sandbox-admin", ["api", "sudo", "admin_mode"], token)
        return token


class Sandbox:
    """One running sandbox: `.url`, `.admin_token`, `.state`, `.faults`, `.deliveries()`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        admin_token: str | None = None,
    ) -> None:
        self.faults = Faults()
        self.state = SandboxState(Path(data_dir))
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            SandboxApp(self.state, self.faults),
            threaded=True,
            request_handler=_QuietHandler,
        )
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self.state.base_url = self.url
        self.admin_token = ensure_admin(self.state, admin_token)
        self.webhooks = WebhookDispatcher(self.state, self.faults)
        self.state.webhooks = self.webhooks
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        """Serve on a background thread; returns self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gitlab-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and stop the delivery thread."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.webhooks.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers

    def create_user(self, username: str, admin: bool = False) -> tuple[User, str]:
        """Create a user with one `api` token; returns the user and the token secret."""
        user = self.state.create_user(username, admin=admin)
        token: Token = self.state.create_token(user, "test")
        return user, token.token

    def create_job_token(self, project_id: int, user: User, ref: str | None = None) -> str:
        """Start a running CI job of `project_id` for `user`; returns its `CI_JOB_TOKEN`."""
        from tests.gitlab_sandbox.api_jobs import mint_job

        return mint_job(self.state, project_id, user, ref=ref).token

    def finish_job(self, token: str, status: str = "success") -> None:
        """End the job owning `token`; GitLab then refuses the token (401)."""
        from tests.gitlab_sandbox.api_jobs import finish_job

        finish_job(self.state, token, status)

    def deliveries(self) -> list[Delivery]:
        """Recorded webhook delivery attempts, oldest first."""
        return self.webhooks.deliveries()

    def wait_for_deliveries(
        self, count: int, timeout: float = 15.0, **match: Any
    ) -> list[Delivery]:
        """Wait until `count` finished deliveries match (e.g. `event="Push Hook"`)."""
        return self.webhooks.wait_for(count, timeout, **match)
