"""Server time of the web UI's pages: `.venv/bin/python -m bench.ui`.

Options: `--datasets 10000`, `--folder-files 10000`, `--requests 200`,
`--backend sqlite|postgres|both` (default both), `--pages datasets,details,folder` (which
groups of rows to measure; default all).

Per backend: an index of `--datasets` datasets (bench.search's shapes, one file each, so
the datasets page's facets and result summaries have refs to read), plus one real public
dataset in a GitLab sandbox whose default branch tracks a directory of `--folder-files`
files (indexed). The application is the real one (`create_app`), called in-process through
Flask's test client, so a figure is the server's own time: routing, the CSRF hook, the
permission filter (warm cache: the viewer of the cookie is already resolved, as after a
first request), index queries, GitLab calls of the page (the sandbox on loopback: tree
listing and README of the details page), and template rendering.

Measured, `--requests` times each after 5 warm-up requests:

- the datasets page `/` as a user reading 2,000 private datasets (20 per page; pages 1-10
  and a search term), and as an admin (no permission filter) for comparison;
- the details page of the real dataset (README card, storage site, root folder, snippets);
- the 10,000-file folder, 100 entries a page: page 1, and pages 1-100 at random (deeper
  pages walk more of the folder).

Targets (issue 15): p95 <= 100 ms; <= 300 ms for the 10,000-file folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gitlab
import requests
from flask import Flask
from flask.testing import FlaskClient

from bench.index_manifest.postgres import postgres_database
from bench.search.__main__ import load, visibility_of
from indexer.gitlab.permissions import PermissionResolver, token_key
from indexer.gitlab.reader import GitLabReader
from indexer.read.search import Viewer
from indexer.store import Dataset, IndexedFile, IndexStore, RefInfo, open_index
from tests.support.services import free_port, wait_until
from webhook_service import create_app
from webhook_service.app_settings import services

TARGET_MS, FOLDER_TARGET_MS = 100.0, 300.0
USER_TOKEN = "bench-user-token"  # noqa: S105 - a name for the cache, never sent to GitLab
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105


@dataclass
class GitLab:
    """The GitLab sandbox in a process of its own (so it does not share the GIL with dshub)."""

    url: str
    admin_token: str


@contextlib.contextmanager
def sandbox_process(workdir: Path) -> Iterator[GitLab]:
    port = free_port()
    token = secrets.token_urlsafe(20)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.gitlab_sandbox",
            "--port",
            str(port),
            "--data-dir",
            str(workdir),
        ],
        env={**os.environ, "DSHUB_SANDBOX_ADMIN_TOKEN": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/-/health", timeout=1).ok, 30, "gitlab sandbox")
        yield GitLab(url, token)
    finally:
        process.terminate()
        process.wait(timeout=20)


def real_dataset(sandbox: GitLab, files: int) -> tuple[Dataset, str, list[IndexedFile]]:
    """A public project with a tracked directory `images/` of `files` entries (the pointer in
    git, the entries in the index as a sync would write them)."""
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    group = admin.groups.create({"name": "bench", "path": "bench", "visibility": "public"})
    project = admin.projects.create(
        {"name": "big", "namespace_id": group.id, "visibility": "public"}
    )
    pointer = (
        "outs:\n- md5: " + "d" * 32 + ".dir\n  size: 1\n  nfiles: 1\n  hash: md5\n  path: images\n"
    )
    readme = "# Big\n\nA folder of many images.\n\n| split | files |\n|---|---|\n| train | 9000 |\n"
    commit = project.commits.create(
        {
            "branch": "main",
            "commit_message": "Many images",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                {"action": "create", "file_path": "README.md", "content": readme},
                {"action": "create", "file_path": "images.dvc", "content": pointer},
            ],
        }
    )
    dataset = Dataset(
        project_id=project.id,
        name="big",
        path_with_namespace="bench/big",
        namespace="bench",
        visibility="public",
        description="A folder of many images",
        topics=("vision",),
        default_branch="main",
        web_url=f"{sandbox.url}/bench/big",
    )
    entries = [
        IndexedFile(
            path=f"images/img_{n:05d}.jpg",
            md5=f"{n:032x}",
            hash_name="md5",
            size=1000 + n,
            media_type="image/jpeg",
            pointer_path="images.dvc",
            in_directory=True,
        )
        for n in range(files)
    ]
    return dataset, commit.id, entries


def build(store: IndexStore, url: str, sandbox: GitLab, datasets: int, files: int) -> Dataset:
    """Fill the index; the real dataset's id is outside the synthetic range."""
    load(store, url, datasets, 1)
    dataset, sha, entries = real_dataset(sandbox, files)
    # The sandbox's ids start at 1; move the synthetic one that shares the id out of the way.
    store.remove_dataset(dataset.project_id)
    store.upsert_dataset(dataset)
    store.replace_ref_files(dataset.project_id, RefInfo("main", "branch", sha), entries)
    return dataset


