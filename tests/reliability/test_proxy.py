"""The harness's TCP fault proxy (bench/reliability/proxy.py) against a real echo server."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from bench.reliability.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(echo: int) -> Iterator[FaultProxy]:
    front = FaultProxy("127.0.0.1", echo).start()
    try:
        yield front
    finally:
        front.close()


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_forwards_bytes_both_ways(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 2000
    assert _roundtrip(proxy.port, payload) == payload


def test_delay_slows_every_chunk(proxy: FaultProxy) -> None:
    proxy.set_mode("delay", 0.3)
    started = time.monotonic()
    assert _roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - started >= 0.55  # once each way
    proxy.set_mode("forward")
    started = time.monotonic()
    assert _roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - started < 0.25


def test_refuse_closes_the_port_and_forward_reopens_it(proxy: FaultProxy) -> None:
    proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    proxy.set_mode("forward")
    assert _roundtrip(proxy.port) == b"ping"


def test_cut_resets_open_connections(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"a")
        assert sock.recv(10) == b"a"
        assert proxy.cut() == 2  # the client's side and the upstream's
        with pytest.raises((ConnectionResetError, BrokenPipeError, AssertionError)):
            sock.sendall(b"b")
            assert sock.recv(10) != b""  # a reset or an end of stream, never the echo
            raise AssertionError("connection still open")
    assert _roundtrip(proxy.port) == b"ping"  # new connections are forwarded


def test_http503_answers_s3_slow_down(proxy: FaultProxy) -> None:
    proxy.set_mode("http503")
    answer = requests.get(f"http://{proxy.address}/bucket/key", timeout=5)
    assert answer.status_code == 503 and b"<Code>SlowDown</Code>" in answer.content
    assert proxy.stats.answered_503 == 1
    proxy.set_mode("forward")
    assert _roundtrip(proxy.port) == b"ping"


def test_retarget_sends_new_connections_elsewhere(proxy: FaultProxy, echo: int) -> None:
    other = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        proxy.retarget("127.0.0.1", other.server_address[1])
        assert _roundtrip(proxy.port) == b"ping"
        assert proxy.stats.accepted == 1
        other.shutdown()
        other.server_close()
        # The new upstream is gone: the proxy closes (or resets) the client's connection.
        with contextlib.suppress(ConnectionResetError):
            assert _roundtrip(proxy.port) == b""
    finally:
        other.server_close()
