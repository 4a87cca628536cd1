"""Processes starting together on one fresh PostgreSQL database all open the site registry.

Found by the scale-out test (tests/deploy/test_scale_out.py): two `dshub worker`s running
their first jobs at once raced `CREATE TABLE IF NOT EXISTS` into PostgreSQL's unique
violation on `pg_type`, and the jobs failed.
"""

from __future__ import annotations

import threading

from indexer.sites.registry import SiteRegistry


def test_concurrent_first_opens_of_a_fresh_database_all_succeed(postgres_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_registry() -> None:
        try:
            start.wait()
            SiteRegistry(postgres_url).list()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_registry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, [repr(e) for e in errors]
