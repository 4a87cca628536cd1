"""A small TCP fault proxy for the reliability harness (no fault-injection package here).

`FaultProxy(upstream_host, upstream_port)` listens on a free loopback port and forwards every
connection to the upstream. Its mode decides what new and open connections get:

- `forward` — bytes pass both ways unchanged;
- `delay` — every chunk waits `delay` seconds before it is passed on (a slow server);
- `refuse` — the listening socket is closed: new connections are refused (a server that is
  down); open ones are cut;
- `http503` — each new connection gets one `HTTP/1.1 503` answer (S3's `SlowDown` XML) once
  its request head has arrived, then is closed; open ones are cut first;
- `cut()` — reset every open connection now (a crash or a network cut), mode unchanged.

`retarget(host, port)` points new connections at another upstream (a restarted server on a
new port stays behind the same address). Thread-based; each connection is one thread.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

MODES = ("forward", "delay", "refuse", "http503")
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class ProxyStats:
    """What the proxy did, for the report."""

    accepted: int = 0
    cut: int = 0
    answered_503: int = 0


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a cut network looks; the shutdown
    wakes a thread waiting on the socket at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class FaultProxy:
    """One listening address in front of one upstream; see the module docstring."""

    upstream_host: str
    upstream_port: int
    port: int = 0
    mode: str = "forward"
    delay: float = 0.0
    stats: ProxyStats = field(default_factory=ProxyStats)
    _listener: socket.socket | None = field(default=None, repr=False)
    _open: set[socket.socket] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closed: bool = False

    def start(self) -> FaultProxy:
        """Bind (a free port unless `port` is set) and start accepting; returns self."""
        self._listen()
        return self

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`."""
        return f"127.0.0.1:{self.port}"

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        """Switch mode; `refuse` and `http503` cut the open connections too."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self._lock:
            previous = self.mode
            self.mode, self.delay = mode, max(0.0, delay)
        if mode in ("refuse", "http503"):
            self.cut()
        if mode == "refuse" and self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            with contextlib.suppress(OSError):
                listener.close()
        elif mode != "refuse" and (previous == "refuse" or self._listener is None):
            self._listen()

    def retarget(self, host: str, port: int) -> None:
        """New connections go to `host:port` from now on."""
        with self._lock:
            self.upstream_host, self.upstream_port = host, port

    def cut(self) -> int:
        """Reset every open connection (both sides); returns how many sockets were cut."""
        with self._lock:
            victims, self._open = list(self._open), set()
        for sock in victims:
            _reset(sock)
        self.stats.cut += len(victims)
        return len(victims)

    def close(self) -> None:
        """Stop listening and cut everything."""
        self._closed = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        self.cut()

    # ------------------------------------------------------------------ internals

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed (refuse mode or shutdown)
            self.stats.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)

    def _serve(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.mode == "http503":
            self._answer_503(client)
            return
        with self._lock:
            target = (self.upstream_host, self.upstream_port)
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._track(client, upstream)
        try:
            self._pump(client, upstream)
        finally:
            self._untrack(client, upstream)
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        while True:
            try:
                readable, _, _ = select.select(list(peers), [], [], 1.0)
            except (OSError, ValueError):
                return  # a socket was cut under us
            if self._closed:
                return
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if self.mode == "delay" and self.delay:
                    time.sleep(self.delay)
                try:
                    peers[sock].sendall(data)
                except OSError:
                    return

    def _answer_503(self, client: socket.socket) -> None:
        self._track(client)
        try:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            self.stats.answered_503 += 1  # before sending: the client may read it at once
            client.sendall(
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(SLOW_DOWN)}\r\n".encode()
                + b"Connection: close\r\n\r\n"
                + SLOW_DOWN
            )
        except OSError:
            pass
        finally:
            self._untrack(client)
            with contextlib.suppress(OSError):
                client.close()
