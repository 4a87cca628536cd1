"""The one accessor request code uses for the process's shared resources.

`create_app` builds one `dshub.services.Services` per application; views reach it (and its
settings) here, never by building resources themselves.
"""

from __future__ import annotations

from flask import Flask, current_app

from dshub.config import Settings
from dshub.services import Services

SERVICES = "dshub.services"


def services(app: Flask | None = None) -> Services:
    """The resources of `app` (default: the current application)."""
    found: Services = (app or current_app).extensions[SERVICES]
    return found


def settings_of(app: Flask) -> Settings:
    """The settings an application was built with."""
    return services(app).settings
