"""Search latency with the permission filter on: `.venv/bin/python -m bench.search`.

Options: `--datasets 10000 --files-per-dataset 100` (defaults: 1,000,000 files),
`--backend sqlite|postgres|both` (default both), `--rounds 10`.

Builds an index per backend (datasets through `IndexStore.upsert_dataset`; files, refs and
their search indexes bulk-loaded: one executemany transaction on SQLite, COPY on PostgreSQL),
then runs a query mix through `indexer.read.search` as three viewers:

- anonymous (public datasets only),
- a user who can read 2,000 private datasets (plus public and internal),
- an admin (no permission filter): the baseline, measured in the same run.

The mix includes a dataset term in 10% of datasets and a file term in 10% of files. Prints
p50/p95 per viewer and backend, the ratio to the admin baseline, and the slowest queries.
Target: p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.index_manifest.postgres import postgres_database
from indexer.read.search import Viewer, search_datasets, search_files
from indexer.store import Dataset, IndexStore, open_index

TARGET_P95_MS = 50.0
CLASSES = [f"class{n:02d}" for n in range(49)] + ["dog"]
TOPICS = [
    "vision",
    "medical",
    "satellite",
    "agri",
    "retail",
    "traffic",
    "faces",
    "text",
    "audio",
    "video",
]
WORDS = [
    "cohort",
    "annotated",
    "curated",
    "lab",
    "field",
    "camera",
    "survey",
    "archive",
    "pilot",
    "sample",
]
EXTENSIONS = [("jpg", "image/jpeg"), ("png", "image/png"), ("tif", "image/tiff")]


def visibility_of(project_id: int) -> str:
    """40% public, 20% internal, 40% private."""
    slot = project_id % 10
    return "public" if slot < 4 else "internal" if slot < 6 else "private"


def dataset_of(project_id: int) -> Dataset:
    words = [WORDS[project_id % 10], WORDS[(project_id // 10) % 10]]
    if project_id % 10 == 3 or project_id % 10 == 7:  # 20% ... keep 10% below
        words.append("scans")
    if project_id % 10 == 1:
        words.append("retina")  # 10% of datasets
    if project_id % 100 == 42:
        words.append("neuroimaging")  # 1%
    return Dataset(
        project_id=project_id,
        name=f"{WORDS[project_id % 7].title()} set {project_id}",
        path_with_namespace=f"group{project_id % 200}/set-{project_id}",
        namespace=f"group{project_id % 200}",
        visibility=visibility_of(project_id),
        description=" ".join(words),
        topics=(TOPICS[project_id % 10], TOPICS[(project_id // 10) % 10]),
        default_branch="main",
        web_url=f"http://gitlab.test/group{project_id % 200}/set-{project_id}",
        last_activity_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=project_id),
    )


def file_rows(datasets: int, per_dataset: int) -> Iterator[tuple[Any, ...]]:
    """(project_id, ref, path, md5, hash_name, size, media_type, pointer_path, commit, in_dir, status, note)."""
    commit = "a" * 40
    for project_id in range(1, datasets + 1):
        for j in range(per_dataset):
            kind = "scan" if j % 10 == 0 else "img"  # 10% of files contain "scan"
            ext, media = EXTENSIONS[j % 3]
            path = f"images/{CLASSES[(project_id + j) % 50]}/{kind}_{project_id:05d}_{j:03d}.{ext}"
            yield (
                project_id,
                "main",
                path,
                f"{project_id:016x}{j:016x}",
                "md5",
                1000 + j,
                media,
                "images.dvc",
                commit,
                True,
                "ok",
                None,
            )


def load(store: IndexStore, url: str, datasets: int, per_dataset: int) -> dict[str, float]:
    """Fill the index; returns timings of each step."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for project_id in range(1, datasets + 1):
        store.upsert_dataset(dataset_of(project_id))
    timings["datasets (upsert_dataset)"] = time.perf_counter() - start
    start = time.perf_counter()
    if url.startswith("sqlite"):
        _bulk_sqlite(url, datasets, per_dataset)
    else:
        _bulk_postgres(url, datasets, per_dataset)
    timings["files (bulk)"] = time.perf_counter() - start
    return timings


REF_TOTALS = (
    "UPDATE refs SET file_count = t.n, total_size = t.s FROM (SELECT project_id AS pid, "
    "count(*) AS n, sum(size) AS s FROM files GROUP BY project_id) AS t WHERE refs.project_id = t.pid"
)
MEDIA_TYPES = (
    "INSERT INTO dataset_media_types (project_id, media_type, file_count) "
    "SELECT project_id, media_type, count(*) FROM files GROUP BY project_id, media_type"
)
FILE_INSERT_COLUMNS = (
    "project_id, ref, path, md5, hash_name, size, media_type, pointer_path, commit_sha, "
    "in_directory, status, note"
)


