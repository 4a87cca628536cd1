"""The HTTP edge of dshub: a Flask application factory served by gunicorn."""

from webhook_service.app import create_app

__all__ = ["create_app"]
