"""Test harness: real Redis, PostgreSQL and S3 (moto server mode), isolated per test.

Every test gets its own Redis database number, PostgreSQL database, S3 bucket, temp dirs
and DVC state directory. Nothing may talk to a host other than loopback: an autouse guard
refuses such connections from this process, and subprocess environments disable the
cloud-metadata lookups and telemetry that would otherwise try.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from hypothesis import HealthCheck, settings

from indexer.data.dvc_env import dvc_environment
from tests.support import leakcheck, services

pytest_plugins = ["tests.gitlab_sandbox.fixtures", "tests.support.index_fixtures"]

# ------------------------------------------------------------------------- hypothesis

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=120, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# ---------------------------------------------------------------- process-wide hygiene

_EMPTY_AWS_CONFIG = Path(tempfile.mkdtemp(prefix="dshub-test-aws-")) / "config"
_EMPTY_AWS_CONFIG.touch()

_HYGIENE = {
    "DVC_NO_ANALYTICS": "1",
    "DVC_STUDIO_OFFLINE": "true",
    "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
    "AWS_DEFAULT_REGION": services.S3_REGION,
    # boto would otherwise probe 169.254.169.254 for credentials and region.
    "AWS_EC2_METADATA_DISABLED": "true",
    # An empty file, not /dev/null: dvc-s3 (s3fs) refuses a config path that is not a file.
    "AWS_CONFIG_FILE": str(_EMPTY_AWS_CONFIG),
    "AWS_SHARED_CREDENTIALS_FILE": str(_EMPTY_AWS_CONFIG),
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "NO_PROXY": "127.0.0.1,localhost,::1",
    "no_proxy": "127.0.0.1,localhost,::1",
}
for _key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
    os.environ.pop(_key, None)
os.environ.update(_HYGIENE)
# The venv's tools (dvc, gunicorn, moto_server) are found even when it is not activated.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        if not _is_loopback(host):
            raise ConnectionRefusedError(
                f"test hygiene: connection to {host} refused; tests may only reach loopback"
            )


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


def _unavailable(exc: services.ServiceUnavailable) -> None:
    pytest.exit(f"test services: {exc}", returncode=3)


@pytest.fixture(autouse=True)
def dvc_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-test DVC config and site cache (check_update and analytics off)."""
    state = tmp_path / "_dvc_state"
    for key, value in dvc_environment(state, base={}).items():
        monkeypatch.setenv(key, value)
    return state


@pytest.fixture
def dvc_env(dvc_state: Path) -> dict[str, str]:
    """An environment for running the `dvc` command in a subprocess with this test's state."""
    return dvc_environment(dvc_state)


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server_url(services_dir: Path) -> Iterator[str]:
    """URL of the Redis server the test session uses (found or started)."""
    try:
        url, managed = services.find_or_start_redis(services_dir / "redis")
    except services.ServiceUnavailable as exc:
        _unavailable(exc)
        raise
    yield url
    if managed:
        managed.stop()


