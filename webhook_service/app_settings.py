"""Where an application keeps its settings (a module of its own to avoid import cycles)."""

from __future__ import annotations

from flask import Flask

from dshub.config import Settings

SETTINGS = "dshub.settings"


def settings_of(app: Flask) -> Settings:
    """The settings an application was built with."""
    settings: Settings = app.extensions[SETTINGS]
    return settings
