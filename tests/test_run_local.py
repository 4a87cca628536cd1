"""`make run`'s script on a fresh data directory: sandbox, dshub, and a searchable demo dataset."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import requests

from tests.support.services import ServiceUnavailable, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_first_run_serves_a_searchable_demo_dataset(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DSHUB_") or key.startswith("DSHUB_TEST_")
    }
    env.update(
        DSHUB_DATA_DIR=str(tmp_path / "var"),
        DSHUB_BIND=f"127.0.0.1:{port}",
        DSHUB_SANDBOX_PORT=str(sandbox_port),
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [str(ROOT / "deploy" / "run-local.sh")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: requests.get(f"{base}/healthz", timeout=1).ok, 120, "dshub")
        except ServiceUnavailable as exc:
            log.flush()
            tail = (tmp_path / "run.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}; make run printed:\n{tail}") from exc

        def indexed() -> bool:
            answer = requests.get(f"{base}/api/v1/datasets/1/versions", timeout=2)
            return answer.ok and len(answer.json()["items"]) == 2

        wait_until(indexed, 120, "the demo dataset's two versions")
        found = requests.get(f"{base}/api/v1/datasets", params={"q": "cats"}, timeout=5).json()
        assert [item["path_with_namespace"] for item in found["items"]] == ["demo/cats"]
        versions = requests.get(f"{base}/api/v1/datasets/1/versions", timeout=5).json()["items"]
        assert [(v["name"], v["file_count"]) for v in versions] == [("v0.2.0", 6), ("v0.1.0", 5)]
        output = (tmp_path / "run.log").read_text()
        assert f"dshub:           http://127.0.0.1:{port}" in output
        assert f"GitLab sandbox:  http://127.0.0.1:{sandbox_port}" in output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
