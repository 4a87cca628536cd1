"""The webhook receiver without a web framework: authentication, signatures, dedupe, submit.

`Receiver` is one process's durable acceptance: the journal, the group-commit intake, the
Redis hand-over and the background drainer (Redis) or embedded worker (no Redis). Every
producer of work — a webhook, a storage-site selection, the embedded scheduler — submits a
`Delivery` through `Receiver.submit`, so each is journaled, deduplicated and handed over the
same way. The HTTP adapter is `webhook_service.webhooks`; everything here is tested from bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import redis

from indexer.errors import NotAuthenticated, Unavailable
from indexer.ingest.events import header
from indexer.ingest.intake import Intake, Receipt
from indexer.ingest.journal import Delivery, Entry, Journal
from indexer.ingest.queue import Drainer, EmbeddedWorker, HandOver, RedisQueue, hand_over

log = logging.getLogger("dshub.webhooks")

SIGNATURE_TOLERANCE = 300  # seconds, as the Standard Webhooks reference libraries use
REDIS_RETRY_AFTER = 2.0  # after a Redis failure, requests leave hand-over to the drainer
AUTH_FAILED = "authentication failed: missing or invalid X-Gitlab-Token"
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")

HandOverHook = Callable[[list[HandOver]], None]


class Receiver:
    """Per-process state of the receiver: the journal, the queue and the background thread."""

    def __init__(
        self, data_dir: Path, redis_url: str | None, on_hand_over: HandOverHook | None = None
    ) -> None:
        self.data_dir = data_dir
        self.queue = RedisQueue.from_url(redis_url) if redis_url else None
        self._on_hand_over: HandOverHook = on_hand_over or (lambda _: None)
        self._journal: Journal | None = None
        self._lock = threading.Lock()
        self._background: Drainer | EmbeddedWorker | None = None
        self._background_pid = 0
        self._intake: Intake | None = None
        self._redis_down_until = 0.0

    def journal(self) -> Journal:
        """The journal, opened on first use (raises `JournalError` if it cannot be)."""
        with self._lock:
            if self._journal is None:
                self._journal = Journal.in_directory(self.data_dir)
            return self._journal

    def start_background(self) -> None:
        """Start this process's drainer (Redis) or embedded worker (no Redis), once per process."""
        with self._lock:
            alive = self._background is not None and self._background.is_alive()
            if alive and self._background_pid == os.getpid():
                return
        journal = self.journal()
        thread: Drainer | EmbeddedWorker
        if self.queue is not None:
            thread = Drainer(journal, self.queue, on_hand_over=self._on_hand_over)
        else:
            thread = EmbeddedWorker(journal)
        with self._lock:
            self._background, self._background_pid = thread, os.getpid()
        thread.start()

    def intake(self) -> Intake:
        """The group-commit queue deliveries are submitted to (opens the journal)."""
        journal = self.journal()
        with self._lock:
            if self._intake is None or self._intake.journal is not journal:
                self._intake = Intake(
                    journal,
                    self.queue,
                    redis_usable=self.can_hand_over_inline,
                    redis_failed=self._redis_failed,
                    on_hand_over=self._on_hand_over,
                    on_deferred=self.wake,
                )
            return self._intake

    def submit(self, delivery: Delivery) -> Receipt:
        """Journal `delivery` durably and hand its jobs over; the answer once it is settled.

        The one way work enters dshub. Raises `JournalError` when the journal cannot be
        written (nothing was accepted).
        """
        intake = self.intake()
        self.start_background()
        return intake.submit(delivery).wait_settled()

    def wake(self) -> None:
        """Tell the background thread there is work (it also polls every second)."""
        if self._background is not None:
            self._background.wake.set()

    def stop(self) -> None:
        """Stop the background threads and close the journal (tests, shutdown)."""
        if self._intake is not None:
            self._intake.stop()
            self._intake = None
        if self._background is not None:
            self._background.stop()
            self._background = None
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def can_hand_over_inline(self) -> bool:
        """True when a request should enqueue its own event (Redis configured, not known down)."""
        return self.queue is not None and time.monotonic() >= self._redis_down_until

    def hand_over_now(self, entry: Entry) -> bool:
        """Try to enqueue a just-journaled row; False leaves it to the drainer (Redis down)."""
        if self.queue is None:
            self.wake()
            return False
        journal = self.journal()
        try:
            self._on_hand_over(hand_over(journal, self.queue, [entry]))
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)
            self.wake()
            return False
        return True

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER
        log.warning(
            "redis unreachable; event kept in the journal", extra={"error": type(exc).__name__}
        )


# ------------------------------------------------------------------------ verification


def authenticate(
    secrets: Sequence[str], signing_key: bytes | None, headers: Mapping[str, str]
) -> None:
    """Accept a delivery carrying one of `secrets` as `X-Gitlab-Token`, or a signature to check.

    Raises `Unavailable` when no secret and no signing key is configured, `NotAuthenticated`
    otherwise; nothing in the message tells what the expected value is.
    """
    if not secrets and signing_key is None:
        raise Unavailable("webhooks are disabled: the operator has not set DSHUB_WEBHOOK_SECRET")
    token = header(headers, "X-Gitlab-Token")
    token_ok = False
    if token is not None and secrets:
        given = token.encode("utf-8", "surrogateescape")
        # Compare with every secret (no early exit) so timing does not tell which one matched.
        matches = [hmac.compare_digest(given, secret.encode()) for secret in secrets]
        if not any(matches):
            raise NotAuthenticated(AUTH_FAILED)
        token_ok = True
    # Without a valid token, only a signature (checked once the body is read) can vouch.
    if not token_ok and not has_signature(signing_key, headers):
        raise NotAuthenticated(AUTH_FAILED)


def has_signature(signing_key: bytes | None, headers: Mapping[str, str]) -> bool:
    """True when a signing key is configured and the delivery carries signature headers."""
    return signing_key is not None and any(
        header(headers, name) is not None for name in SIGNATURE_HEADERS
    )


def verify_signature(
    key: bytes, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Check a Standard Webhooks signature (`webhook-id/-timestamp/-signature`) or raise 401."""
    webhook_id = header(headers, "webhook-id")
    stamp = header(headers, "webhook-timestamp")
    signatures = header(headers, "webhook-signature")
    if not webhook_id or not stamp or not signatures:
        raise NotAuthenticated(
            "authentication failed: webhook-id, webhook-timestamp and webhook-signature "
            "must be sent together"
        )
    if not _UNIX_SECONDS.fullmatch(stamp):
        raise NotAuthenticated("authentication failed: webhook-timestamp is not Unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > SIGNATURE_TOLERANCE:
        raise NotAuthenticated(
            f"authentication failed: webhook-timestamp is more than {SIGNATURE_TOLERANCE} "
            "seconds away from the server's clock"
        )
    signed = webhook_id.encode("utf-8", "surrogateescape") + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    valid = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1":
            given = value.encode("utf-8", "surrogateescape")
            valid = hmac.compare_digest(expected, given) or valid
    if not valid:
        raise NotAuthenticated("authentication failed: invalid webhook-signature")


def dedupe_key(headers: Mapping[str, str], body: bytes) -> str:
    """Idempotency-Key, else X-Gitlab-Event-UUID, else a digest of the event header and body."""
    for name, prefix in (("Idempotency-Key", "idempotency"), ("X-Gitlab-Event-UUID", "event")):
        value = header(headers, name)
        if value:
            return f"{prefix}:{value[:200]}"
    digest = hashlib.sha256()
    digest.update((header(headers, "X-Gitlab-Event") or "").encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(body)
    return f"body:{digest.hexdigest()}"
