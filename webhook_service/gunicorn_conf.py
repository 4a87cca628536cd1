"""gunicorn settings for dshub: threaded workers so long downloads never block webhooks.

Every value can be overridden with gunicorn's own environment variable or flags; the bind
address comes from DSHUB_BIND (default 127.0.0.1:8000, loopback only).
"""

import os
import sys

from dshub.config import ConfigError, load_server_settings

try:
    _server = load_server_settings()
except ConfigError as _exc:
    _exc.report()
    raise SystemExit(2) from None

bind = _server.bind
# gthread, except that a request gunicorn cannot parse is never quoted (log line or 400 page).
worker_class = "webhook_service.gunicorn_worker.ThreadWorker"
workers = _server.workers
threads = _server.threads
# Webhook senders give up after 10 s; downloads can be long, so the worker timeout is the
# heartbeat timeout of an idle worker, not a request deadline (gthread keeps beating).
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
# Keep the request line of every access log entry free of query strings (tokens may be there).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
# ... and with the path's control characters escaped (no forged lines, no NUL bytes), and the
# error log redacted (query strings, credential values, GitLab tokens).
logger_class = "webhook_service.access_log.AccessLogger"
wsgi_app = "webhook_service:create_app()"


# Prometheus multiprocess mode: every worker writes its samples into one directory, set here in
# the master before any worker imports prometheus_client. A directory the operator chose is
# wiped at start (stale files from a previous run would be summed in); otherwise a fresh one.
def _prometheus_dir() -> str:
    import tempfile

    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        for name in os.listdir(chosen):
            if name.endswith(".db"):
                os.unlink(os.path.join(chosen, name))
        return chosen
    return tempfile.mkdtemp(prefix="dshub-prometheus-")


os.environ["PROMETHEUS_MULTIPROC_DIR"] = _prometheus_dir()


def worker_exit(_arbiter: object, worker: object) -> None:
    """Close the worker's services (journal, threads, index) when gunicorn stops it."""
    app = getattr(worker, "wsgi", None)
    resources = getattr(app, "extensions", {}).get("dshub.services")
    if resources is not None:
        resources.close()


def child_exit(_server: object, worker: object) -> None:
    """Let prometheus-client drop the live gauges of a worker that exited."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]


def _plain_standard_streams() -> None:
    """Undo colorama's wrapping of stdout/stderr (done by `import dvc` through this package).

    gunicorn's access and error logs are created on these streams; the wrapper scans every line
    for ANSI escapes to strip, which costs CPU on every request and changes nothing here.
    """

    from dshub.logs import plain_stream

    sys.stdout = plain_stream(sys.stdout)
    sys.stderr = plain_stream(sys.stderr)


_plain_standard_streams()
