"""Parsing and routing from recorded bytes and headers alone (no services)."""

from __future__ import annotations

import hashlib
import json

import pytest

from indexer.errors import InvalidInput
from indexer.ingest.events import (
    IgnoredEvent,
    InvalidEvent,
    PushEvent,
    TagPushEvent,
    is_blank_sha,
    parse_event,
)
from indexer.ingest.routing import JobRequest, dump_jobs, load_jobs, remove_ref_job, route
from tests.receiver.conftest import FIXTURES, fixture_body, push_body
from tests.receiver.routing_table import TABLE


def test_every_fixture_file_is_in_the_routing_table() -> None:
    assert sorted(path.name for path in FIXTURES.glob("*.json")) == sorted(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_documented_payload_routes_to_the_expected_jobs(name: str) -> None:
    hook, expected = TABLE[name]
    event = parse_event({"X-Gitlab-Event": hook}, fixture_body(name))
    if expected is None:
        assert isinstance(event, IgnoredEvent)
        assert event.reason
        assert route(event) == []
    else:
        assert not isinstance(event, IgnoredEvent)
        assert route(event) == expected


def test_push_job_id_is_stable_per_project_and_ref() -> None:
    event = parse_event({"x-gitlab-event": "push hook"}, fixture_body("push.json"))
    (job,) = route(event)
    ref_digest = hashlib.sha1(b"refs/heads/master").hexdigest()
    assert job == JobRequest(
        "indexer.sync.jobs.sync_ref",
        (
            15,
            "refs/heads/master",
            "95790bf891e76fee5e1747ab589903a6a1f80f22",
            "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        ),
        f"sync_ref-15-{ref_digest}",
    )
    later = parse_event({"X-Gitlab-Event": "Push Hook"}, push_body(15, "refs/heads/master"))
    assert route(later)[0].job_id == job.job_id


@pytest.mark.parametrize("blank", ["0" * 40, "0" * 64])
def test_branch_deletion_is_recognised_by_an_all_zero_after_of_any_length(blank: str) -> None:
    body = push_body(7, "refs/heads/gone", after=blank, checkout_sha=None)
    event = parse_event({"X-Gitlab-Event": "Push Hook"}, body)
    assert isinstance(event, PushEvent) and event.deleted and event.after is None
    assert route(event) == [remove_ref_job(7, "refs/heads/gone")]
    assert route(event)[0].args == (7, "refs/heads/gone")


def test_tag_deletion_is_recognised_by_a_null_checkout_sha() -> None:
    payload = json.loads(fixture_body("tag_push.json"))
    payload.update(before=payload["after"], after="0" * 40, checkout_sha=None)
    event = parse_event({"X-Gitlab-Event": "Tag Push Hook"}, json.dumps(payload).encode())
    assert isinstance(event, TagPushEvent) and event.deleted
    (job,) = route(event)
    assert job.func == "indexer.sync.jobs.remove_ref"
    assert job.args == (1, "refs/tags/v1.0.0")


def test_a_null_checkout_sha_alone_marks_a_deletion() -> None:
    body = push_body(3, after="1" * 40, checkout_sha=None)
    event = parse_event({"X-Gitlab-Event": "Push Hook"}, body)
    assert isinstance(event, PushEvent) and event.deleted


def test_blank_sha_detection() -> None:
    assert is_blank_sha("0" * 40) and is_blank_sha("0" * 64)
    assert not is_blank_sha("0" * 39 + "1") and not is_blank_sha(None) and not is_blank_sha("")


def test_branch_creation_passes_no_before() -> None:
    event = parse_event({"X-Gitlab-Event": "Push Hook"}, push_body(before="0" * 40))
    assert route(event)[0].args[2] is None


def test_repository_update_with_a_deleted_ref_removes_it() -> None:
    payload = json.loads(fixture_body("system_repository_update.json"))
    payload["changes"].append({"before": "a" * 40, "after": "0" * 40, "ref": "refs/tags/old"})
    event = parse_event({"X-Gitlab-Event": "System Hook"}, json.dumps(payload).encode())
    jobs = route(event)
    assert [job.name for job in jobs] == ["sync_ref", "remove_ref"]
    assert jobs[1].args == (1, "refs/tags/old")


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({}, push_body(), "missing header 'X-Gitlab-Event'"),
        ({"X-Gitlab-Event": "Push Hook"}, b"[1, 2]", "body must be a JSON object, not an array"),
        ({"X-Gitlab-Event": "Push Hook"}, b"\xff", "body is not valid UTF-8"),
        ({"X-Gitlab-Event": "Push Hook"}, b'{"a": NaN}', "body is not valid JSON"),
        ({"X-Gitlab-Event": "Push Hook"}, b"{}", "missing field 'event_name'"),
        (
            {"X-Gitlab-Event": "Push Hook"},
            json.dumps({"object_kind": "push", "ref": "refs/heads/x", "after": "a" * 40}).encode(),
            "missing field 'project_id'",
        ),
        (
            {"X-Gitlab-Event": "Push Hook"},
            push_body(project_id="15"),
            "field 'project_id' must be a positive integer",
        ),
        (
            {"X-Gitlab-Event": "Push Hook"},
            push_body(ref="main"),
            "field 'ref' must be a full ref name starting with 'refs/heads/'",
        ),
        (
            {"X-Gitlab-Event": "Push Hook"},
            push_body(after="not-a-sha"),
            "field 'after' must be a hexadecimal object id",
        ),
        (
            {"X-Gitlab-Event": "Tag Push Hook"},
            push_body(),
            "header X-Gitlab-Event 'Tag Push Hook' does not match the body's event 'push'",
        ),
        (
            {"X-Gitlab-Event": "Merge Request Hook"},
            json.dumps({"object_kind": "merge_request", "project": {"id": 3}}).encode(),
            "missing field 'object_attributes.iid'",
        ),
        (
            {"X-Gitlab-Event": "System Hook"},
            json.dumps({"event_name": "project_create"}).encode(),
            "missing field 'project_id'",
        ),
    ],
)
def test_malformed_delivery_names_what_is_wrong(
    headers: dict[str, str], body: bytes, message: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(headers, body)
    assert caught.value.message.startswith(message)
    assert isinstance(caught.value, InvalidInput) and caught.value.status == 400


def test_unknown_hook_is_ignored_even_without_an_event_name() -> None:
    event = parse_event({"X-Gitlab-Event": "Confidential Issue Hook"}, b"{}")
    assert isinstance(event, IgnoredEvent)
    assert event.reason == "'Confidential Issue Hook' events are not used by dshub"


def test_payload_urls_are_never_part_of_a_job() -> None:
    for name, (hook, expected) in TABLE.items():
        if expected:
            text = dump_jobs(route(parse_event({"X-Gitlab-Event": hook}, fixture_body(name))))
            assert "http" not in text and "example.com" not in text, name


def test_jobs_survive_the_journal_round_trip() -> None:
    jobs = route(parse_event({"X-Gitlab-Event": "Push Hook"}, fixture_body("push.json")))
    assert load_jobs(dump_jobs(jobs)) == jobs