def signed_in(
    client: FlaskClient, resolver: PermissionResolver, token: str, viewer: Viewer
) -> None:
    """Warm the permission cache for `token` (as the first request of a session would)."""
    resolver._cache.ttl = 24 * 3600.0  # stay warm for the whole run (the default is 60 s)
    _, generation = resolver._cache.get(token_key(token))
    resolver._cache.put(token_key(token), viewer, generation)
    client.set_cookie("tokenGitLab", token, domain="localhost")


def timed(client: FlaskClient, urls: Callable[[int], str], requests: int) -> list[float]:
    """Milliseconds per request (5 warm-up requests not counted); every answer must be 200."""
    values: list[float] = []
    for n in range(requests + 5):
        url = urls(n)
        start = time.perf_counter()
        answer = client.get(url)
        body = answer.get_data()
        elapsed = (time.perf_counter() - start) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"{url} answered {answer.status_code}: {body[:300]!r}")
        if n >= 5:
            values.append(elapsed)
    return values


def _timed_call(call: Callable[[], object], requests: int) -> list[float]:
    values: list[float] = []
    for n in range(requests + 5):
        start = time.perf_counter()
        call()
        if n >= 5:
            values.append((time.perf_counter() - start) * 1000)
    return values


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


PAGE_GROUPS = ("datasets", "details", "folder")


def measure(
    url: str,
    workdir: Path,
    datasets: int,
    files: int,
    requests: int,
    *,
    groups: tuple[str, ...] = PAGE_GROUPS,
) -> None:
    with sandbox_process(workdir / "gitlab") as sandbox:
        store = open_index(url)
        started = time.perf_counter()
        real = build(store, url, sandbox, datasets, files)
        store.close()
        print(f"  index built in {time.perf_counter() - started:.1f} s")
        app = create_app(
            {
                "DSHUB_DATA_DIR": str(workdir / "data"),
                "DSHUB_INDEX_URL": url,
                "DSHUB_GITLAB_URL": sandbox.url,
                "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
                "DSHUB_RECONCILE_INTERVAL": "0",
                "DSHUB_LOG_LEVEL": "WARNING",
            }
        )
        resolver: PermissionResolver = services(app).permissions
        private = [p for p in range(1, datasets + 1) if visibility_of(p) == "private"]
        user = Viewer(user_id=7, readable_private_ids=frozenset(private[::2][:2000]))
        rng = random.Random(15)
        base = f"/datasets/{real.path_with_namespace}"
        rows: list[tuple[str, list[float], float | None]] = []
        client = app.test_client()
        signed_in(client, resolver, USER_TOKEN, user)
        if "datasets" in groups:
            _datasets_rows(rows, client, requests)
        if "details" in groups:
            rows.append(("details page", timed(client, lambda n: base, requests), TARGET_MS))
        if "folder" in groups:
            _folder_rows(
                rows,
                client,
                real,
                sandbox=sandbox,
                app=app,
                files=files,
                requests=requests,
                rng=rng,
            )
        if "datasets" in groups:
            admin_client = app.test_client()
            signed_in(admin_client, resolver, ADMIN_TOKEN, Viewer(user_id=1, is_admin=True))
            rows.append(
                (
                    "datasets page 1 (admin, baseline)",
                    timed(admin_client, lambda n: "/", requests),
                    TARGET_MS,
                )
            )
        print(f"  {'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'target':>8}")
        for label, values, target in rows:
            p95 = pct(values, 0.95)
            verdict = "" if target is None else "met" if p95 <= target else "MISSED"
            bound = "-" if target is None else "<=" + format(target, ".0f")
            print(
                f"  {label:44} {statistics.median(values):>8.1f} {p95:>8.1f} {max(values):>8.1f} "
                f"{bound:>8} {verdict}"
            )
        if "datasets" in groups:
            user_p95, baseline = pct(rows[0][1], 0.95), pct(rows[-1][1], 0.95)
            print(f"  datasets page p95, user vs admin baseline: {user_p95 / baseline:.2f}x")


