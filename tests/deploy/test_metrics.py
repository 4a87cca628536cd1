"""The metrics the alert rules (deploy/prometheus/alerts.yml) rely on, read from a real /metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker

from indexer.ingest.queue import RedisQueue
from tests.deploy.lint import exported_metrics
from webhook_service import create_app
from webhook_service.metrics import RECONCILE_JOB_ID


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_answer_is_counted_by_endpoint_method_and_status(tmp_path: Path) -> None:
    client = create_app({"DSHUB_DATA_DIR": str(tmp_path)}).test_client()
    before = _samples(client.get("/metrics").get_data(as_text=True))
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/route/123").status_code == 404
    after = _samples(client.get("/metrics").get_data(as_text=True))

    def grew(endpoint: str, status: str) -> float:
        key = (
            "dshub_http_responses_total",
            (("endpoint", endpoint), ("method", "GET"), ("status", status)),
        )
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("health.healthz", "200") == 1
    # No route matched: one bounded label value, never the requested path.
    assert grew("none", "404") == 1
    assert not any("/no/such" in str(key) for key in after)


def test_a_failed_scheduled_reconcile_shows_on_metrics(tmp_path: Path, redis_url: str) -> None:
    app = create_app({"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_REDIS_URL": redis_url})
    client = app.test_client()
    first = _samples(client.get("/metrics").get_data(as_text=True))
    assert first[("dshub_queue_failed_jobs", ())] == 0
    assert ("dshub_reconcile_last_run_failed", ()) not in first  # none recorded yet

    queue = RedisQueue.from_url(redis_url)
    # A job under the scheduler's stable reconcile id that fails (int("x") raises).
    queue.queue.enqueue("builtins.int", "x", job_id=RECONCILE_JOB_ID)
    assert _samples(client.get("/metrics").get_data(as_text=True))[("dshub_queue_jobs", ())] == 1
    SimpleWorker([queue.queue], connection=queue.connection).work(burst=True)

    after = _samples(client.get("/metrics").get_data(as_text=True))
    assert after[("dshub_reconcile_last_run_failed", ())] == 1
    assert after[("dshub_queue_failed_jobs", ())] == 1
    assert after[("dshub_queue_jobs", ())] == 0
    assert after[("dshub_reconcile_last_ended_timestamp_seconds", ())] > 0


def test_the_lint_knows_every_exported_metric_name() -> None:
    names = exported_metrics()
    for name in (
        "dshub_http_responses_total",
        "dshub_webhook_events_total",
        "dshub_journal_backlog",
        "dshub_enqueue_latency_seconds_bucket",
        "dshub_reconcile_last_run_failed",
        "dshub_queue_failed_jobs",
    ):
        assert name in names, name
    assert "dshub_journal_backlog_total" not in names
