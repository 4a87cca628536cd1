"""The harness itself: real services, per-test isolation and loopback-only networking."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psycopg
import pytest
import redis

from tests.support import services
from tests.conftest import S3Bucket


def test_redis_is_real_and_isolated_per_test(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.set("probe", "1")
    assert client.get("probe") == b"1"
    assert not redis_url.endswith("/0")


def test_postgres_database_is_private_to_the_test(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None and name[0].startswith("dshub_t_")
        conn.execute("CREATE TABLE probe (id int)")
        conn.execute("INSERT INTO probe VALUES (1)")
        row = conn.execute("SELECT count(*) FROM probe").fetchone()
        assert row == (1,)


def test_s3_bucket_round_trip(s3_bucket: S3Bucket) -> None:
    client = s3_bucket.client()
    client.put_object(Bucket=s3_bucket.name, Key="a/b.bin", Body=b"bytes")
    body = client.get_object(Bucket=s3_bucket.name, Key="a/b.bin")["Body"].read()
    assert body == b"bytes"
    assert s3_bucket.endpoint_url.startswith("http://127.0.0.1:")


def test_non_loopback_connections_are_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(ConnectionRefusedError, match="only reach loopback"),
    ):
        sock.connect(("192.0.2.1", 80))


def test_private_redis_server_can_be_started_and_stopped(tmp_path: Path) -> None:
    url, managed = services.start_redis(tmp_path / "redis")
    try:
        assert services.redis_alive(url)
    finally:
        managed.stop()
    assert not services.redis_alive(url)


def test_missing_service_binary_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(services.ServiceUnavailable, match="apt-get install redis-server"):
        services.start_redis(tmp_path / "redis")


def test_dvc_runs_without_update_checks_or_analytics(
    tmp_path: Path, dvc_env: dict[str, str], dvc_state: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=repo, check=True, env=dvc_env)
    shown = subprocess.run(
        ["dvc", "config", "core.check_update"],
        cwd=repo,
        env=dvc_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "false"
    doctor = subprocess.run(
        ["dvc", "doctor"], cwd=repo, env=dvc_env, capture_output=True, text=True, check=True
    )
    assert str(dvc_state / "site-cache") in doctor.stdout


def test_private_postgres_can_be_started_and_stopped(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The path CI takes on a machine where PostgreSQL is installed but not running.
    url, managed = services.start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        assert services.postgres_alive(url)
    finally:
        managed.stop()
    assert not services.postgres_alive(url)
