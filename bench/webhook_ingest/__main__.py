"""Webhook ingest benchmark: `.venv/bin/python -m bench.webhook_ingest [--duration 10]`.

Runs, against gunicorn with dshub's own settings (deploy/gunicorn.conf.py) and a real Redis:

1. saturating load with `wrk` (one thread, fixed connections) on the real receiver with a
   realistic push payload (GitLab's documented example, fresh Idempotency-Key per request,
   500 projects), alternating with the same against the anchor, `anchor.py` (a Flask view
   that checks the token, parses the JSON, `Queue.enqueue`s an RQ job and answers 202, same
   gunicorn settings), `--repeat` times at each of `--connections 16,64`: events/s,
   p50/p99, wrk's CPU share of the machine, the gunicorn workers' CPU time per request and
   cores used, and the machine's load average, so a reader can tell a server-bound run from
   a starved one; medians and the ratio per pair. With `--decompose` a third server,
   `no_journal.py`, runs dshub's request path with the journal and hand-over replaced by an
   instant acknowledgement. The journal's directory must be on a disk (not tmpfs: checked);
   the time of 200 fsyncs of 4 KiB there is reported;
2. a fixed 300 events/s open-loop load from a small Python generator (latency is measured
   from each request's scheduled send time, so a stall is not hidden): p50/p99;
3. the RSS of every gunicorn worker after the runs, and how many events shared each journal
   transaction (rows per distinct `received_at`: one per group commit).

Needs `wrk` (Debian package `wrk`) and `redis-server`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.paths import WEBHOOK_FIXTURES
from tests.support.services import free_port, start_redis, wait_until

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOKEN = "bench-webhook-secret"  # noqa: S105 - a throwaway secret for a loopback benchmark
FIXTURE = WEBHOOK_FIXTURES / "push.json"


@dataclass
class WrkResult:
    """What one wrk run measured (and what the server and machine did meanwhile)."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    cpu_share: float
    server_cpu_ms: float = 0.0  # gunicorn workers' user+system CPU per request
    server_cores: float = 0.0  # ... per second of the run
    load_avg: float = 0.0  # 1-minute load average at the end of the run


def push_template(path: Path) -> Path:
    """GitLab's push example with the project id replaced by a placeholder wrk fills in."""
    payload: dict[str, Any] = (
        json.loads(FIXTURE.read_text()) if FIXTURE.exists() else _synthetic_push()
    )
    payload["project_id"] = -424242
    payload["project"]["id"] = -424242
    text = json.dumps(payload).replace("-424242", "__PROJECT__")
    path.write_text(text)
    return path


def _synthetic_push() -> dict[str, Any]:
    commit = {
        "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "message": "Update data pointer",
        "timestamp": "2026-01-01T00:00:00Z",
        "url": "http://gitlab.example/c",
        "author": {"name": "A", "email": "a@example.com"},
        "added": [],
        "modified": ["data.csv.dvc"],
        "removed": [],
    }
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "ref": "refs/heads/main",
        "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "project_id": 1,
        "project": {"id": 1, "path_with_namespace": "g/p"},
        "commits": [commit] * 3,
        "total_commits_count": 3,
    }


