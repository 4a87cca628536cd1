"""Finding or starting the real services the tests use: Redis, PostgreSQL and an S3 API.

Each `find_or_start_*` first looks for a running server (the DSHUB_TEST_* URL or the default
loopback port), then starts a private one in a temporary directory if the server binary is
installed, and otherwise stops the test run with one line saying how to install it. There is
never a silent skip: a test that needs a service either gets it or the run fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis


class ServiceUnavailable(RuntimeError):
    """A service the tests need is neither running nor installable from here."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it returns True, or raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise ServiceUnavailable(f"{what} did not become ready within {timeout:.0f} s")


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A server process started for the tests, stopped (and reaped) on `stop`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    after_stop: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for hook in self.after_stop:
            with contextlib.suppress(Exception):
                hook()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------------- Redis


def redis_alive(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def start_redis(workdir: Path, port: int | None = None) -> tuple[str, ManagedProcess]:
    """Start a private, non-persistent redis-server on loopback; return its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable(
            "Redis is not running and redis-server is not installed: "
            "run `sudo apt-get install redis-server` (or set DSHUB_TEST_REDIS_URL)"
        )
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "redis.log"
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}"
    managed = ManagedProcess("redis", process, log_path)
    try:
        wait_until(lambda: redis_alive(url), 20, "redis-server")
    except ServiceUnavailable:
        managed.stop()
        raise
    return url, managed


def find_or_start_redis(workdir: Path) -> tuple[str, ManagedProcess | None]:
    """The test Redis: DSHUB_TEST_REDIS_URL, else 127.0.0.1:6379, else a private server."""
    configured = os.environ.get("DSHUB_TEST_REDIS_URL")
    if configured:
        if not redis_alive(configured):
            raise ServiceUnavailable(
                f"DSHUB_TEST_REDIS_URL={configured} does not answer PING; start that Redis "
                "or unset the variable to let the tests start their own"
            )
        return configured, None
    default = "redis://127.0.0.1:6379"
    if redis_alive(default):
        return default, None
    return start_redis(workdir)


# ----------------------------------------------------------------------------- PostgreSQL


def postgres_alive(url: str) -> bool:
    """True when PostgreSQL accepts a connection at `url`."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError):
        return False


def _postgres_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    return None


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the `postgres` system user.
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ServiceUnavailable("running as root needs `runuser` (util-linux) for PostgreSQL")
        return [runuser, "-u", "postgres", "--", *argv]
    return argv


def start_postgres(workdir: Path) -> tuple[str, ManagedProcess]:
    """initdb a private cluster in `workdir` and start it on a free loopback port."""
    bindir = _postgres_bindir()
    if bindir is None:
        raise ServiceUnavailable(
            "PostgreSQL is not running and not installed: run "
            "`sudo apt-get install postgresql` (or set DSHUB_TEST_POSTGRES_URL)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    # The cluster lives in its own directory under the system temp dir: pytest's temp dirs
    # are private to root, and the `postgres` user must be able to reach its data directory.
    cluster = Path(tempfile.mkdtemp(prefix="dshub-test-pg-"))
    datadir = cluster / "pgdata"
    sockdir = cluster / "sock"
    sockdir.mkdir()
    if os.geteuid() == 0:
        os.chmod(cluster, 0o755)  # noqa: S103 - the postgres user must traverse it
        shutil.chown(cluster, "postgres")
        shutil.chown(sockdir, "postgres")
    log_path = workdir / "postgres.log"
    init = subprocess.run(
        _as_postgres_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(cluster, ignore_errors=True)
        raise ServiceUnavailable(f"initdb failed: {init.stderr.strip()[-400:]}")
    port = free_port()
    argv = _as_postgres_user(
        [
            str(bindir / "postgres"),
            "-D",
            str(datadir),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(sockdir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    managed = ManagedProcess("postgres", process, log_path)
    managed.after_stop.append(lambda: shutil.rmtree(cluster, ignore_errors=True))
    try:
        wait_until(lambda: postgres_alive(url), 60, "PostgreSQL")
    except ServiceUnavailable:
        managed.stop()
        raise
    return url, managed


def find_or_start_postgres(workdir: Path) -> tuple[str, ManagedProcess | None]:
    """The test PostgreSQL: DSHUB_TEST_POSTGRES_URL, else 127.0.0.1:5432, else a private one."""
    configured = os.environ.get("DSHUB_TEST_POSTGRES_URL")
    if configured:
        if not postgres_alive(configured):
            raise ServiceUnavailable(
                f"DSHUB_TEST_POSTGRES_URL does not accept connections ({configured}); start "
                "that server or unset the variable to let the tests start their own"
            )
        return configured, None
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    if postgres_alive(default):
        return default, None
    return start_postgres(workdir)


@contextlib.contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """Create database `name` for one test and drop it afterwards; yields its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------- S3 (moto)


S3_ACCESS_KEY = "testing-access-key"
S3_SECRET_KEY = "testing-secret-key"
S3_REGION = "us-east-1"


def moto_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the moto server at `endpoint_url`, with the test keys."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    )


def start_moto(workdir: Path) -> tuple[str, ManagedProcess]:
    """Start moto's S3 server mode on a free loopback port; return its endpoint URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "moto.log"
    env = dict(os.environ)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": S3_REGION,
            "MOTO_ALLOW_NONEXISTENT_REGION": "false",
        }
    )
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    managed = ManagedProcess("moto", process, log_path)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), 60, "moto S3 server")
    except ServiceUnavailable:
        managed.stop()
        raise
    return f"http://127.0.0.1:{port}", managed
