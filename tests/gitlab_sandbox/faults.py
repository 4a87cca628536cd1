"""Fault knobs: failing, slowing or hanging API calls, and dropping/duplicating/reordering/delaying webhooks.

Tests set them through the Python object (`sandbox.faults`) or, for a sandbox running in a
subprocess, through `POST /-/sandbox/faults` with the same names as JSON.
"""

from __future__ import annotations

import email.utils
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.gitlab_sandbox.http import Response

FAILURE_STATUSES = (500, 502, 503, 429)


@dataclass
class ApiFailure:
    """Fail the next `count` matching API calls with `status`."""

    count: int
    status: int
    retry_after: int = 0
    path_contains: str = ""
    method: str = ""


@dataclass
class WebhookFaults:
    """Counters for outgoing webhook deliveries (each consumed per delivery)."""

    drop: int = 0
    duplicate: int = 0
    reorder: int = 0
    delay: float = 0.0


@dataclass
class Faults:
    """The knobs of one sandbox; thread-safe."""

    latency: float = 0.0
    hang_until: float = 0.0  # time.monotonic(): API calls arriving before it wait until then
    failures: list[ApiFailure] = field(default_factory=list)
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        retry_after: int = 0,
        path_contains: str = "",
        method: str = "",
    ) -> None:
        """Answer the next `count` API calls (optionally only matching ones) with `status`."""
        if status not in FAILURE_STATUSES:
            raise ValueError(f"status must be one of {FAILURE_STATUSES}")
        with self.lock:
            self.failures.append(
                ApiFailure(count, status, int(retry_after), path_contains, method.upper())
            )

    def set_latency(self, seconds: float) -> None:
        """Delay every API call by `seconds`."""
        self.latency = max(0.0, float(seconds))

    def hang_for(self, seconds: float) -> None:
        """Hold every API call that arrives in the next `seconds` until that window ends (a
        GitLab that stops answering: clients with a shorter timeout give up)."""
        self.hang_until = time.monotonic() + max(0.0, float(seconds))

    def drop_webhooks(self, count: int = 1) -> None:
        """Silently drop the next `count` webhook deliveries (recorded as dropped)."""
        with self.lock:
            self.webhooks.drop += count

    def duplicate_webhooks(self, count: int = 1) -> None:
        """Send each of the next `count` deliveries twice (same Idempotency-Key)."""
        with self.lock:
            self.webhooks.duplicate += count

    def reorder_webhooks(self, count: int = 2) -> None:
        """Hold the next `count` deliveries and release them in reverse order."""
        with self.lock:
            self.webhooks.reorder += count

    def delay_webhooks(self, seconds: float) -> None:
        """Wait `seconds` before each outgoing delivery."""
        self.webhooks.delay = max(0.0, float(seconds))

    def reset(self) -> None:
        """Turn every knob off."""
        with self.lock:
            self.latency = 0.0
            self.hang_until = 0.0
            self.failures.clear()
            self.webhooks = WebhookFaults()

    def apply(self, method: str, raw_path: str) -> Response | None:
        """Wait out a hang, sleep for the latency, then consume a matching failure and return
        its response."""
        hung = self.hang_until - time.monotonic()
        if hung > 0:
            time.sleep(hung)
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            for failure in self.failures:
                if failure.path_contains and failure.path_contains not in raw_path:
                    continue
                if failure.method and failure.method != method:
                    continue
                failure.count -= 1
                if failure.count <= 0:
                    self.failures.remove(failure)
                return failure_response(failure.status, failure.retry_after)
        return None

    def take(self, knob: str) -> bool:
        """Consume one unit of a webhook counter (`drop`, `duplicate`, `reorder`)."""
        with self.lock:
            value = getattr(self.webhooks, knob)
            if value > 0:
                setattr(self.webhooks, knob, value - 1)
                return True
            return False

    def snapshot(self) -> dict[str, Any]:
        """The knobs as JSON (GET /-/sandbox/faults)."""
        with self.lock:
            return {
                "latency": self.latency,
                "hang": round(max(0.0, self.hang_until - time.monotonic()), 3),
                "fail_next": [vars(f).copy() for f in self.failures],
                "webhooks": vars(self.webhooks).copy(),
            }

    def configure(self, body: dict[str, Any]) -> None:
        """Apply a JSON description (POST /-/sandbox/faults); ValueError for bad values."""
        if "latency" in body:
            self.set_latency(float(body["latency"]))
        if "hang" in body:
            self.hang_for(float(body["hang"]))
        fail = body.get("fail_next")
        if fail is not None:
            if not isinstance(fail, dict):
                raise ValueError("fail_next must be an object")
            self.fail_next(
                int(fail.get("count", 1)),
                int(fail.get("status", 500)),
                int(fail.get("retry_after", 0)),
                str(fail.get("path_contains", "")),
                str(fail.get("method", "")),
            )
        hooks = body.get("webhooks") or {}
        if not isinstance(hooks, dict):
            raise ValueError("webhooks must be an object")
        if "drop" in hooks:
            self.drop_webhooks(int(hooks["drop"]))
        if "duplicate" in hooks:
            self.duplicate_webhooks(int(hooks["duplicate"]))
        if "reorder" in hooks:
            self.reorder_webhooks(int(hooks["reorder"]))
        if "delay" in hooks:
            self.delay_webhooks(float(hooks["delay"]))


def failure_response(status: int, retry_after: int = 0) -> Response:
    """GitLab-shaped failure answers: JSON 500, gateway text 502/503, Rack::Attack 429."""
    if status == 429:
        reset = int(time.time()) + retry_after
        headers = {
            "Retry-After": str(retry_after),
            "RateLimit-Name": "throttle_authenticated_api",
            "RateLimit-Limit": "60",
            "RateLimit-Observed": "61",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset),
            "RateLimit-ResetTime": email.utils.formatdate(reset, usegmt=True),
        }
        return Response(429, "Retry later\n", headers, "text/plain")
    if status == 500:
        return Response(500, {"message": "500 Internal Server Error"})
    text = "502 Bad Gateway" if status == 502 else "503 Service Unavailable"
    return Response(status, f"<html><body><h1>{text}</h1></body></html>\n", None, "text/html")
