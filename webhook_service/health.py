"""Liveness: `/healthz` answers as soon as the process can serve requests."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from dshub import __version__

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness only: no dependency is checked here (that is what a readiness probe is for)."""
    return jsonify(status="ok", version=__version__)