def start_gunicorn(
    workdir: Path, env: dict[str, str], app: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn with deploy/gunicorn.conf.py; `app` overrides the WSGI app (the bare baseline)."""
    port = free_port()
    full = dict(os.environ)
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full.update(env, DSHUB_BIND=f"127.0.0.1:{port}")
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    if app:
        argv.append(app)
    log = (workdir / f"gunicorn-{port}.log").open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(url), 60, "gunicorn")
    return process, url


def _up(url: str) -> bool:
    response = requests.post(url + "/webhooks/gitlab", data=b"{}", timeout=1)
    return response.status_code < 500


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds used so far by these processes (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn workers (children of the master)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(child) for child in children]


def measured_wrk(
    master_pid: int, url: str, body: Path, duration: int, connections: int
) -> WrkResult:
    """`run_wrk`, plus the workers' CPU per request and the load average."""
    pids = worker_pids(master_pid)
    before = cpu_seconds(pids)
    result = run_wrk(url, body, duration, connections)
    used = cpu_seconds(pids) - before
    result.server_cpu_ms = used / max(result.requests, 1) * 1000
    result.server_cores = used / duration
    result.load_avg = os.getloadavg()[0]
    return result


def run_wrk(
    url: str, body: Path | None, duration: int, connections: int, path: str = "/webhooks/gitlab"
) -> WrkResult:
    """One wrk run; CPU share = wrk's user+system time / (wall time x CPU count).

    With a `body` (a `push_template`), every request is a push delivery (`push.lua`);
    without, plain GETs of `path`.
    """
    env = dict(os.environ, BENCH_PUSH_BODY=str(body), BENCH_TOKEN=TOKEN)
    script = ["-s", str(HERE / "push.lua")] if body is not None else []
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "5s",
        *script,
        url + path,
    ]
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    wall = time.monotonic() - started
    cpu = (usage.ru_utime + usage.ru_stime) / (wall * (os.cpu_count() or 1))
    return WrkResult(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_ms(_find(r"50%\s+([\d.]+\w+)", output)),
        p99_ms=_ms(_find(r"99%\s+([\d.]+\w+)", output)),
        requests=int(_find(r"(\d+) requests in", output)),
        non_2xx=int(_find(r"Non-2xx or 3xx responses: (\d+)", output, "0")),
        cpu_share=cpu,
    )


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match:
        return match.group(1)
    if default is not None:
        return default
    raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def fixed_rate(
    url: str, body: Path, rate: int, duration: int, connections: int = 8
) -> dict[str, float]:
    """Open-loop load at `rate` requests/s over `connections` keep-alive connections."""
    template = body.read_text()
    host, port = url.removeprefix("http://").split(":")
    total = rate * duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    next_index = [0]
    start = time.perf_counter() + 0.5

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= total:
                break
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            payload = template.replace("__PROJECT__", str(index % 500 + 1)).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": "Push Hook",
                "X-Gitlab-Token": TOKEN,
                "Idempotency-Key": f"rate-{index}-{start}",
            }
            try:
                conn.request("POST", "/webhooks/gitlab", body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 202
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            elapsed = time.perf_counter() - scheduled
            with lock:
                latencies.append(elapsed * 1000)
                errors[0] += 0 if ok else 1

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "sent": len(ordered),
        "achieved_rps": len(ordered) / wall,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1],
        "max_ms": ordered[-1],
        "errors": errors[0],
    }


def worker_rss_mb(master_pid: int) -> list[float]:
    """RSS of each gunicorn worker (children of the master), in MB."""
    sizes = []
    for child in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        status = Path(f"/proc/{child}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        sizes.append(kb / 1024)
    return sizes


def fsync_latency(directory: Path, count: int = 200) -> dict[str, object]:
    """The filesystem the journal lives on, and what an fsync of 4 KiB costs there."""
    kind = subprocess.run(
        ["stat", "-f", "-c", "%T", str(directory)], capture_output=True, text=True, check=False
    ).stdout.strip()
    probe = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        probe.unlink()
    ordered = sorted(times)
    return {
        "filesystem": kind,
        "fsyncs": count,
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(count * 0.99) - 1], 3),
    }


