"""Each storage test gets S3 clients of its own: tests hook a client's events (to count or
fail requests), and stores share one client per site and credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from indexer.data.storage import forget_clients


@pytest.fixture(autouse=True)
def _own_s3_clients() -> Iterator[None]:
    forget_clients()
    yield
    forget_clients()