def _bulk_sqlite(url: str, datasets: int, per_dataset: int) -> None:
    conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute("BEGIN IMMEDIATE")
    now = datetime.now(UTC).isoformat()
    conn.executemany(
        "INSERT INTO refs (project_id, ref, kind, commit_sha, indexed_at) VALUES (?, 'main', 'branch', ?, ?)",
        ((pid, "a" * 40, now) for pid in range(1, datasets + 1)),
    )
    conn.executemany(
        f"INSERT INTO files ({FILE_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        file_rows(datasets, per_dataset),
    )
    conn.execute("INSERT INTO files_fts (rowid, path) SELECT id, path FROM files")
    conn.execute(REF_TOTALS)
    conn.execute(MEDIA_TYPES)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _bulk_postgres(url: str, datasets: int, per_dataset: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # Building the trigram index once is much faster than maintaining it row by row.
        conn.execute("DROP INDEX IF EXISTS files_path_trgm_ci")
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(
                "COPY refs (project_id, ref, kind, commit_sha, indexed_at) FROM STDIN"
            ) as copy:
                now = datetime.now(UTC)
                for pid in range(1, datasets + 1):
                    copy.write_row((pid, "main", "branch", "a" * 40, now))
            with cursor.copy(f"COPY files ({FILE_INSERT_COLUMNS}) FROM STDIN") as copy:
                for row in file_rows(datasets, per_dataset):
                    copy.write_row(row)
            cursor.execute(REF_TOTALS)
            cursor.execute(MEDIA_TYPES)
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(
            'CREATE INDEX files_path_trgm_ci ON files USING GIN ((path COLLATE "default") gin_trgm_ops)'
        )
        conn.execute("VACUUM ANALYZE")


def query_mix(datasets: int) -> list[tuple[str, Callable[[IndexStore, Viewer], object]]]:
    """The queries each viewer runs, named."""
    some = min(4321, datasets)
    return [
        ("datasets q=retina (10%)", lambda s, v: search_datasets(s, v, "retina")),
        ("datasets browse by name", lambda s, v: search_datasets(s, v, None)),
        ("datasets q=neuroimaging (1%)", lambda s, v: search_datasets(s, v, "neuroimaging")),
        (
            "datasets q=cohort topic=medical",
            lambda s, v: search_datasets(s, v, "cohort", topic="medical"),
        ),
        (
            "datasets namespace=group17 updated",
            lambda s, v: search_datasets(s, v, None, namespace="group17", sort="updated"),
        ),
        (
            "datasets media_type=image/png page 5",
            lambda s, v: search_datasets(s, v, None, media_type="image/png", page=5),
        ),
        ("files q=scan (10% of files)", lambda s, v: search_files(s, v, "scan")),
        ("files q=dog (2%)", lambda s, v: search_files(s, v, "dog")),
        (
            "files q=scan_04321_010 (1 file)",
            lambda s, v: search_files(s, v, f"scan_{some:05d}_010"),
        ),
        ("files dataset=X browse", lambda s, v: search_files(s, v, None, dataset=some)),
        ("files q=scan dataset=X", lambda s, v: search_files(s, v, "scan", dataset=some)),
        (
            "files media_type=image/png",
            lambda s, v: search_files(s, v, None, media_type="image/png"),
        ),
    ]


def viewers(datasets: int) -> dict[str, Viewer]:
    private = [pid for pid in range(1, datasets + 1) if visibility_of(pid) == "private"]
    readable = frozenset(private[::2][:2000])
    return {
        "anonymous": Viewer.anonymous(),
        f"user reading {len(readable)} private": Viewer(user_id=7, readable_private_ids=readable),
        "admin (baseline, no filter)": Viewer(user_id=1, is_admin=True),
    }


def measure(store: IndexStore, datasets: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Latencies in ms per viewer per query (one warm-up round not counted)."""
    mix = query_mix(datasets)
    result: dict[str, dict[str, list[float]]] = {}
    for name, viewer in viewers(datasets).items():
        per_query: dict[str, list[float]] = {q: [] for q, _ in mix}
        for round_no in range(rounds + 1):
            for label, run in mix:
                start = time.perf_counter()
                run(store, viewer)
                elapsed = (time.perf_counter() - start) * 1000
                if round_no:
                    per_query[label].append(elapsed)
        result[name] = per_query
    return result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(
    backend: str, timings: dict[str, float], latencies: dict[str, dict[str, list[float]]]
) -> None:
    print(f"\n== {backend}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    baseline_name = next(n for n in latencies if n.startswith("admin"))
    base = [x for values in latencies[baseline_name].values() for x in values]
    base_p95 = pct(base, 0.95)
    print(
        f"{'viewer':32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95 vs admin':>13} target p95<={TARGET_P95_MS:.0f}ms"
    )
    for name, per_query in latencies.items():
        values = [x for v in per_query.values() for x in v]
        p95 = pct(values, 0.95)
        print(
            f"{name:32} {statistics.median(values):>8.1f} {p95:>8.1f} {max(values):>8.1f} "
            f"{p95 / base_p95:>12.2f}x {'met' if p95 <= TARGET_P95_MS else 'MISSED'}"
        )
    print("per query p95 (ms) for each viewer:")
    for label in next(iter(latencies.values())):
        cells = " ".join(f"{pct(per_query[label], 0.95):>8.1f}" for per_query in latencies.values())
        print(f"  {label:40} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--files-per-dataset", type=int, default=100)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    total = args.datasets * args.files_per_dataset
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {args.datasets:,} datasets, {total:,} files"
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="dshub-bench-search-") as tmp:
        for backend in backends:
            with contextlib.ExitStack() as stack:
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/index.sqlite3"
                else:
                    url = stack.enter_context(postgres_database(Path(tmp)))
                store = open_index(url)
                stack.callback(store.close)
                timings = load(store, url, args.datasets, args.files_per_dataset)
                report(backend, timings, measure(store, args.datasets, args.rounds))


if __name__ == "__main__":
    main()
