"""The baseline: a bare Flask endpoint that only answers 202, served with the same gunicorn."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.post("/webhooks/gitlab")
def receive() -> tuple[str, int]:
    """Answer 202 without reading, checking or storing anything."""
    return "", 202
