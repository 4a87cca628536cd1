"""Running the service under gunicorn for the integration tests (as `dshub serve` does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.services import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Gunicorn:
    """A gunicorn master (own process group) serving the app at `url`."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, as a crash or OOM kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), killing whatever is left after the grace period."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.kill()


def start_gunicorn(
    workdir: Path, env: dict[str, str], workers: int = 2, port: int | None = None
) -> Gunicorn:
    """Start gunicorn with dshub's config on `port` (default: a free loopback port) and wait
    for /healthz."""
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full_env.update(env)
    full_env.update(DSHUB_BIND=f"127.0.0.1:{port}", DSHUB_WORKERS=str(workers))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"gunicorn-{port}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
            cwd=ROOT,
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until(
            lambda: requests.get(f"{server.url}/healthz", timeout=1).status_code == 200,
            60,
            "gunicorn",
        )
    except Exception:
        server.kill()
        raise
    return server


def dshub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `dshub` CLI with `env` on top of the process environment."""
    return subprocess.run(
        [sys.executable, "-m", "dshub", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def work_until(env: dict[str, str], done: Callable[[], bool], timeout: float = 60.0) -> None:
    """Run `dshub worker --burst` until `done()`: the receiver may hand events to RQ a moment
    after its 202 (from its journal), so one burst can find the queue still empty."""
    deadline = time.monotonic() + timeout
    while True:
        result = dshub(env, "worker", "--burst", "--no-drain")
        assert result.returncode == 0, result.stdout + result.stderr
        if done():
            return
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not reach the expected state in time")
        time.sleep(0.2)