Rows = list[tuple[str, list[float], float | None]]


def _datasets_rows(rows: Rows, client: FlaskClient, requests: int) -> None:
    rows.append(
        (
            "datasets page 1 (user, 2,000 private)",
            timed(client, lambda n: "/", requests),
            TARGET_MS,
        )
    )
    rows.append(
        (
            "datasets pages 1-10 (user)",
            timed(client, lambda n: f"/?page={n % 10 + 1}", requests),
            TARGET_MS,
        )
    )
    rows.append(
        (
            "datasets search q=retina (user)",
            timed(client, lambda n: "/?q=retina", requests),
            TARGET_MS,
        )
    )
    rows.append(
        (
            "  API GET /api/v1/datasets, same viewer",
            timed(client, lambda n: "/api/v1/datasets", requests),
            None,
        )
    )


def _folder_rows(
    rows: Rows,
    client: FlaskClient,
    real: Dataset,
    *,
    sandbox: GitLab,
    app: Flask,
    files: int,
    requests: int,
    rng: random.Random,
) -> None:
    base = f"/datasets/{real.path_with_namespace}"
    rows.append(
        (
            f"folder of {files:,}, page 1",
            timed(client, lambda n: f"{base}/-/tree/images", requests),
            FOLDER_TARGET_MS,
        )
    )
    last = max(1, -(-files // 100))
    rows.append(
        (
            f"folder of {files:,}, pages 1-{last} at random",
            timed(client, lambda n: f"{base}/-/tree/images?page={rng.randint(1, last)}", requests),
            FOLDER_TARGET_MS,
        )
    )
    tree = f"/api/v1/datasets/{real.project_id}/tree?path=images"
    rows.append(
        (
            f"  API tree, pages 1-{last} at random",
            timed(client, lambda n: f"{tree}&page={rng.randint(1, last)}", requests),
            None,
        )
    )
    reader = GitLabReader(sandbox.url, sandbox.admin_token)
    sha = services(app).index.get_ref(real.project_id, "main")
    rows.append(
        (
            "(one GitLab tree listing, for scale)",
            _timed_call(
                lambda: list(reader.list_tree(real.project_id, sha.commit_sha if sha else "main")),
                requests,
            ),
            None,
        )
    )


@contextlib.contextmanager
def index_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/index.sqlite3"
    else:
        with postgres_database(tmp) as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--folder-files", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pages", default=",".join(PAGE_GROUPS), help="groups to measure")
    args = parser.parse_args()
    groups = tuple(g.strip() for g in args.pages.split(",") if g.strip())
    if not set(groups) <= set(PAGE_GROUPS):
        parser.error(f"--pages takes a comma-separated subset of {', '.join(PAGE_GROUPS)}")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; load {os.getloadavg()[0]:.1f}; {args.datasets:,} datasets, "
        f"folder of {args.folder_files:,}, {args.requests} requests per page"
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="dshub-bench-ui-") as tmp:
            print(f"\n== {backend}")
            with index_url(backend, Path(tmp)) as url:
                measure(
                    url, Path(tmp), args.datasets, args.folder_files, args.requests, groups=groups
                )


if __name__ == "__main__":
    main()
