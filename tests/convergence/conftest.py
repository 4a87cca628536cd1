"""Fixtures of the convergence tests: a running receiver (gunicorn, Redis mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.convergence.harness import SECRET
from tests.receiver.serving import Gunicorn, start_gunicorn


@pytest.fixture
def receiver(tmp_path: Path, redis_url: str) -> Iterator[Gunicorn]:
    server = start_gunicorn(
        tmp_path / "gunicorn",
        {
            "DSHUB_DATA_DIR": str(tmp_path / "receiver"),
            "DSHUB_INDEX_URL": f"sqlite:///{tmp_path / 'receiver-index.sqlite3'}",
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": redis_url,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
            "DSHUB_LOG_LEVEL": "WARNING",
        },
        workers=1,
    )
    yield server
    server.stop()
