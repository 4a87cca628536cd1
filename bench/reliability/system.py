"""The whole dshub system on loopback, started by the harness and owned by it.

gunicorn (deploy/gunicorn.conf.py) + `dshub worker` processes + a private Redis + a private
PostgreSQL + moto's S3 server + the GitLab sandbox in a subprocess. Redis, PostgreSQL and S3
sit behind a `FaultProxy` each, so dshub only ever knows the proxies' addresses and the
harness can refuse, delay, cut or answer 503 in between — and restart the servers behind
them. Nothing here touches a server the harness did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import psutil
import redis
import requests

from bench.reliability.proxy import FaultProxy
from indexer.data.storage import StorageSite
from indexer.ingest.queue import QUEUE_NAME
from indexer.sites.registry import SiteRecord, SiteRegistry, validated
from tests.gitlab_sandbox.fixtures import SandboxProcess, run_sandbox_subprocess
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn
from tests.support import services
from tests.support.services import ManagedProcess, postgres_alive, wait_until

SECRET = "reliability-webhook-secret"  # noqa: S105 - a throwaway secret on loopback
SITE = "moto"
SITE_PREFIX = "soak"
RESTART_SEC = 2.0  # deploy/systemd/dshub-worker@.service: Restart=on-failure, RestartSec=2s


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@dataclass
class System:
    """Every process of one run; `start()` builds it, `stop()` takes it all down."""

    work: Path
    web_workers: int = 2
    rq_workers: int = 2
    redis_server: ManagedProcess | None = None
    redis_proxy: FaultProxy | None = None
    postgres_server: ManagedProcess | None = None
    postgres_proxy: FaultProxy | None = None
    postgres_admin_url: str = ""
    moto_server: ManagedProcess | None = None
    s3_proxy: FaultProxy | None = None
    s3_endpoint: str = ""  # moto itself, for the checks (never through the proxy)
    bucket: str = ""
    sandbox: SandboxProcess | None = None
    gunicorn: Gunicorn | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    index_url: str = ""  # through the proxy (dshub's)
    index_direct_url: str = ""  # straight to PostgreSQL (the checks')
    worker_restarts: list[str] = field(default_factory=list)  # what the supervisor did
    _supervising: threading.Event = field(default_factory=threading.Event)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # ------------------------------------------------------------------ start and stop

    def start(self) -> System:
        """Start every service, register the S3 site and the system hook."""
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self._start_backends()
            self._start_dshub()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_backends(self) -> None:
        redis_url, self.redis_server = services.start_redis(self.work / "redis")
        self.redis_proxy = FaultProxy("127.0.0.1", _port_of(redis_url)).start()
        admin_url, self.postgres_server = services.start_postgres(self.work / "postgres")
        self.postgres_admin_url = admin_url
        pg_port = _port_of(admin_url.rsplit("/", 1)[0])
        self.postgres_proxy = FaultProxy("127.0.0.1", pg_port).start()
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "dshub"')
        self.index_direct_url = f"postgresql://postgres@127.0.0.1:{pg_port}/dshub"
        self.index_url = f"postgresql://postgres@{self.postgres_proxy.address}/dshub"
        self.s3_endpoint, self.moto_server = services.start_moto(self.work / "moto")
        self.s3_proxy = FaultProxy("127.0.0.1", _port_of(self.s3_endpoint)).start()
        self.bucket = f"soak-{uuid.uuid4().hex[:10]}"
        self.s3().create_bucket(Bucket=self.bucket)
        token = f"glpat-{secrets.token_urlsafe(20)}"
        self.sandbox = run_sandbox_subprocess(self.work / "gitlab", token)

    def _start_dshub(self) -> None:
        assert self.sandbox is not None and self.redis_proxy is not None
        keys = {
            "access_key_id": services.S3_ACCESS_KEY,
            "secret_access_key": services.S3_SECRET_KEY,
        }
        credentials = self.work / "credentials.json"
        credentials.write_text(json.dumps({"rw": keys, "ro": keys}))
        data = self.work / "data"
        data.mkdir(exist_ok=True)
        self.env = {
            "DSHUB_DATA_DIR": str(data),
            "DSHUB_INDEX_URL": self.index_url,
            "DSHUB_REDIS_URL": f"redis://{self.redis_proxy.address}/0",
            "DSHUB_GITLAB_URL": self.sandbox.url,
            "DSHUB_GITLAB_TOKEN": self.sandbox.admin_token,
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_STORAGE_CREDENTIALS_FILE": str(credentials),
            "DSHUB_RECONCILE_INTERVAL": "0",  # the harness reconciles when it checks
            "DSHUB_LOG_LEVEL": "WARNING",
            "DVC_NO_ANALYTICS": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        site = StorageSite(
            name=SITE,
            kind="s3",
            bucket=self.bucket,
            prefix=SITE_PREFIX,
            endpoint_url=f"http://{self.s3_proxy_address}",
            region=services.S3_REGION,
            access_mode="proxy",
            credentials_ref="rw",
        )
        SiteRegistry(self.index_direct_url).save(validated(SiteRecord(site, "ro")))
        self.gunicorn = start_gunicorn(self.work / "gunicorn", self.env, workers=self.web_workers)
        for _ in range(self.rq_workers):
            self.workers.append(self.start_rq_worker())
        self._supervising.set()
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()
        installed = self.dshub(
            "hooks", "install", "--system", "--url", f"{self.gunicorn.url}/webhooks/gitlab"
        )
        if installed.returncode != 0:
            raise RuntimeError(f"dshub hooks install failed: {installed.stderr.strip()}")

    @property
    def s3_proxy_address(self) -> str:
        assert self.s3_proxy is not None
        return self.s3_proxy.address

    def _supervise(self) -> None:
        """Restart a `dshub worker` that exited, after RESTART_SEC, as its systemd unit (or
        compose's `restart: unless-stopped`) does in a deployment."""
        while self._supervising.is_set():
            for number, worker in enumerate(list(self.workers)):
                if worker.poll() is None:
                    continue
                time.sleep(RESTART_SEC)
                if not self._supervising.is_set():
                    return
                self.worker_restarts.append(f"worker exited with {worker.returncode}")
                self.workers[number] = self.start_rq_worker()
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop everything this run started (each at most once)."""
        self._supervising.clear()
        for worker in self.workers:
            _kill_group(worker)
        self.workers.clear()
        if self.gunicorn is not None:
            self.gunicorn.stop()
            self.gunicorn = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        for proxy in (self.redis_proxy, self.postgres_proxy, self.s3_proxy):
            if proxy is not None:
                proxy.close()
        for server in (self.moto_server, self.postgres_server, self.redis_server):
            if server is not None:
                server.stop()
        self.moto_server = self.postgres_server = self.redis_server = None

    # ------------------------------------------------------------------ clients

    def gitlab(self) -> gitlab.Gitlab:
        """python-gitlab as the sandbox's admin."""
        assert self.sandbox is not None
        return gitlab.Gitlab(self.sandbox.url, private_token=self.sandbox.admin_token, timeout=60)

    def s3(self) -> Any:
        """boto3 straight to moto (never through the proxy)."""
        return services.moto_client(self.s3_endpoint)

    def redis(self) -> redis.Redis:
        """Straight to the current Redis server (not through the proxy)."""
        assert self.redis_proxy is not None
        return redis.Redis(
            host="127.0.0.1",
            port=self.redis_proxy.upstream_port,
            socket_timeout=2,
            socket_connect_timeout=2,
        )

    def queue_length(self) -> int | None:
        """Jobs waiting in dshub's RQ queue now (None when Redis does not answer)."""
        try:
            return int(self.redis().llen(f"rq:queue:{QUEUE_NAME}"))
        except (redis.RedisError, OSError):
            return None

    def journal_backlog(self) -> int | None:
        """`dshub_journal_backlog` from /metrics (None when it cannot be read)."""
        assert self.gunicorn is not None
        try:
            text = requests.get(f"{self.gunicorn.url}/metrics", timeout=5).text
        except requests.RequestException:
            return None
        for line in text.splitlines():
            if line.startswith("dshub_journal_backlog"):
                return int(float(line.split()[-1]))
        return None

    def sandbox_faults(self, body: dict[str, Any] | None) -> None:
        """Set the sandbox's fault knobs (`None`: reset them all)."""
        assert self.sandbox is not None
        headers = {"PRIVATE-TOKEN": self.sandbox.admin_token}
        url = f"{self.sandbox.url}/-/sandbox/faults"
        if body is None:
            answer = requests.delete(url, headers=headers, timeout=10)
        else:
            answer = requests.post(url, json=body, headers=headers, timeout=10)
        answer.raise_for_status()

    def delivery_count(self) -> int:
        """Webhook deliveries the sandbox has attempted so far."""
        assert self.sandbox is not None
        headers = {"PRIVATE-TOKEN": self.sandbox.admin_token}
        answer = requests.get(
            f"{self.sandbox.url}/-/sandbox/deliveries", headers=headers, timeout=30
        )
        answer.raise_for_status()
        return len(answer.json())

    def dshub(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the `dshub` CLI with the system's settings."""
        return subprocess.run(
            [sys.executable, "-m", "dshub", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # ------------------------------------------------------------------ processes

    def start_rq_worker(self) -> subprocess.Popen[bytes]:
        """A new `dshub worker` (own process group: its work horses die with it)."""
        log = (self.work / f"worker-{time.time_ns()}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "dshub", "worker"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return process

    def process_table(self) -> dict[str, int]:
        """name → pid of every dshub process whose RSS the soak samples."""
        assert self.gunicorn is not None
        table = {"gunicorn-master": self.gunicorn.process.pid}
        with contextlib.suppress(psutil.Error):
            for number, child in enumerate(psutil.Process(self.gunicorn.process.pid).children()):
                table[f"gunicorn-worker-{number}"] = child.pid
        for number, worker in enumerate(self.workers):
            if worker.poll() is None:
                table[f"rq-worker-{number}"] = worker.pid
        return table

    def web_worker_pids(self) -> list[int]:
        """The gunicorn workers now."""
        assert self.gunicorn is not None
        return [child.pid for child in psutil.Process(self.gunicorn.process.pid).children()]

    def web_worker_serving(self, client_port: int) -> int | None:
        """The gunicorn worker holding the connection from local port `client_port`."""
        for pid in self.web_worker_pids():
            with contextlib.suppress(psutil.Error):
                for conn in psutil.Process(pid).net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == client_port:
                        return pid
        return None

    def kill_rq_worker_mid_job(self, timeout: float = 30) -> bool:
        """SIGKILL a `dshub worker` (and its work horse) while it runs a job (the supervisor
        starts another). False when no job was seen running in time (one is killed idle)."""
        deadline = time.monotonic() + timeout
        victim: subprocess.Popen[bytes] | None = None
        while time.monotonic() < deadline and victim is None:
            for worker in self.workers:
                with contextlib.suppress(psutil.Error):
                    if worker.poll() is None and psutil.Process(worker.pid).children():
                        victim = worker  # a forked work horse: a job is running
                        break
            time.sleep(0.01)
        mid_job = victim is not None
        if victim is None:
            victim = self.workers[0]
        _kill_group(victim, signal.SIGKILL)
        return mid_job

    def restart_redis(self, down_seconds: float) -> None:
        """Stop Redis (its memory is lost: no persistence), wait, start a new one behind the
        same proxy address."""
        assert self.redis_server is not None and self.redis_proxy is not None
        self.redis_server.stop()
        self.redis_proxy.cut()
        time.sleep(down_seconds)
        url, self.redis_server = services.start_redis(self.work / f"redis-{time.time_ns()}")
        self.redis_proxy.retarget("127.0.0.1", _port_of(url))

    def restart_postgres(self, down_seconds: float) -> None:
        """Fast shutdown of PostgreSQL (SIGINT to the postmaster), wait, start the same
        cluster again on the same port."""
        assert self.postgres_server is not None and self.postgres_proxy is not None
        launcher = self.postgres_server.process
        postmaster = _postmaster(launcher)
        os.kill(postmaster, signal.SIGINT)
        launcher.wait(timeout=60)
        self.postgres_proxy.cut()
        time.sleep(down_seconds)
        with self.postgres_server.log_path.open("ab") as log:
            self.postgres_server.process = subprocess.Popen(
                launcher.args, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(lambda: postgres_alive(self.postgres_admin_url), 60, "PostgreSQL (restart)")


def _postmaster(launcher: subprocess.Popen[bytes]) -> int:
    """The postgres postmaster's pid (the launcher may be `runuser`, when run as root)."""
    process = psutil.Process(launcher.pid)
    if process.name() == "postgres":
        return launcher.pid
    for child in process.children():
        if child.name() == "postgres":
            return int(child.pid)
    raise RuntimeError("no postgres process under the launcher")


def _kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
