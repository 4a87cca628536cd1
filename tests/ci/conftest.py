"""Fixtures of the CI job tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ci.dshub_stub import Stub, serve_stub


@pytest.fixture
def stub() -> Iterator[Stub]:
    """A loopback stand-in for dshub's HTTP answers (`tests.ci.dshub_stub`)."""
    with serve_stub() as state:
        yield state
