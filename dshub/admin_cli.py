"""Administrator commands of `dshub`: `dshub reconcile [--project ID]`.

They run in this process with the `DSHUB_*` settings (service token, index URL), not
through the queue, and print what they did. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dshub.config import ConfigError, load_settings


def _cmd_reconcile(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        exc.report()
        return 2
    from dshub.logs import configure_logging
    from dshub.services import Services
    from indexer.errors import DshubError
    from indexer.sync import refs as sync

    configure_logging(settings.log_level, settings.log_format)
    services = Services(settings)
    try:
        report = sync.reconcile(services.job_context, args.project)
    except DshubError as exc:
        print(f"dshub: reconcile failed: {exc.message}", file=sys.stderr)
        return exc.exit_code
    finally:
        services.close()
    scope = "every project" if args.project is None else f"project {args.project}"
    print(
        f"reconcile of {scope}: seen {report.seen}, synced {report.synced}, "
        f"removed {report.removed}, failed {len(report.failed)}"
    )
    for project_id, message in sorted(report.failed.items()):
        print(f"failed: project {project_id}: {message}")
    return 1 if report.failed else 0


def _project_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a numeric GitLab project id, not {text!r}")
    return int(text)


def register(sub: Any) -> None:
    """Add `reconcile` to the `dshub` sub-command parser."""
    reconcile = sub.add_parser(
        "reconcile",
        help="repair the index against GitLab now (every project, or one); exit 1 on failures",
    )
    reconcile.add_argument(
        "--project", metavar="ID", type=_project_id, help="only this project (numeric id)"
    )
    reconcile.set_defaults(func=_cmd_reconcile)
