"""The anchor: what a user would write from the same design card, served with the same gunicorn.

A Flask view that checks the `X-Gitlab-Token` (constant-time compare), parses the JSON,
`Queue.enqueue`s an RQ job and answers 202. It is not durable: when Redis is down the event
is lost (dshub journals it, fsync'd, before its 202).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import redis
from flask import Flask, abort, request
from rq import Queue

app = Flask(__name__)
_SECRET = os.environ["DSHUB_WEBHOOK_SECRET"].encode()
_QUEUE = Queue("anchor", connection=redis.Redis.from_url(os.environ["DSHUB_REDIS_URL"]))


def handle(event: dict[str, Any]) -> None:
    """The job a worker would run (none runs in the benchmark)."""


@app.post("/webhooks/gitlab")
def receive() -> tuple[str, int]:
    """Check the token, parse the event, enqueue it, answer 202."""
    token = request.headers.get("X-Gitlab-Token", "").encode()
    if not hmac.compare_digest(token, _SECRET):
        abort(401)
    event = request.get_json(force=True, silent=True)
    if not isinstance(event, dict):
        abort(400)
    _QUEUE.enqueue(handle, event)
    return "", 202
