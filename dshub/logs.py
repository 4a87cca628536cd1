"""Structured logging: one JSON object per line, never a secret."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the `extra=` fields alongside the message."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def plain_stream(stream: Any) -> Any:
    """`stream` without colorama's wrapper around it.

    `import dvc` runs `colorama.init()`, which wraps sys.stdout/stderr in a writer that scans
    every line for ANSI escapes to strip (stderr is not a terminal); under webhook load that
    scan cost more CPU than formatting the log line. JSON lines hold no escapes to strip.
    """
    return getattr(stream, "_StreamWrapper__wrapped", stream)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send dshub's logs to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(plain_stream(sys.stderr))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # Our lines carry no caller fields; finding the caller of every record (a stack walk) cost
    # a third of each webhook's log line. logging's documented switch ("Optimization") turns
    # that off for the whole process. Thread and process fields stay: gunicorn's own format
    # prints %(process)d, and a None there is a "Logging error" traceback.
    logging._srcfile = None
    root = logging.getLogger("dshub")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # At DEBUG, botocore and urllib3 log signed request headers (access key id and signature);
    # they never go below INFO, whatever DSHUB_LOG_LEVEL says.
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
