"""Pytest fixtures: an in-process GitLab sandbox, an admin python-gitlab client, a webhook receiver.

Registered in tests/conftest.py with `pytest_plugins`. `run_sandbox_subprocess` starts
`python -m tests.gitlab_sandbox` for tests that need a separate process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request as WzRequest
from werkzeug.wrappers import Response as WzResponse

from tests.support import services
from tests.gitlab_sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gitlab_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh sandbox on a free loopback port with its own data dir (per test)."""
    sandbox = Sandbox(tmp_path / "gitlab-sandbox").start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def gitlab_admin(gitlab_sandbox: Sandbox) -> gitlab.Gitlab:
    """A python-gitlab client authenticated as the sandbox's admin `root`."""
    client = gitlab.Gitlab(gitlab_sandbox.url, private_token=gitlab_sandbox.admin_token)
    client.auth()
    return client


@dataclass
class ReceivedHook:
    """One request a webhook receiver got."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        import json

        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint recording every POST; `status` is what it answers."""

    url: str
    status: int = 200
    received: list[ReceivedHook] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[ReceivedHook]:
        """Wait until at least `count` requests arrived; returns them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = WzRequest(environ)
        with self._cond:
            self.received.append(ReceivedHook(dict(request.headers), request.get_data()))
            self._cond.notify_all()
        return WzResponse(b"ok", status=self.status)(environ, start_response)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A threaded loopback receiver for webhook deliveries."""
    receiver = WebhookReceiver(url="")
    server: BaseWSGIServer = make_server("127.0.0.1", 0, receiver._app, threaded=True)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SandboxProcess:
    """A sandbox running as `python -m tests.gitlab_sandbox`."""

    url: str
    admin_token: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Terminate and reap the process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def run_sandbox_subprocess(data_dir: Path, admin_token: str | None = None) -> SandboxProcess:
    """Start the sandbox in a subprocess on a free port and wait for `GET /-/health`."""
    port = services.free_port()
    admin_token = admin_token or f"glpat-{secrets.token_urlsafe(20)}"
    env = {**os.environ, "DSHUB_SANDBOX_ADMIN_TOKEN": admin_token}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.gitlab_sandbox",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    handle = SandboxProcess(url, admin_token, process)
    try:
        services.wait_until(
            lambda: requests.get(f"{url}/-/health", timeout=1).status_code == 200,
            20,
            "gitlab sandbox",
        )
    except services.ServiceUnavailable:
        handle.stop()
        raise
    return handle
