"""Scale-out benchmark: `.venv/bin/python -m bench.scale_out [--duration 5] [--repeat 3]`.

Two dshub web processes (gunicorn with deploy/gunicorn.conf.py, one worker process each,
each with its own data directory and journal) on one PostgreSQL index and one Redis, as in
tests/deploy/test_scale_out.py. The index holds a search corpus (`bench.search`'s datasets
and files, `--datasets` x `--files-per-dataset`). Alternating in the same run, `--repeat`
times:

- ingest: `wrk` with GitLab push deliveries (`bench.webhook_ingest`'s payload and script)
  against web A alone, then against A and B at once (one wrk each, half the connections);
- search: `wrk` GETs of `/api/v1/datasets?q=retina` (anonymous: public datasets) the same way.

Prints events/s and searches/s for one and for two web processes, the ratio two/one, and
the load average (the machine may be shared: a ratio near 1 on a 2-core machine means the
CPU, not dshub, is the limit). Needs `wrk` and `redis-server`; PostgreSQL is found or started
as for the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.index_manifest.postgres import postgres_database
from bench.search.__main__ import load
from bench.webhook_ingest.__main__ import TOKEN, WrkResult, push_template, run_wrk, start_gunicorn
from indexer.store import open_index
from tests.support.services import start_redis

SEARCH_PATH = "/api/v1/datasets?q=retina"
INGEST_PATH = "/webhooks/gitlab"


def one_and_two(
    urls: list[str], body: Path | None, duration: int, connections: int, path: str
) -> tuple[WrkResult, list[WrkResult]]:
    """wrk against the first web process alone, then against both at once (half each)."""
    alone = run_wrk(urls[0], body, duration, connections, path)
    half = max(connections // 2, 1)
    with ThreadPoolExecutor(len(urls)) as pool:
        both = list(pool.map(lambda url: run_wrk(url, body, duration, half, path), urls))
    return alone, both


def main() -> int:
    """Run the alternation and print the figures (and one JSON line)."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections in total")
    parser.add_argument("--repeat", type=int, default=3, help="one-vs-two rounds")
    parser.add_argument("--datasets", type=int, default=2000)
    parser.add_argument("--files-per-dataset", type=int, default=20)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dshub-bench-scale-out-"))
    body = push_template(work / "push.json")
    rounds: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        redis_url, redis_server = start_redis(work / "redis")
        stack.callback(redis_server.stop)
        index_url = stack.enter_context(postgres_database(work))
        with open_index(index_url) as store:
            load(store, index_url, args.datasets, args.files_per_dataset)
        urls = []
        for name in ("web-a", "web-b"):
            process, url = start_gunicorn(
                work,
                {
                    "DSHUB_WORKERS": "1",
                    "DSHUB_THREADS": os.environ.get("DSHUB_THREADS", "8"),
                    "DSHUB_DATA_DIR": str(work / name),
                    "DSHUB_INDEX_URL": index_url,
                    "DSHUB_REDIS_URL": redis_url + "/0",
                    "DSHUB_WEBHOOK_SECRET": TOKEN,
                    "DSHUB_RECONCILE_INTERVAL": "0",
                    "DSHUB_LOG_LEVEL": "WARNING",
                },
            )
            stack.callback(process.wait, 30)
            stack.callback(process.terminate)
            urls.append(url)
        for url in urls:  # warm-up
            run_wrk(url, body, 1, 4)
            run_wrk(url, None, 1, 4, SEARCH_PATH)
        load_start = os.getloadavg()[0]
        for _ in range(args.repeat):
            ingest_one, ingest_two = one_and_two(
                urls, body, args.duration, args.connections, INGEST_PATH
            )
            search_one, search_two = one_and_two(
                urls, None, args.duration, args.connections, SEARCH_PATH
            )
            errors = sum(r.non_2xx for r in (ingest_one, search_one, *ingest_two, *search_two))
            rounds.append(
                {
                    "ingest_one": ingest_one.rps,
                    "ingest_two": sum(r.rps for r in ingest_two),
                    "search_one": search_one.rps,
                    "search_two": sum(r.rps for r in search_two),
                    "non_2xx": errors,
                    "load_avg": os.getloadavg()[0],
                }
            )
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"gunicorn gthread, 1 worker x {os.environ.get('DSHUB_THREADS', '8')} threads per web "
        f"process; {args.datasets} datasets x {args.files_per_dataset} files on PostgreSQL; "
        f"load average at start {load_start:.2f}"
    )
    for number, item in enumerate(rounds, 1):
        print(
            f"round {number}: ingest {item['ingest_one']:6.0f} -> {item['ingest_two']:6.0f} events/s "
            f"({item['ingest_two'] / item['ingest_one']:.2f}x)  search {item['search_one']:6.0f} -> "
            f"{item['search_two']:6.0f} searches/s ({item['search_two'] / item['search_one']:.2f}x)  "
            f"non-2xx {item['non_2xx']:.0f}  load {item['load_avg']:.1f}"
        )
    print(json.dumps({"rounds": rounds, "load_avg_at_start": load_start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
