"""One bad webhook never fails its neighbours: a field the journal cannot store (an id past
SQLite's INTEGER) is that delivery's own 400, and the well-formed deliveries committed in the
same group commit are accepted (they used to be answered 503 with it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from indexer.ingest.events import MAX_ID, InvalidField, PushEvent, parse_event
from indexer.ingest.intake import Intake, Receipt
from indexer.ingest.journal import Delivery, Journal, UnstorableDelivery
from indexer.ingest.queue import RedisQueue
from indexer.ingest.routing import sync_ref_job
from tests.receiver.conftest import SECRET, gitlab_headers, push_body
from tests.receiver.serving import start_gunicorn
from tests.receiver.test_batching import _submit_while_held


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    handle = Journal.in_directory(tmp_path / "data")
    yield handle
    handle.close()


def _delivery(key: str, project: int) -> Delivery:
    return Delivery(
        key, "push", project, [sync_ref_job(project, "refs/heads/main", None, "a" * 40)]
    )


@pytest.mark.parametrize(
    "bad",
    [
        Delivery("idempotency:bad", "push", 2**70, []),
        Delivery("idempotency:bad", "push", -(2**64), []),
        Delivery("idempotency:\ud800", "push", 5, []),
    ],
)
def test_a_delivery_the_journal_cannot_store_fails_alone_in_its_group_commit(
    journal: Journal, redis_url: str, bad: Delivery
) -> None:
    intake = Intake(journal, RedisQueue.from_url(redis_url))
    good = [_delivery(f"idempotency:g{n}", 100 + n) for n in range(8)]
    batch = [good[0], *good[1:4], bad, *good[4:]]
    try:
        tickets = _submit_while_held(intake, journal, batch)
        outcomes: list[Receipt | UnstorableDelivery] = []
        for ticket in tickets:
            try:
                outcomes.append(ticket.wait_settled())
            except UnstorableDelivery as exc:
                outcomes.append(exc)
    finally:
        intake.stop()
    refused = outcomes.pop(4)
    assert isinstance(refused, UnstorableDelivery) and refused.status == 400
    assert all(not isinstance(o, Exception) and not o.duplicate for o in outcomes), outcomes
    assert journal.counts() == {"handed_over": 8}


@given(project_id=st.integers(min_value=-(2**80), max_value=2**80))
def test_an_event_id_is_an_integer_the_index_and_the_journal_can_hold(project_id: int) -> None:
    headers = {"X-Gitlab-Event": "Push Hook"}
    try:
        event = parse_event(headers, push_body(project_id))
    except InvalidField as exc:
        assert not 0 < project_id <= MAX_ID
        assert exc.status == 400 and "project_id" in exc.message
    else:
        assert isinstance(event, PushEvent) and 0 < event.project_id <= MAX_ID


def test_one_bad_push_among_concurrent_good_ones_is_its_own_400(
    tmp_path: Path, redis_url: str
) -> None:
    server = start_gunicorn(
        tmp_path,
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": redis_url,
            "DSHUB_RECONCILE_INTERVAL": "0",
        },
    )

    def send(number: int) -> tuple[int, int, str]:
        bad = number % 6 == 5
        project_id = 2**64 + number if bad else 1000 + number
        body = push_body(project_id, ref=f"refs/heads/b{number}")
        if number % 12 == 11:  # a ref no journal row can hold as text
            body = body.replace(f"refs/heads/b{number}".encode(), b"refs/heads/x\\ud800")
            project_id = 2**64
        answer = requests.post(
            f"{server.url}/webhooks/gitlab",
            data=body,
            headers=gitlab_headers("Push Hook", key=f"neighbour-{number}"),
            timeout=30,
        )
        return project_id, answer.status_code, answer.text

    try:
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(send, range(72)))
    finally:
        server.stop()
    for project_id, status, text in results:
        if project_id > MAX_ID:
            assert status == 400, text
            message = json.loads(text)["error"]["message"]
            assert "project_id" in message or "ref" in message
        else:
            assert status == 202, text
    assert sum(1 for _, status, _ in results if status == 202) == 60
