"""Fuzzing batches: one bad delivery among good ones, sent at once to a real gunicorn.

Concurrent deliveries share one journal transaction (group commit). A delivery's own bad
field must be that delivery's answer (400, or 202 if dshub can ignore it), never its
neighbours': every well-formed delivery of the batch is accepted (202), and nothing is 5xx.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.receiver.conftest import SECRET, gitlab_headers, push_body
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support.services import free_port

# Emptied by the lead once issue 12's fix ("a delivery's own bad field is that delivery's
# 400, never its batch's 503") is merged; until then a batch failing this way is printed.
_OVERFLOW = "a project_id beyond SQLite's INTEGER fails every delivery of its group commit (503)"
KNOWN_DEFECTS_FIXED_ELSEWHERE: set[str] = set()  # emptied: issue 12's fix is merged
BATCH = 8
EXAMPLES = int(os.environ.get("DSHUB_FUZZ_EXAMPLES", "40")) // 3  # bench/fuzz raises it
STATS = {"batches": 0, "deliveries": 0, "known_defect_batches": 0}

bad_project_ids: st.SearchStrategy[object] = st.one_of(
    st.integers(min_value=2**63, max_value=2**80),
    st.integers(max_value=-(2**63) - 1, min_value=-(2**80)),
    st.integers(max_value=0, min_value=-(2**63)),
    st.sampled_from(["15", "", None, True, 1.5, 1e308, [], {"id": 1}]),
)
bad_fields = st.sampled_from(["project_id", "ref", "after", "project"])
odd_values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.none(),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def bad_delivery(draw: st.DrawFn) -> tuple[str, bytes]:
    """(what is wrong, body) of a push with one bad field."""
    field = draw(bad_fields)
    if field == "project_id":
        value = draw(bad_project_ids)
        return f"project_id={value!r}", push_body(value)
    payload: dict[str, Any] = json.loads(push_body(15))
    value = draw(odd_values)
    payload[field] = value
    return f"{field}={value!r}", json.dumps(payload).encode()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    tmp: Path = tmp_path_factory.mktemp("bad-neighbours")
    # Redis down: every accepted delivery must be in the journal; one worker, so every
    # delivery of a batch meets the others in the same group commit.
    server = start_gunicorn(
        tmp,
        {
            "DSHUB_DATA_DIR": str(tmp / "data"),
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "DSHUB_LOG_FORMAT": "json",
        },
        workers=1,
    )
    yield server
    server.stop()
    print(f"bad-neighbour batches: {STATS}")


def _send(url: str, body: bytes, gate: threading.Barrier) -> int:
    headers = gitlab_headers("Push Hook", key=str(uuid.uuid4()))
    gate.wait(timeout=10)
    return requests.post(
        f"{url}/webhooks/gitlab", data=body, headers=headers, timeout=30
    ).status_code


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=bad_delivery(), position=st.integers(0, BATCH - 1), first=st.integers(1, 10**6))
def test_one_bad_delivery_never_fails_its_good_neighbours(
    receiver: Gunicorn, bad: tuple[str, bytes], position: int, first: int
) -> None:
    what, bad_body = bad
    bodies = [push_body(first + n) for n in range(BATCH - 1)]
    bodies.insert(position, bad_body)
    gate = threading.Barrier(BATCH)
    with ThreadPoolExecutor(BATCH) as pool:
        statuses = list(pool.map(lambda body: _send(receiver.url, body, gate), bodies))
    STATS["batches"] += 1
    STATS["deliveries"] += BATCH
    own = statuses.pop(position)
    if (
        _OVERFLOW in KNOWN_DEFECTS_FIXED_ELSEWHERE
        and what.startswith("project_id=")
        and isinstance(json.loads(bad_body)["project_id"], int)
        and abs(json.loads(bad_body)["project_id"]) > 2**63 - 1
        and (own >= 500 or any(status == 503 for status in statuses))
    ):
        STATS["known_defect_batches"] += 1
        print(f"KNOWN DEFECT (fixed elsewhere: {_OVERFLOW}): {what}: own {own}, good {statuses}")
        return
    assert own in (202, 400), f"{what}: the bad delivery got {own}"
    assert statuses == [202] * (BATCH - 1), f"{what}: its good neighbours got {statuses}"
