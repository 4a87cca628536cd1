"""`create_app` builds the Flask application from validated settings."""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Mapping

import psycopg
from flask import Flask

from dshub.config import ConfigError, Settings, ensure_secret_key, load_settings
from dshub.logs import configure_logging
from indexer import jobs
from indexer.errors import DshubError
from indexer.journal import JournalError
from indexer.scheduler import journal_scheduler
from indexer.sites import SiteRegistry, ensure_embedded_site
from webhook_service import (
    api_datasets,
    api_files,
    api_gc,
    api_merge_requests,
    api_sites,
    api_upload_sessions,
    api_uploads,
    auth,
    dvc_remote,
    errors,
    health,
    metrics,
    ops,
    webhooks,
)

log = logging.getLogger("dshub.app")


def create_app(config: Settings | Mapping[str, str] | None = None) -> Flask:
    """Build the application.

    `config` is a `Settings`, or a mapping of ``DSHUB_*`` variables that replaces the
    process environment (tests use this), or None to read the environment.
    """
    if isinstance(config, Settings):
        settings = config
    else:
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            # gunicorn calls the factory at boot: say what is wrong, one line each, and stop.
            for line in exc.lines:
                print(f"dshub: configuration error: {line}", file=sys.stderr)
            raise
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask(__name__)
    app.config["SECRET_KEY"] = ensure_secret_key(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes
    app.extensions["dshub.settings"] = settings

    errors.register(app)
    auth.init_app(app, settings)
    app.register_blueprint(health.blueprint)
    webhooks.register(app, settings)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(api_datasets.blueprint)
    app.register_blueprint(api_files.blueprint)
    app.register_blueprint(api_sites.blueprint)
    app.register_blueprint(api_gc.blueprint)
    app.register_blueprint(api_merge_requests.blueprint)
    app.register_blueprint(api_uploads.blueprint)
    app.register_blueprint(api_upload_sessions.blueprint)
    dvc_remote.init_app(app)
    jobs.use_settings(settings)
    if settings.embedded:
        embedded = webhooks.receiver_of(app)

        @app.before_request
        def _start_embedded_worker() -> None:
            # Journal rows accepted before a restart are drained as soon as this process
            # serves anything (a health probe is enough), not only on the next webhook.
            try:
                embedded.start_background()
            except JournalError as exc:
                # Not this request's problem: /readyz names the journal, webhooks answer 503.
                log.warning("the embedded worker cannot start: %s", exc)

    if settings.embedded and settings.reconcile_interval and settings.gitlab_url:
        # Scheduled reconciles: one per interval across every gunicorn worker (journal slots).
        receiver = webhooks.receiver_of(app)

        def run_embedded_jobs() -> None:
            receiver.start_background()
            receiver.wake()

        journal_scheduler(receiver.journal, settings.reconcile_interval, run_embedded_jobs).start()
    if settings.index_url.startswith("sqlite:"):
        ensure_embedded_site(SiteRegistry(settings.index_url), settings.data_dir)
    try:
        # Open and migrate the index now, so the first request and /readyz find it usable.
        api_datasets.index_store(app)
    except (DshubError, psycopg.Error, sqlite3.Error, OSError) as exc:
        # Not fatal: /readyz answers 503 naming the index until it can be reached.
        log.warning("the index is not usable yet: %s", getattr(exc, "message", type(exc).__name__))
    return app