def main() -> int:
    """Run everything and print a summary (and a JSON line for docs/benchmarks.md)."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_ingest")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", default="16,64", help="wrk connections, comma-separated")
    parser.add_argument("--rate", type=int, default=300, help="fixed rate, events/s")
    parser.add_argument("--rate-duration", type=int, default=20, help="seconds at fixed rate")
    parser.add_argument("--repeat", type=int, default=3, help="receiver/anchor wrk run pairs")
    parser.add_argument(
        "--decompose", action="store_true", help="also run dshub without its journal"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="where the journal lives")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    connections = [int(part) for part in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="dshub-bench-ingest-", dir=args.work_dir))
    (work / "data").mkdir()
    fsync = fsync_latency(work / "data")
    if fsync["filesystem"] in ("tmpfs", "ramfs"):
        print(
            f"bench: {work} is on {fsync['filesystem']}: pass --work-dir on a disk", file=sys.stderr
        )
        return 2
    redis_url, redis_server = start_redis(work / "redis")
    body = push_template(work / "push.json")
    settings = {
        "DSHUB_WORKERS": os.environ.get("DSHUB_WORKERS", "2"),
        "DSHUB_THREADS": os.environ.get("DSHUB_THREADS", "8"),
    }
    env = {
        **settings,
        "DSHUB_DATA_DIR": str(work / "data"),
        "DSHUB_WEBHOOK_SECRET": TOKEN,
        "DSHUB_REDIS_URL": redis_url + "/0",
        "DSHUB_LOG_LEVEL": "INFO",
    }
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "gunicorn": f"gthread, {settings['DSHUB_WORKERS']} workers x {settings['DSHUB_THREADS']} threads",
        "payload_bytes": len(body.read_text()),
        "load_avg_at_start": round(os.getloadavg()[0], 2),
        "journal_fsync": fsync,
    }
    processes = []
    runs: dict[int, dict[str, list[WrkResult]]] = {}
    try:
        receiver, url = start_gunicorn(work, env)
        processes.append(receiver)
        anchor, anchor_url = start_gunicorn(
            work,
            {**env, "DSHUB_DATA_DIR": str(work / "anchor")},
            "bench.webhook_ingest.anchor:app",
        )
        processes.append(anchor)
        servers = {"dshub": (receiver.pid, url), "anchor": (anchor.pid, anchor_url)}
        if args.decompose:
            no_journal, path_url = start_gunicorn(
                work,
                {**env, "DSHUB_DATA_DIR": str(work / "no-journal")},
                "bench.webhook_ingest.no_journal:app",
            )
            processes.append(no_journal)
            servers["no-journal"] = (no_journal.pid, path_url)
        for _, server_url in servers.values():
            run_wrk(server_url, body, 2, connections[0])  # warm-up
        for count in connections:
            runs[count] = {name: [] for name in servers}
            for _ in range(args.repeat):  # alternate, so a change in machine load hits all
                for name, (pid, server_url) in servers.items():
                    runs[count][name].append(
                        measured_wrk(pid, server_url, body, args.duration, count)
                    )
        rate = fixed_rate(url, body, args.rate, args.rate_duration)
        rss = worker_rss_mb(receiver.pid)
        import redis

        queued = redis.Redis.from_url(redis_url + "/0").llen("rq:queue:dshub")
        results.update(
            runs={
                str(count): {name: [vars(item) for item in items] for name, items in by.items()}
                for count, by in runs.items()
            },
            ratios={
                str(count): [
                    round(i.rps / a.rps, 3) for i, a in zip(by["dshub"], by["anchor"], strict=True)
                ]
                for count, by in runs.items()
            },
            fixed_rate=rate,
            worker_rss_mb=[round(size, 1) for size in rss],
            rq_jobs_queued=queued,
            events_per_journal_commit=round(events_per_commit(work / "data"), 1),
        )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        redis_server.stop()
    report(results, runs=runs, rate=rate, target_rate=args.rate)
    print(json.dumps(results))
    return 0


def report(
    results: dict[str, Any],
    *,
    runs: dict[int, dict[str, list[WrkResult]]],
    rate: dict[str, float],
    target_rate: int,
) -> None:
    """Print the human-readable summary of one invocation."""
    fsync = results["journal_fsync"]
    print(
        f"machine: {results['machine']}; {results['gunicorn']}; push payload {results['payload_bytes']} B; "
        f"load average at start {results['load_avg_at_start']}; journal on {fsync['filesystem']}, "
        f"fsync of 4 KiB p50 {fsync['p50_ms']} ms p99 {fsync['p99_ms']} ms ({fsync['fsyncs']} fsyncs)"
    )
    for count, by in runs.items():
        print(f"{count} connections:")
        for number in range(len(by["dshub"])):
            for name, items in by.items():
                run = items[number]
                print(
                    f"  {number + 1} {name:10}: {run.rps:6.0f}/s  p50 {run.p50_ms:6.2f} ms  "
                    f"p99 {run.p99_ms:6.2f} ms  non-2xx {run.non_2xx}  server CPU "
                    f"{run.server_cpu_ms:.3f} ms/req on {run.server_cores:.2f} cores  "
                    f"wrk CPU {run.cpu_share:.0%}  load {run.load_avg:.1f}"
                )
        ratios = [i.rps / a.rps for i, a in zip(by["dshub"], by["anchor"], strict=True)]
        medians = {name: statistics.median(r.rps for r in items) for name, items in by.items()}
        p99 = {name: statistics.median(r.p99_ms for r in items) for name, items in by.items()}
        print(
            f"  median: dshub {medians['dshub']:.0f}/s (p99 {p99['dshub']:.1f} ms), anchor "
            f"{medians['anchor']:.0f}/s (p99 {p99['anchor']:.1f} ms); ratio per pair "
            f"{', '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}x "
            "(target >= 1.0)"
        )
    print(
        f"{target_rate}/s  : achieved {rate['achieved_rps']:.0f}/s  p50 {rate['p50_ms']:.2f} ms  "
        f"p99 {rate['p99_ms']:.2f} ms  max {rate['max_ms']:.1f} ms  errors {rate['errors']:.0f} (target p99 <= 20 ms)"
    )
    print(f"RSS    : gunicorn workers {results['worker_rss_mb']} MB (budget < 250 MB)")
    print(f"RQ     : {results['rq_jobs_queued']} jobs queued (coalesced per project/ref)")
    print(f"journal: {results['events_per_journal_commit']} events per fsync'd commit (mean)")


def _span(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def events_per_commit(data_dir: Path) -> float:
    """Journal rows per group commit: every row of one `append_many` shares its `received_at`."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(data_dir / "journal.sqlite3")) as conn:
        rows, commits = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT received_at) FROM deliveries"
        ).fetchone()
    return float(rows) / max(int(commits), 1)


if __name__ == "__main__":
    sys.exit(main())
