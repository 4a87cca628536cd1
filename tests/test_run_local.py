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

        def seeded() -> bool:
            log.flush()
            return "Press Ctrl-C to stop." in (tmp_path / "run.log").read_text(errors="replace")

        wait_until(seeded, 120, "the end of the demo seed")
        found = requests.get(f"{base}/api/v1/datasets", params={"q": "cats"}, timeout=5).json()
        assert [item["path_with_namespace"] for item in found["items"]] == ["demo/cats"]
        versions = requests.get(f"{base}/api/v1/datasets/1/versions", timeout=5).json()["items"]
        assert [(v["name"], v["file_count"]) for v in versions] == [("v0.2.0", 6), ("v0.1.0", 5)]
        # Made as alice through dshub's API: her name on the versions, her notes.
        assert {v["author"]["username"] for v in versions} == {"alice"}
        assert versions[0]["release_notes"] == "Five cats (cat4 added)"
        tokens = tmp_path / "var" / "tokens"
        assert (tokens / "alice").stat().st_mode & 0o777 == 0o600

        def paths(who: str | None) -> list[str]:
            headers = {"PRIVATE-TOKEN": (tokens / who).read_text().strip()} if who else {}
            listing = requests.get(f"{base}/api/v1/datasets", headers=headers, timeout=5)
            return sorted(item["path_with_namespace"] for item in listing.json()["items"])

        assert paths("alice") == ["demo/cats", "demo/cells", "lab/scans"]
        assert paths("bob") == paths(None) == ["demo/cats", "demo/cells"]
        cells = next(
            item
            for item in requests.get(
                f"{base}/api/v1/datasets", params={"q": "cells"}, timeout=5
            ).json()["items"]
        )
        tree = requests.get(
            f"{base}/api/v1/datasets/{cells['id']}/tree", params={"path": "cells"}, timeout=5
        ).json()
        assert len(tree["items"]) == 6 and all(i["source"] == "dvc" for i in tree["items"])
        output = (tmp_path / "run.log").read_text()
        assert "alice owns demo and lab: token in" in output
        assert (tokens / "alice").read_text().strip() not in output
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