def _worker_slot() -> tuple[int, int]:
    """(this process's index, how many test processes run): pytest-xdist's, or (0, 1)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return int(name.removeprefix("gw")), max(count, 1)


class RedisDatabases:
    """The Redis database numbers this test process may use, handed out one holder at a time.

    Database 0 is never used, so a developer's own keys on the default Redis are not touched;
    parallel test processes (pytest-xdist) share the server but never a database number. A
    number goes back to the end of the line when released, so the next test gets the one
    left alone longest.
    """

    def __init__(self) -> None:
        index, count = _worker_slot()
        self._free = collections.deque(d for d in range(1, 16) if d % count == index % count)

    def acquire(self) -> int:
        if not self._free:
            raise RuntimeError("every Redis database of this test process is in use")
        return self._free.popleft()

    def release(self, number: int) -> None:
        self._free.append(number)

    @contextlib.contextmanager
    def held(self, server_url: str) -> Iterator[str]:
        """A URL of a database of its own, flushed before and after."""
        number = self.acquire()
        url = f"{server_url.rstrip('/')}/{number}"
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            yield url
        finally:
            client.flushdb()
            client.close()
            self.release(number)


_REDIS_DATABASES = RedisDatabases()


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis URL whose database number belongs to this test alone (flushed before and after)."""
    with _REDIS_DATABASES.held(redis_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis database held by one test module's shared world."""
    with _REDIS_DATABASES.held(redis_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_admin_url(services_dir: Path) -> Iterator[str]:
    """URL of a PostgreSQL role allowed to create databases (found or started)."""
    try:
        url, managed = services.find_or_start_postgres(services_dir / "postgres")
    except services.ServiceUnavailable as exc:
        _unavailable(exc)
        raise
    yield url
    if managed:
        managed.stop()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A PostgreSQL database created for this test alone and dropped afterwards."""
    name = f"dshub_t_{uuid.uuid4().hex[:16]}"
    with services.scratch_database(postgres_admin_url, name) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint(services_dir: Path) -> Iterator[str]:
    """Endpoint URL of moto's S3 server, started for this test session on loopback."""
    try:
        url, managed = services.start_moto(services_dir / "moto")
    except services.ServiceUnavailable as exc:
        _unavailable(exc)
        raise
    yield url
    managed.stop()


@dataclass(frozen=True)
class S3Bucket:
    """One test's bucket on the moto server, with everything needed to reach it."""

    endpoint_url: str
    name: str
    access_key: str = services.S3_ACCESS_KEY
    secret_key: str = services.S3_SECRET_KEY
    region: str = services.S3_REGION

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[S3Bucket]:
    """A fresh, empty bucket for this test; emptied and deleted afterwards."""
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"t-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    yield bucket
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket.name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket.name)


# ----------------------------------------------------------------------- token-leak check
# Every secret the session creates is registered (tests/support/leakcheck.py); every log
# the session writes is read at its end; one line holding a secret fails the run.


def pytest_configure(config: pytest.Config) -> None:
    registry = leakcheck.SecretRegistry(leakcheck.default_log_dir())
    leakcheck.install(registry)
    registry.add(services.S3_SECRET_KEY, "moto S3 secret key")
    config.stash[_LEAKS] = []
    config.stash[_LOG_DIRS] = []
    if "PYTEST_XDIST_WORKER" not in os.environ and getattr(config.option, "numprocesses", None):
        os.environ[_RELAY] = tempfile.mkdtemp(prefix="dshub-leak-relay-")


_LEAKS = pytest.StashKey[list[str]]()
_COUNTS = pytest.StashKey[list[int]]()
_LOG_DIRS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session", autouse=True)
def _leakcheck_reads_the_session_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Every gunicorn, worker and service of the tests writes its log under here.
    registry = leakcheck.active()
    if registry is not None:
        registry.watch(tmp_path_factory.getbasetemp())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The teardown report holds what every phase of the test captured.
    registry = leakcheck.active()
    text = leakcheck.captured_output(report.sections) if report.when == "teardown" else ""
    if registry is not None and text:
        with registry.log_path("pytest-captured.log").open("a", encoding="utf-8") as out:
            out.write(f"{leakcheck.HEADER}{report.nodeid}\n{text}")


# Under pytest-xdist each worker checks its own secrets and logs and leaves its findings in
# a directory the controller named (inherited through the environment); the controller
# adds them to its own, so a leak in any worker fails the run.
_RELAY = "DSHUB_TEST_LEAK_RELAY"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    registry = leakcheck.active()
    if registry is None:
        return
    hits = [
        hit.describe()
        for hit in registry.scan()
        if hit.kind not in leakcheck.KNOWN_LEAKS_FIXED_ELSEWHERE
    ]
    counts = [len(registry.secrets), len(registry.files())]
    relay = os.environ.get(_RELAY)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if relay and worker:
        findings = {"hits": hits, "counts": counts, "log_dir": str(registry.log_dir)}
        (Path(relay) / f"{worker}.json").write_text(json.dumps(findings))
    elif relay:
        for report in sorted(Path(relay).glob("*.json")):
            findings = json.loads(report.read_text())
            hits += findings["hits"]
            counts = [a + b for a, b in zip(counts, findings["counts"], strict=True)]
            session.config.stash[_LOG_DIRS].append(findings["log_dir"])
    session.config.stash[_LEAKS] = hits
    session.config.stash[_COUNTS] = counts
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    registry = leakcheck.active()
    if registry is None:
        return
    known = [hit for hit in registry.scan() if hit.kind in leakcheck.KNOWN_LEAKS_FIXED_ELSEWHERE]
    hits = config.stash.get(_LEAKS, [])
    secrets, files = config.stash.get(_COUNTS, [len(registry.secrets), len(registry.files())])
    log_dirs = ", ".join([str(registry.log_dir), *config.stash.get(_LOG_DIRS, [])])
    terminalreporter.section("token-leak check")
    terminalreporter.write_line(
        f"{secrets} secrets checked in {files} log files (logs kept in {log_dirs})"
    )
    for kind in sorted({hit.kind for hit in known}):
        places = sorted({hit.source for hit in known if hit.kind == kind})
        count = sum(1 for hit in known if hit.kind == kind)
        terminalreporter.write_line(
            f"KNOWN LEAK (fixed elsewhere): {count} line(s) hold a {kind}, in {', '.join(places)}"
        )
    for hit in hits:
        terminalreporter.write_line(f"LEAK: {hit}", red=True)
    if hits:
        terminalreporter.write_line(f"{len(hits)} log line(s) hold a secret: the run fails")
