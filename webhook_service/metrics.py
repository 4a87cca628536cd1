"""Prometheus metrics: `GET /metrics`, multiprocess-aware under gunicorn.

Under gunicorn, `webhook_service.gunicorn_conf` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before any worker starts, so every worker writes its samples there and a scrape
of any worker sees the sum. The journal backlog is read from the journal at scrape time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhook_service.app_settings import SERVICES


class _Metrics:
    """dshub's metric objects, created on first use inside the serving process."""

    def __init__(self) -> None:
        self.events = Counter(
            "dshub_webhook_events",
            "Webhook deliveries by event kind and outcome (accepted, duplicate, ignored, "
            "rejected_<status>, unavailable).",
            ["kind", "outcome"],
        )
        self.dedupe_hits = Counter(
            "dshub_webhook_dedupe_hits",
            "Deliveries recognised as a redelivery of a journaled event.",
        )
        self.jobs = Counter(
            "dshub_jobs_handed_over",
            "Jobs handed to RQ by outcome: enqueued, coalesced into a queued job, or rerun.",
            ["outcome"],
        )
        self.enqueue_latency = Histogram(
            "dshub_enqueue_latency_seconds",
            "Time from a delivery's journal append to its jobs being in the queue.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 120, 600),
        )
        self.dvc_requests = Counter(
            "dshub_dvc_remote_requests",
            "Requests to dshub's DVC remote by method and answer status.",
            ["method", "status"],
        )
        self.dvc_presence_keys = Counter(
            "dshub_dvc_remote_presence_keys",
            "Object keys checked by the DVC remote's batch presence answer, by how the storage "
            "site was asked (stat, head, list, list-prefixes) and whether the key is stored.",
            ["method", "state"],
        )
        self.dvc_stored_bytes = Counter(
            "dshub_dvc_remote_stored_bytes",
            "Bytes of objects stored through dshub's DVC remote (verified uploads).",
        )
        self.http_responses = Counter(
            "dshub_http_responses",
            "HTTP answers by Flask endpoint (the route's name, `none` when no route matched), "
            "method and status code.",
            ["endpoint", "method", "status"],
        )


_created: list[_Metrics] = []
_lock = threading.Lock()


def _metrics() -> _Metrics:
    # gunicorn's master imports this package before its config sets PROMETHEUS_MULTIPROC_DIR,
    # and prometheus-client picks its value class at import time: pick it again here, in the
    # worker, before the first metric exists, so samples go to the shared directory.
    if not _created:
        with _lock:
            if not _created:
                if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
                _created.append(_Metrics())
    return _created[0]


def count_event(kind: str, outcome: str) -> None:
    """Count one delivery by event kind and outcome."""
    _metrics().events.labels(kind, outcome).inc()


def count_dedupe_hit() -> None:
    """Count one redelivery recognised by the journal."""
    _metrics().dedupe_hits.inc()


def observe_hand_over(latency: float, outcomes: tuple[str, ...]) -> None:
    """Record one journal row's hand-over latency and its jobs' enqueue outcomes."""
    metrics = _metrics()
    metrics.enqueue_latency.observe(max(0.0, latency))
    for outcome in outcomes:
        metrics.jobs.labels(outcome).inc()


def count_dvc_request(method: str, status: int) -> None:
    """Count one request to the DVC remote."""
    _metrics().dvc_requests.labels(method, str(status)).inc()


def count_dvc_presence(method: str, stored: int, missing: int) -> None:
    """Count the keys one batch presence answer checked with `method`."""
    counter = _metrics().dvc_presence_keys
    counter.labels(method, "stored").inc(stored)
    counter.labels(method, "missing").inc(missing)


def count_dvc_stored(size: int) -> None:
    """Count the bytes of one object stored through the DVC remote."""
    _metrics().dvc_stored_bytes.inc(size)


blueprint = Blueprint("metrics", __name__)


@blueprint.after_app_request
def _count_response(response: Response) -> Response:
    # The route's endpoint name, never the path: paths hold ids and file names (unbounded).
    endpoint = request.url_rule.endpoint if request.url_rule is not None else "none"
    _metrics().http_responses.labels(endpoint, request.method, str(response.status_code)).inc()
    return response


class _BacklogCollector(Collector):
    """Reads the journal backlog when scraped (a gauge per process would double count)."""

    def __init__(self, backlog: Callable[[], int | None]) -> None:
        self.backlog = backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value = self.backlog()
        if value is not None:
            yield GaugeMetricFamily(
                "dshub_journal_backlog",
                "Journaled deliveries not yet handed to the queue or run.",
                value=value,
            )


RECONCILE_JOB_ID = "reconcile-all"  # the scheduler's stable id (indexer.ingest.routing.reconcile)


class _QueueCollector(Collector):
    """Reads the RQ queue when scraped (Redis mode): queued and failed jobs, the last reconcile.

    Anything Redis cannot answer is left out of the scrape rather than failing it: an absent
    series is what the alert rules' `absent()` / staleness already handle.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        resources = current_app.extensions.get(SERVICES)
        queue = resources.receiver.queue if resources is not None else None
        if queue is None:
            return
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus
        from rq.registry import FailedJobRegistry

        try:
            queued = queue.queue.count
            failed = FailedJobRegistry(queue=queue.queue).count
        except Exception:
            return
        yield GaugeMetricFamily("dshub_queue_jobs", "Jobs waiting in the RQ queue.", value=queued)
        yield GaugeMetricFamily(
            "dshub_queue_failed_jobs",
            "Jobs in RQ's failed-job registry (kept 7 days).",
            value=failed,
        )
        try:
            job = Job.fetch(RECONCILE_JOB_ID, connection=queue.connection)
            status = job.get_status(refresh=False)
        except NoSuchJobError:
            return  # no scheduled reconcile recorded (yet, or its result expired)
        except Exception:
            return
        yield GaugeMetricFamily(
            "dshub_reconcile_last_run_failed",
            "1 when the last scheduled reconcile job failed, 0 otherwise (absent: none recorded).",
            value=1 if status == JobStatus.FAILED else 0,
        )
        if job.ended_at is not None:
            yield GaugeMetricFamily(
                "dshub_reconcile_last_ended_timestamp_seconds",
                "When the last scheduled reconcile job ended (Unix time).",
                value=job.ended_at.timestamp(),
            )


def _backlog() -> int | None:
    resources = current_app.extensions.get(SERVICES)
    if resources is None:
        return None
    try:
        return int(resources.receiver.journal().backlog())
    except Exception:
        return None


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every dshub metric in Prometheus' text format."""
    _metrics()
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_BacklogCollector(_backlog))
    extra.register(_QueueCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return Response(body + generate_latest(extra), mimetype=CONTENT_TYPE_LATEST)
