"""A body is read to its Content-Length or refused, and broken chunked framing is a 400:
through a real gunicorn, on the webhook receiver (its own WSGI fast path) and the API.
(The DVC remote's uploads: tests/dvc_remote/test_http_contract.py.)"""

from __future__ import annotations

import itertools
import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.http_front.conftest import SECRET, Front
from tests.receiver.conftest import push_body


def _head(method: str, path: str, framing: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Gitlab-Event: Push Hook\r\nX-Gitlab-Token: {SECRET}\r\n"
        f"Idempotency-Key: {uuid.uuid4()}\r\n{framing}\r\n{extra}\r\n"
    ).encode()


def _status_and_json(answer: bytes) -> tuple[int, dict[str, object]]:
    """The first response's status and JSON body. (When a route answers without reading a
    broken body, gunicorn then fails to drain it and writes a 400 page after our answer.)"""
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    assert lengths, answer  # our JSON answers are never chunked
    body = rest[: int(lengths[0].split(b":", 1)[1])]
    return status, json.loads(body) if body.startswith(b"{") else {}


def _chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_a_webhook_body_shorter_than_its_content_length_is_refused(front: Front) -> None:
    body = push_body(project_id=41)
    whole = front.send(_head("POST", "/webhooks/gitlab", f"Content-Length: {len(body)}") + body)
    assert _status_and_json(whole)[0] == 202
    # The same JSON, declared 40 bytes longer than sent, then the client half-closes.
    body = push_body(project_id=42)
    short = front.send(
        _head("POST", "/webhooks/gitlab", f"Content-Length: {len(body) + 40}") + body
    )
    status, answer = _status_and_json(short)
    assert status == 400, short
    assert "ended after" in json.dumps(answer) and "Content-Length" in json.dumps(answer)


def test_broken_chunked_framing_is_a_400_on_the_receiver_and_the_api(front: Front) -> None:
    body = push_body(project_id=43)
    half = len(body) // 2
    broken = {
        "size not hex": b"zz\r\n" + body + b"\r\n0\r\n\r\n",
        "size too large for the data": b"%x\r\n" % (len(body) + 100) + body,
        "no CRLF after a chunk": b"%x\r\n" % half + body[:half] + b"XX" + body[half:],
        "negative size": b"-5\r\n" + body + b"\r\n0\r\n\r\n",
        "ends mid-chunk": b"%x\r\n" % len(body) + body[:half],
    }
    te = "Transfer-Encoding: chunked"
    fine = front.send(_head("POST", "/webhooks/gitlab", te) + _chunked(body[:half], body[half:]))
    assert _status_and_json(fine)[0] == 202
    for name, framing in broken.items():
        for path in ("/webhooks/gitlab", "/api/v1/storage-sites", "/api/v1/datasets/1/gc"):
            answer = front.send(_head("POST", path, te) + framing)
            status, _ = _status_and_json(answer)
            assert 400 <= status < 500, (name, path, answer[:300])
    log = front.log()
    assert "Traceback" not in log and "internal error" not in log


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cuts=st.lists(st.integers(0, 400), max_size=6),
    corrupt=st.one_of(
        st.none(), st.tuples(st.integers(0, 2000), st.binary(min_size=1, max_size=4))
    ),
    declared_extra=st.integers(-5, 50),
    chunked=st.booleans(),
)
def test_any_framing_of_a_webhook_gets_a_precise_answer_never_a_500(
    front: Front,
    cuts: list[int],
    corrupt: tuple[int, bytes] | None,
    declared_extra: int,
    chunked: bool,
) -> None:
    body = push_body(project_id=44, ref=f"refs/heads/b{uuid.uuid4().hex[:8]}")
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    if chunked:
        raw = _chunked(*(body[a:b] for a, b in itertools.pairwise(points) if b > a))
        framing = "Transfer-Encoding: chunked"
    else:
        raw = body
        framing = f"Content-Length: {max(len(body) + declared_extra, 0)}"
    if corrupt is not None:
        at = corrupt[0] % (len(raw) + 1)
        raw = raw[:at] + corrupt[1] + raw[at:]
    answer = front.send(_head("POST", "/webhooks/gitlab", framing) + raw)
    status, _ = _status_and_json(answer)
    assert status in (200, 202, 400, 411, 413, 415), answer[:300]
