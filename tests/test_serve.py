"""The service boots under gunicorn and answers /healthz; bad configuration stops it clearly."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from dshub.config import ConfigError
from tests.receiver.serving import start_gunicorn
from tests.support.services import free_port, wait_until
from webhook_service import create_app

ROOT = Path(__file__).resolve().parents[1]


def test_healthz_from_the_app_factory(tmp_path: Path) -> None:
    app = create_app({"DSHUB_DATA_DIR": str(tmp_path)})
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_unknown_route_is_a_json_404(tmp_path: Path) -> None:
    app = create_app({"DSHUB_DATA_DIR": str(tmp_path)})
    response = app.test_client().get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_factory_refuses_bad_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError):
        create_app({"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_DOWNLOAD_MODE": "x"})
    assert "DSHUB_DOWNLOAD_MODE" in capsys.readouterr().err


def test_gunicorn_serves_healthz(tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        os.environ, DSHUB_DATA_DIR=str(tmp_path), DSHUB_BIND=f"127.0.0.1:{port}", DSHUB_WORKERS="1"
    )
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: requests.get(url, timeout=1).status_code == 200, 30, "gunicorn")
        assert requests.get(url, timeout=2).json()["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
    # A graceful stop logs cleanly: gunicorn's own formats (e.g. %(process)d) still work with
    # dshub's logging set up in the same process.
    text = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert "Shutting down" in text or "Worker exiting" in text
    assert "Logging error" not in text and "Traceback" not in text


def test_the_access_log_escapes_control_characters_of_the_path(tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path / "g", {"DSHUB_DATA_DIR": str(tmp_path / "data")}, workers=1)
    try:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        # A forged second log line and a NUL byte, percent-encoded in the path.
        connection.request("GET", "/nope%0A127.0.0.1%20%22GET%20/forged%22%20200%00x")
        assert connection.getresponse().status == 404
        connection.close()
    finally:
        server.stop()
    raw = server.log.read_bytes()
    assert b"\x00" not in raw
    lines = raw.decode().splitlines()
    logged = [line for line in lines if "/nope" in line]
    assert len(logged) == 1, logged
    assert r"/nope\n127.0.0.1" in logged[0] and r"\x00x" in logged[0]
    assert not any("/forged" in line and "/nope" not in line for line in lines)


def test_gunicorn_exits_with_the_configuration_error(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        DSHUB_DATA_DIR=str(tmp_path),
        DSHUB_BIND=f"127.0.0.1:{free_port()}",
        DSHUB_REDIS_URL="http://wrong",
    )
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DSHUB_REDIS_URL: must start with redis://" in result.stderr


def test_cli_config_check_reports_errors(tmp_path: Path) -> None:
    env = dict(os.environ, DSHUB_DATA_DIR=str(tmp_path), DSHUB_MR_NOTES="maybe")
    result = subprocess.run(
        [sys.executable, "-m", "dshub", "config", "check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dshub: configuration error: DSHUB_MR_NOTES: must be one of 1/0, true/false, yes/no, "
        "on/off (got 'maybe')"
    ]


def test_an_unreachable_index_does_not_stop_the_service(tmp_path: Path) -> None:
    from tests.support.services import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app({"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_INDEX_URL": url})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "index" in ready.get_data(as_text=True)


def test_embedded_worker_drains_the_journal_left_by_a_previous_process(
    tmp_path: Path, gitlab_sandbox: Any
) -> None:
    from indexer.ingest import routing
    from indexer.ingest.journal import Journal
    from tests.support.services import wait_until

    journal = Journal.in_directory(tmp_path)
    journal.append(
        "before-restart", "member", None, [routing.invalidate_permissions_job()], claim=False
    )
    journal.close()
    app = create_app(
        {
            "DSHUB_DATA_DIR": str(tmp_path),
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
            "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
            "DSHUB_RECONCILE_INTERVAL": "0",
        }
    )
    generation = tmp_path / "permissions-generation"
    assert not generation.exists()
    # No webhook arrives: any request (a health probe) starts the in-process worker.
    assert app.test_client().get("/healthz").status_code == 200
    wait_until(lambda: generation.exists() and generation.read_text() == "1", 20, "the job")
