"""One gunicorn-served dshub (no GitLab needed) that tests talk to with raw sockets, so that
nothing between the test and gunicorn repairs a malformed request."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.receiver.serving import Gunicorn, start_gunicorn

SECRET = "front-secret-4c1f"


@dataclass
class Front:
    """The server and its combined log (gunicorn's error and access logs, and ours)."""

    server: Gunicorn

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.server.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def send(self, raw: bytes, *, read_timeout: float = 10.0) -> bytes:
        """Send `raw` on a fresh connection, half-close, and return every byte answered."""
        with socket.create_connection(self.address, timeout=read_timeout) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = bytearray()
            while chunk := sock.recv(65536):
                answer += chunk
        return bytes(answer)

    def log(self) -> str:
        """The server's log so far (waits a moment: workers write asynchronously)."""
        time.sleep(0.2)
        return self.server.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="package")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    root = tmp_path_factory.mktemp("front")
    server = start_gunicorn(
        root,
        {
            "DSHUB_DATA_DIR": str(root / "data"),
            "DSHUB_INDEX_URL": f"sqlite:///{root / 'index.sqlite3'}",
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_LEVEL": "DEBUG",
            "GUNICORN_CMD_ARGS": "--log-level debug",
        },
        workers=1,
    )
    try:
        yield Front(server)
    finally:
        server.stop()
