"""Redis outages and crashes: the receiver keeps answering 202 and never loses an event."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from rq import Queue

from indexer.ingest.journal import Journal
from indexer.ingest.queue import QUEUE_NAME, Drainer, RedisQueue
from tests.receiver.conftest import SECRET, gitlab_headers, make_app, push_body
from tests.receiver.serving import start_gunicorn
from tests.support.services import ManagedProcess, free_port, start_redis, wait_until
from webhook_service.app_settings import services

URL = "/webhooks/gitlab"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[ManagedProcess]]]:
    """A Redis of this test alone, which the test may stop and restart on the same port."""
    port = free_port()
    _, server = start_redis(tmp_path / "redis", port)
    servers = [server]
    yield port, servers
    for item in servers:
        item.stop()


def _job_ids(url: str) -> set[str]:
    return set(Queue(QUEUE_NAME, connection=redis.Redis.from_url(url)).job_ids)


def test_redis_outage_answers_202_and_jobs_appear_when_it_is_back(
    tmp_path: Path, private_redis: tuple[int, list[ManagedProcess]]
) -> None:
    port, servers = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    app = make_app(tmp_path, DSHUB_REDIS_URL=url)
    client = app.test_client()
    try:
        first = client.post(URL, data=push_body(1), headers=gitlab_headers("Push Hook"))
        assert first.status_code == 202 and first.get_json()["handed_over"] is True
        servers[0].stop()
        first_id = first.get_json()["jobs"][0]["id"]
        expected = {first_id}
        for project in (2, 3, 4):
            response = client.post(
                URL, data=push_body(project), headers=gitlab_headers("Push Hook")
            )
            assert response.status_code == 202
            assert response.get_json()["handed_over"] is False
            expected.add(response.get_json()["jobs"][0]["id"])
        assert services(app).receiver.journal().backlog() == 3
        assert client.get("/readyz").get_json()["failed"] == ["redis"]
        _, restarted = start_redis(tmp_path / "redis2", port)
        servers.append(restarted)
        # The app's background drainer hands the journal over on its own. (The first job
        # was in the old, non-persistent Redis: that loss is Redis's, not the receiver's.)
        wait_until(lambda: _job_ids(url) == expected - {first_id}, 30, "the drainer")
        # The drainer marks rows after enqueueing them: wait for the marks too.
        journal = services(app).receiver.journal()
        wait_until(lambda: journal.counts() == {"handed_over": 4}, 30, "the hand-over marks")
    finally:
        services(app).close()


def test_a_killed_gunicorn_loses_no_journaled_event(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: Redis is "down" while events arrive
    redis_url = f"redis://127.0.0.1:{port}/0"
    data = tmp_path / "data"
    server = start_gunicorn(
        tmp_path,
        {"DSHUB_DATA_DIR": str(data), "DSHUB_WEBHOOK_SECRET": SECRET, "DSHUB_REDIS_URL": redis_url},
    )
    expected: set[str] = set()
    try:
        session = requests.Session()
        for number in range(20):
            body = push_body(100 + number, f"refs/heads/b{number}")
            response = session.post(
                server.url + URL, data=body, headers=gitlab_headers("Push Hook"), timeout=10
            )
            assert response.status_code == 202, response.text
            expected.add(response.json()["jobs"][0]["id"])
    finally:
        server.kill()
    assert server.process.returncode == -9
    _, redis_server = start_redis(tmp_path / "redis", port)
    try:
        journal = Journal(data / "journal.sqlite3")
        assert journal.counts() == {"accepted": 20}
        # Leases taken by the killed requests expire; a drainer then hands every row over.
        journal._connection().execute("UPDATE deliveries SET lease_until = 0")
        Drainer(journal, RedisQueue.from_url(redis_url)).drain_once()
        assert _job_ids(redis_url) == expected
        assert journal.counts() == {"handed_over": 20}
    finally:
        redis_server.stop()


def test_gunicorn_refuses_a_streamed_body_over_the_limit(tmp_path: Path, redis_url: str) -> None:
    server = start_gunicorn(
        tmp_path,
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": redis_url,
            "DSHUB_WEBHOOK_MAX_BYTES": "1000",
        },
        workers=1,
    )
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = (
                f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-Gitlab-Event: Push Hook\r\nX-Gitlab-Token: {SECRET}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            )
            sock.sendall(head.encode())
            chunk = b"{" + b" " * 1998 + b"}"
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
            answer = b""
            while b"}}" not in answer:  # the JSON error body ends with two braces
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        answer_text = answer.decode()
        assert answer_text.startswith("HTTP/1.1 413"), answer_text
        assert "request body is larger than the limit of 1000 bytes" in answer_text
        # Declared too large: refused from the headers alone.
        response = requests.post(
            server.url + URL,
            data=b"x" * 5000,
            headers=gitlab_headers("Push Hook"),
            timeout=10,
        )
        assert response.status_code == 413
    finally:
        server.stop()


def test_metrics_add_up_across_gunicorn_workers(tmp_path: Path, redis_url: str) -> None:
    server = start_gunicorn(
        tmp_path,
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": redis_url,
        },
        workers=2,
    )
    try:
        for number in range(12):
            # A new connection each time, so both workers get requests.
            requests.post(
                server.url + URL,
                data=push_body(number + 1),
                headers=gitlab_headers("Push Hook"),
                timeout=10,
            )
        requests.post(
            server.url + URL,
            data=push_body(),
            headers=gitlab_headers("Push Hook", token="nope"),
            timeout=10,
        )
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert 'dshub_webhook_events_total{kind="push",outcome="accepted"} 12.0' in text
        assert 'dshub_webhook_events_total{kind="unknown",outcome="rejected_401"} 1.0' in text
        assert "dshub_enqueue_latency_seconds_count 12.0" in text
        # Hand-over marks ride on the next batch, or are written alone after MARK_LINGER.
        wait_until(
            lambda: (
                "dshub_journal_backlog 0.0"
                in requests.get(server.url + "/metrics", timeout=10).text
            ),
            5,
            "the hand-over marks",
        )
        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        server.stop()
