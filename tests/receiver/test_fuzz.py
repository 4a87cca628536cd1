"""Property-based fuzzing of headers and body: the receiver never answers 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.receiver.conftest import FIXTURES, SECRET, make_app
from tests.receiver.routing_table import TABLE
from webhook_service.app_settings import services

URL = "/webhooks/gitlab"
HOOKS = [*sorted({hook for hook, _ in TABLE.values()}), "", "push hook", "System  Hook"]
PAYLOADS = [json.loads((FIXTURES / name).read_bytes()) for name in sorted(TABLE)]

# Header values travel as latin-1 on the wire; CR/LF cannot appear in them.
header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"),
    max_size=60,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "project_id",
    "ref",
    "after",
    "before",
    "checkout_sha",
    "event_name",
    "object_kind",
    "changes",
    "object_attributes",
    "project",
    "user_id",
    "group_id",
]


@st.composite
def mutated_payload(draw: st.DrawFn) -> bytes:
    payload: dict[str, Any] = dict(draw(st.sampled_from(PAYLOADS)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(FIELDS + sorted(payload)))
        if draw(st.booleans()):
            payload[key] = draw(json_values)
        else:
            payload.pop(key, None)
    return json.dumps(payload).encode()


bodies = st.one_of(
    mutated_payload(),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
)


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["X-Gitlab-Event"] = draw(st.sampled_from(HOOKS) | header_text)
    headers["X-Gitlab-Token"] = draw(st.sampled_from([SECRET, SECRET, "wrong"]) | header_text)
    headers["Content-Type"] = draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"])
        | header_text
    )
    for name in (
        "Idempotency-Key",
        "X-Gitlab-Event-UUID",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ):
        if draw(st.booleans()):
            headers[name] = draw(header_text)
    return headers


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str) -> Iterator[Flask]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    app = make_app(
        tmp,
        DSHUB_REDIS_URL=module_redis_url,
        DSHUB_WEBHOOK_SIGNING_KEY="whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        DSHUB_WEBHOOK_MAX_BYTES="4096",
    )
    yield app
    services(app).close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(headers=header_sets(), body=bodies)
def test_no_delivery_ever_gets_a_server_error(
    fuzz_app: Flask, headers: dict[str, str], body: bytes
) -> None:
    response = fuzz_app.test_client().post(URL, data=body, headers=headers)
    assert response.status_code in (200, 202, 400, 401, 413, 415), response.get_data()
    payload = response.get_json()
    assert isinstance(payload, dict)
    if response.status_code >= 400:
        assert set(payload["error"]) == {"code", "message"}
        assert "Traceback" not in payload["error"]["message"]
