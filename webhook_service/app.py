"""`create_app` builds the Flask application from validated settings."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping

import psycopg
from flask import Flask

from dshub.config import ConfigError, Settings, ensure_secret_key, load_settings
from dshub.logs import configure_logging
from dshub.services import Services
from indexer.errors import DshubError
from indexer.ingest.journal import JournalError
from indexer.sites.registry import ensure_embedded_site
from webhook_service import (
    api_archive,
    api_datasets,
    api_docs,
    api_files,
    api_gc,
    api_manage,
    api_merge_requests,
    api_projects,
    api_sites,
    api_upload_sessions,
    api_uploads,
    api_versions,
    bodies,
    csrf,
    dvc_remote,
    errors,
    health,
    metrics,
    ops,
    params,
    ui,
    webhooks,
)
from webhook_service.app_settings import SERVICES

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
            exc.report()
            raise
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask(__name__)
    app.config["SECRET_KEY"] = ensure_secret_key(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes
    resources = Services(settings, on_hand_over=webhooks.record_hand_over)
    app.extensions[SERVICES] = resources

    params.init_app(app)  # before any route: `<int:...>` is the one id rule
    errors.register(app)
    app.register_blueprint(health.blueprint)
    webhooks.register(app)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(metrics.blueprint)
    for api in (
        api_datasets,
        api_files,
        api_archive,
        api_sites,
        api_gc,
        api_merge_requests,
        api_docs,
        api_manage,
        api_uploads,
        api_upload_sessions,
        api_versions,
        api_projects,
    ):
        app.register_blueprint(api.blueprint)
    dvc_remote.init_app(app)
    csrf.init_app(app)
    ui.init_app(app)
    app.wsgi_app = bodies.BodyFraming(app.wsgi_app)  # type: ignore[method-assign]  # outermost
    resources.install_jobs()
    if settings.embedded:
        embedded = resources.receiver

        @app.before_request
        def _start_embedded_worker() -> None:
            # Journal rows accepted before a restart are drained as soon as this process
            # serves anything (a health probe is enough), not only on the next webhook.
            try:
                embedded.start_background()
            except JournalError as exc:
                # Not this request's problem: /readyz names the journal, webhooks answer 503.
                log.warning("the embedded worker cannot start: %s", exc)

    # Scheduled reconciles: one per interval across every gunicorn worker (journal slots).
    resources.start_scheduler()
    if settings.index_url.startswith("sqlite:"):
        ensure_embedded_site(resources.sites, settings.data_dir)
    try:
        # Open and migrate the index now, so the first request and /readyz find it usable.
        resources.index  # noqa: B018 - opened for its side effect
    except (DshubError, psycopg.Error, sqlite3.Error, OSError) as exc:
        # Not fatal: /readyz answers 503 naming the index until it can be reached.
        log.warning("the index is not usable yet: %s", getattr(exc, "message", type(exc).__name__))
    return app
