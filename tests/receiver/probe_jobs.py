"""Job functions for the queue tests: they record each run in Redis and can be held open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import redis


def held(redis_url: str, name: str) -> None:
    """Record `start`, wait until the test pushes to `<name>:gate`, then record `end`."""
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{name}:runs", "start")
    if client.blpop([f"{name}:gate"], timeout=30) is None:
        raise TimeoutError("the test never opened the gate")
    client.rpush(f"{name}:runs", "end")


def failing(redis_url: str, name: str) -> None:
    """Record a run, wait for the gate, then fail."""
    held(redis_url, name)
    raise RuntimeError("this job always fails")


def record(path: str, *args: object) -> None:
    """Append this call's arguments (and the process id) as one JSON line to `path`."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"args": list(args), "pid": os.getpid()}) + "\n")
