"""`POST /webhooks/gitlab` through the Flask app on real Redis: answers, jobs, rejections."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import flask
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job

from indexer.ingest.journal import Journal
from indexer.ingest.queue import QUEUE_NAME
from tests.receiver.conftest import SECRET, fixture_body, gitlab_headers, make_app, push_body
from tests.receiver.routing_table import TABLE
from tests.support.services import free_port, wait_until
from webhook_service.app_settings import services
from webhook_service.webhooks import handle_delivery

URL = "/webhooks/gitlab"


def _queued(redis_url: str) -> list[Job]:
    connection = redis.Redis.from_url(redis_url)
    return Queue(QUEUE_NAME, connection=connection).get_jobs()


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_documented_payload_is_accepted_and_queued_or_ignored(
    name: str, client: FlaskClient, redis_url: str
) -> None:
    hook, expected = TABLE[name]
    response = client.post(URL, data=fixture_body(name), headers=gitlab_headers(hook))
    body = response.get_json()
    if expected is None:
        assert response.status_code == 200
        assert set(body) == {"ignored"} and body["ignored"]
        assert _queued(redis_url) == []
        return
    assert response.status_code == 202, body
    assert body["accepted"] is True and body["duplicate"] is False and body["handed_over"]
    assert [job["id"] for job in body["jobs"]] == [job.job_id for job in expected]
    queued = {job.id: job for job in _queued(redis_url)}
    assert sorted(queued) == sorted(job.job_id for job in expected)
    for request in expected:
        rq_job = queued[request.job_id]
        # RQ runs the coalescing wrapper, which calls the job function by name with these args.
        assert rq_job.func_name == "indexer.ingest.queue.run_coalesced"
        assert rq_job.args == (request.func, list(request.args), request.job_id)


def test_the_same_delivery_twice_makes_one_job(client: FlaskClient, redis_url: str) -> None:
    headers = gitlab_headers("Push Hook", key="5f0e7a6e-1b2c-4d3e-8f90-123456789abc")
    first = client.post(URL, data=fixture_body("push.json"), headers=headers)
    again = client.post(URL, data=fixture_body("push.json"), headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["duplicate"] is False
    assert again.get_json()["duplicate"] is True
    assert len(_queued(redis_url)) == 1
    journal = services(client.application).receiver.journal()
    assert sum(journal.counts().values()) == 1


def test_without_idempotency_key_the_event_uuid_dedupes(client: FlaskClient) -> None:
    headers = gitlab_headers("Push Hook")
    del headers["Idempotency-Key"]
    client.post(URL, data=push_body(), headers=headers)
    headers["X-Gitlab-Webhook-UUID"] = "another-attempt"
    assert client.post(URL, data=push_body(), headers=headers).get_json()["duplicate"] is True


def test_without_any_delivery_id_an_identical_body_dedupes(client: FlaskClient) -> None:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"}
    headers["X-Gitlab-Token"] = SECRET
    client.post(URL, data=push_body(), headers=headers)
    assert client.post(URL, data=push_body(), headers=headers).get_json()["duplicate"] is True
    other = push_body(after="1" * 40)
    assert client.post(URL, data=other, headers=headers).get_json()["duplicate"] is False


def test_pushes_to_one_ref_while_its_job_is_queued_collapse(
    client: FlaskClient, redis_url: str
) -> None:
    for after in ("1" * 40, "2" * 40, "3" * 40):
        body = push_body(15, "refs/heads/main", after=after, checkout_sha=after)
        assert client.post(URL, data=body, headers=gitlab_headers("Push Hook")).status_code == 202
    other_ref = push_body(15, "refs/heads/dev")
    client.post(URL, data=other_ref, headers=gitlab_headers("Push Hook"))
    assert len(_queued(redis_url)) == 2


@pytest.mark.parametrize("token", [None, "wrong-token-value", SECRET + "x", ""])
def test_missing_or_wrong_token_is_401_without_hints(
    client: FlaskClient, redis_url: str, token: str | None
) -> None:
    headers = gitlab_headers("Push Hook")
    if token is None:
        del headers["X-Gitlab-Token"]
    else:
        headers["X-Gitlab-Token"] = token
    response = client.post(URL, data=push_body(), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {
        "error": {
            "code": "not_authenticated",
            "message": "authentication failed: missing or invalid X-Gitlab-Token",
        }
    }
    assert SECRET not in response.get_data(as_text=True)
    assert _queued(redis_url) == []


def test_any_of_the_rotated_secrets_is_accepted(tmp_path: Path, redis_url: str) -> None:
    app = make_app(
        tmp_path, DSHUB_REDIS_URL=redis_url, DSHUB_WEBHOOK_SECRET="old-secret-1,new-secret-2"
    )
    try:
        client = app.test_client()
        for token in ("old-secret-1", "new-secret-2"):
            headers = gitlab_headers("Push Hook", token=token)
            assert client.post(URL, data=push_body(), headers=headers).status_code == 202
    finally:
        services(app).close()


def test_without_a_configured_secret_webhooks_are_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path, DSHUB_WEBHOOK_SECRET="")
    response = app.test_client().post(URL, data=push_body(), headers=gitlab_headers("Push Hook"))
    assert response.status_code == 503
    assert "DSHUB_WEBHOOK_SECRET" in response.get_json()["error"]["message"]


def test_declared_oversize_body_is_413_before_reading(tmp_path: Path, redis_url: str) -> None:
    app = make_app(tmp_path, DSHUB_REDIS_URL=redis_url, DSHUB_WEBHOOK_MAX_BYTES="100")
    try:
        response = app.test_client().post(
            URL, data=b"{" + b" " * 200 + b"}", headers=gitlab_headers("Push Hook")
        )
        assert response.status_code == 413
        assert response.get_json()["error"] == {
            "code": "payload_too_large",
            "message": "request body is larger than the limit of 100 bytes",
        }
    finally:
        services(app).close()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_non_json_content_type_is_415(client: FlaskClient, content_type: str) -> None:
    headers = gitlab_headers("Push Hook")
    headers["Content-Type"] = content_type
    response = client.post(URL, data=push_body(), headers=headers)
    assert response.status_code == 415
    assert response.get_json()["error"] == {
        "code": "unsupported_media_type",
        "message": f"Content-Type must be application/json (got {content_type!r})",
    }


def test_json_content_type_with_charset_is_accepted(client: FlaskClient) -> None:
    headers = gitlab_headers("Push Hook")
    headers["Content-Type"] = "Application/JSON; charset=utf-8"
    assert client.post(URL, data=push_body(), headers=headers).status_code == 202


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not valid JSON: Expecting value at line 1 column 1"),
        (b'"a string"', "body must be a JSON object, not a string"),
        (b"", "body is not valid JSON: Expecting value at line 1 column 1"),
        (json.dumps({"object_kind": "push"}).encode(), "missing field 'project_id'"),
        (b"[" * 100_000, "body is not valid JSON: nested too deeply"),
    ],
)
def test_bad_body_is_400_naming_the_problem(client: FlaskClient, body: bytes, message: str) -> None:
    response = client.post(URL, data=body, headers=gitlab_headers("Push Hook"))
    assert response.status_code == 400
    assert response.get_json()["error"] == {"code": "invalid_input", "message": message}


def test_unknown_event_is_acknowledged_with_the_reason(client: FlaskClient) -> None:
    response = client.post(
        URL, data=fixture_body("issue.json"), headers=gitlab_headers("Issue Hook")
    )
    assert response.status_code == 200
    assert response.get_json() == {"ignored": "'Issue Hook' events are not used by dshub"}


# ---------------------------------------------------------------------------- signatures

SIGNING_KEY = b"0123456789abcdef0123456789abcdef"


def _signed_headers(
    body: bytes, key: bytes = SIGNING_KEY, stamp: int | None = None
) -> dict[str, str]:
    headers = gitlab_headers("Push Hook")
    del headers["X-Gitlab-Token"]
    stamp = int(time.time()) if stamp is None else stamp
    webhook_id = headers["Idempotency-Key"]
    digest = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers.update(
        {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
    )
    return headers


@pytest.fixture
def signed_client(tmp_path: Path, redis_url: str) -> Iterator[FlaskClient]:
    key = "whsec_" + base64.b64encode(SIGNING_KEY).decode()
    app = make_app(tmp_path, DSHUB_REDIS_URL=redis_url, DSHUB_WEBHOOK_SIGNING_KEY=key)
    yield app.test_client()
    services(app).close()


def test_valid_signature_is_accepted(signed_client: FlaskClient) -> None:
    body = push_body()
    response = signed_client.post(URL, data=body, headers=_signed_headers(body))
    assert response.status_code == 202


def test_one_valid_signature_among_several_is_enough(signed_client: FlaskClient) -> None:
    body = push_body()
    headers = _signed_headers(body)
    headers["webhook-signature"] = "v1,AAAA v1a,BBBB " + headers["webhook-signature"]
    assert signed_client.post(URL, data=body, headers=headers).status_code == 202


def test_signature_with_the_wrong_key_is_401(signed_client: FlaskClient) -> None:
    body = push_body()
    response = signed_client.post(URL, data=body, headers=_signed_headers(body, key=b"x" * 32))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == (
        "authentication failed: invalid webhook-signature"
    )


def test_signature_over_another_body_is_401(signed_client: FlaskClient) -> None:
    headers = _signed_headers(push_body())
    response = signed_client.post(URL, data=push_body(after="1" * 40), headers=headers)
    assert response.status_code == 401


def test_stale_signature_timestamp_is_401(signed_client: FlaskClient) -> None:
    body = push_body()
    headers = _signed_headers(body, stamp=int(time.time()) - 3600)
    response = signed_client.post(URL, data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == (
        "authentication failed: webhook-timestamp is more than 300 seconds away from the "
        "server's clock"
    )


def test_valid_token_does_not_excuse_a_bad_signature(tmp_path: Path, redis_url: str) -> None:
    key = "whsec_" + base64.b64encode(SIGNING_KEY).decode()
    app = make_app(tmp_path, DSHUB_REDIS_URL=redis_url, DSHUB_WEBHOOK_SIGNING_KEY=key)
    try:
        body = push_body()
        headers = _signed_headers(body, key=b"y" * 32)
        headers["X-Gitlab-Token"] = SECRET
        assert app.test_client().post(URL, data=body, headers=headers).status_code == 401
        del headers["webhook-signature"], headers["webhook-id"], headers["webhook-timestamp"]
        assert app.test_client().post(URL, data=body, headers=headers).status_code == 202
    finally:
        services(app).close()


# ------------------------------------------------------------------- degraded dependencies


def test_redis_down_still_answers_202_and_keeps_the_event(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = make_app(tmp_path, DSHUB_REDIS_URL=dead)
    try:
        response = app.test_client().post(
            URL, data=push_body(), headers=gitlab_headers("Push Hook")
        )
        assert response.status_code == 202
        assert response.get_json()["handed_over"] is False
        assert services(app).receiver.journal().counts() == {"accepted": 1}
    finally:
        services(app).close()


def test_unwritable_journal_is_503(tmp_path: Path, redis_url: str) -> None:
    data = tmp_path / "data"
    (data / "journal.sqlite3").mkdir(parents=True)  # a directory where the file should be
    app = make_app(tmp_path, DSHUB_REDIS_URL=redis_url)
    response = app.test_client().post(URL, data=push_body(), headers=gitlab_headers("Push Hook"))
    assert response.status_code == 503
    assert response.get_json()["error"] == {
        "code": "unavailable",
        "message": "the event journal cannot be written; nothing was accepted, retry",
    }


def test_logs_name_the_event_and_never_the_token(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("dshub")
    logger.addHandler(caplog.handler)
    try:
        headers = gitlab_headers("Push Hook", key="key-for-the-log-test")
        client.post(URL, data=push_body(project_id=42), headers=headers)
        bad = dict(headers, **{"X-Gitlab-Token": "a-wrong-token-value"})
        client.post(URL, data=push_body(project_id=42), headers=bad)
    finally:
        logger.removeHandler(caplog.handler)
    records = [r for r in caplog.records if r.name == "dshub.webhooks"]
    accepted = next(r for r in records if getattr(r, "outcome", None) == "accepted")
    assert accepted.event_kind == "push"  # type: ignore[attr-defined]
    assert accepted.project_id == 42  # type: ignore[attr-defined]
    assert accepted.idempotency_key == "key-for-the-log-test"  # type: ignore[attr-defined]
    everything = " ".join(str(vars(r)) for r in records)
    assert SECRET not in everything and "a-wrong-token-value" not in everything


def test_readyz_names_the_failing_dependency(tmp_path: Path, redis_url: str) -> None:
    good = make_app(tmp_path / "good", DSHUB_REDIS_URL=redis_url)
    response = good.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"journal": "ok", "redis": "ok", "index": "ok"}
    bad = make_app(tmp_path / "bad", DSHUB_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = bad.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["redis"] and body["checks"]["redis"].startswith("error:")
    for app in (good, bad):
        services(app).close()


def test_readyz_fails_when_the_journal_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "data" / "journal.sqlite3").mkdir(parents=True)
    response = make_app(tmp_path).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["journal"]


def test_metrics_count_events_by_kind_and_outcome(client: FlaskClient) -> None:
    def sample(text: str, line_start: str) -> float:
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    series = 'dshub_webhook_events_total{kind="push",outcome="duplicate"}'
    before = sample(client.get("/metrics").get_data(as_text=True), series)
    headers = gitlab_headers("Push Hook")
    client.post(URL, data=push_body(), headers=headers)
    client.post(URL, data=push_body(), headers=headers)
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, series) == before + 1
    assert "dshub_journal_backlog 0.0" in text
    assert "dshub_enqueue_latency_seconds_count" in text
    assert "dshub_webhook_dedupe_hits_total" in text


def test_journal_file_lives_in_the_data_directory(client: FlaskClient, tmp_path: Path) -> None:
    client.post(URL, data=push_body(), headers=gitlab_headers("Push Hook"))
    journal = Journal(tmp_path / "data" / "journal.sqlite3")
    # The hand-over mark rides on the next batch, or is written alone after MARK_LINGER.
    wait_until(lambda: journal.counts() == {"handed_over": 1}, 5, "the hand-over mark")
    assert os.stat(tmp_path / "data" / "journal.sqlite3").st_size > 0


def test_the_fast_path_serves_deliveries_and_hands_everything_else_to_flask(
    app: Flask, client: FlaskClient, redis_url: str
) -> None:
    # The WSGI adapter serves POST /webhooks/gitlab through the framework-free receiver.
    via_fast_path = client.post(URL, data=push_body(15), headers=gitlab_headers("Push Hook", "a"))
    with app.test_request_context(
        URL, method="POST", data=push_body(16), headers=gitlab_headers("Push Hook", "b")
    ):
        direct = handle_delivery(services(app).settings, services(app).receiver, flask.request)
    assert via_fast_path.status_code == direct.status_code == 202
    fast, other = via_fast_path.get_json(), direct.get_json()
    assert set(fast) == set(other) == {"accepted", "duplicate", "handed_over", "jobs"}
    assert len(_queued(redis_url)) == 2
    # Everything else still goes through Flask: its 405 and the JSON error shape.
    wrong_method = client.get(URL)
    assert wrong_method.status_code == 405
    assert client.get("/healthz").status_code == 200
