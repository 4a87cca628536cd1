"""A scratch PostgreSQL database for a benchmark: the test server (found or started), then dropped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.services import find_or_start_postgres, scratch_database


@contextlib.contextmanager
def postgres_database(workdir: Path) -> Iterator[str]:
    """Yield the URL of a fresh database; drop it (and stop a server we started) afterwards."""
    admin_url, managed = find_or_start_postgres(workdir / "pg")
    try:
        with scratch_database(admin_url, f"dshub_bench_{uuid.uuid4().hex[:12]}") as url:
            yield url
    finally:
        if managed is not None:
            managed.stop()
