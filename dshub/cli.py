"""The `dshub` command line. Server commands import Flask lazily; client commands never do."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dshub import __version__, admin_cli, client_cli, receiver_cli
from dshub import get as get_cli
from dshub.ci.cli import add_ci_parser
from dshub.config import DOCUMENTED, ConfigError, load_settings


def _cmd_config_check(_args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        exc.report()
        return 2
    print(f"configuration is valid: {settings!r}")
    return 0


def _cmd_config_list(_args: argparse.Namespace) -> int:
    for name, text in DOCUMENTED.items():
        print(f"{name}\t{text}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        load_settings()
    except ConfigError as exc:
        exc.report()
        return 2
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:webhook_service.gunicorn_conf",
    ]
    if args.bind:
        argv += ["--bind", args.bind]
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with gunicorn
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `dshub` command (one sub-command per capability)."""
    parser = argparse.ArgumentParser(prog="dshub", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dshub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web service under gunicorn")
    serve.add_argument("--bind", help="address:port to listen on (default 127.0.0.1:8000)")
    serve.set_defaults(func=_cmd_serve)

    config = sub.add_parser("config", help="inspect the DSHUB_* configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("check", help="validate the environment").set_defaults(
        func=_cmd_config_check
    )
    config_sub.add_parser("list", help="list every setting").set_defaults(func=_cmd_config_list)

    client_cli.register(sub)
    get_cli.register(sub)
    receiver_cli.register(sub)
    admin_cli.register(sub)
    add_ci_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dshub` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
