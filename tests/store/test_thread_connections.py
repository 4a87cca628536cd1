"""A thread that ends gives its index connection back (it used to keep it until close()).

Found by the soak (bench/reliability): every upload commit syncs the index on a helper
thread (`webhook_service.api_uploads.in_line`), and each such thread's connection stayed
open, until PostgreSQL refused clients ("sorry, too many clients already") four minutes in.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from indexer.store import IndexStore, open_index
from webhook_service.api_uploads import in_line

THREADS = 20


@pytest.fixture
def store(postgres_url: str) -> Iterator[IndexStore]:
    opened = open_index(postgres_url)
    try:
        yield opened
    finally:
        opened.close()


def _backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_connections_of_ended_threads_are_closed(postgres_url: str, store: IndexStore) -> None:
    assert store.list_datasets() == []  # the test thread's own connection stays
    for _ in range(THREADS):
        thread = threading.Thread(target=store.list_datasets)
        thread.start()
        thread.join()
    del thread
    gc.collect()
    assert _backends(postgres_url) == 1
    assert store.list_datasets() == []  # this thread's connection was not touched


def test_in_line_syncs_do_not_pile_up_connections(postgres_url: str, store: IndexStore) -> None:
    for _ in range(THREADS):
        assert in_line(lambda: str(len(store.list_datasets()))) == "synced"
    gc.collect()
    assert _backends(postgres_url) <= 1


def test_close_still_closes_every_live_thread_connection(
    postgres_url: str, store: IndexStore
) -> None:
    release = threading.Event()
    ready = threading.Barrier(4)

    def hold() -> None:
        store.list_datasets()
        ready.wait()
        release.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    ready.wait()
    assert _backends(postgres_url) == 4  # three threads and this one (the migration's)
    store.close()
    assert _backends(postgres_url) == 0
    release.set()
    for thread in threads:
        thread.join()


def test_sqlite_threads_still_work(tmp_path: Path) -> None:
    sqlite = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        for _ in range(5):
            thread = threading.Thread(target=sqlite.list_datasets)
            thread.start()
            thread.join()
        gc.collect()
        assert sqlite.list_datasets() == []
    finally:
        sqlite.close()
