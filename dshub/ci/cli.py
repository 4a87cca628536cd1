"""`dshub ci push | gc | validate | publish`: the command-line edge of the CI jobs.

Every failure ends as one line on stderr (`dshub ci <job>: <message>`) and a non-zero exit
code: 1 when a check failed, 2 when the job is misconfigured (a missing variable, a foreign
remote, a bad input).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dshub.config import CiVariables
from indexer.errors import DshubError


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value!r}")
    return number


def _jobs(value: str) -> int:
    try:
        number = int(float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value!r}")
    return number


def _prepare() -> tuple[Path, CiVariables]:
    """Process hygiene for DVC, then the job's directory and variables."""
    from indexer.data.dvc_env import apply_to_process

    variables = CiVariables(dict(os.environ))
    apply_to_process(variables.dvc_state_dir())
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    root = Path.cwd()  # the job runs in the clone (CI_PROJECT_DIR in GitLab)
    return root, variables


def _push(args: argparse.Namespace) -> int:
    from dshub.ci.push import run_push

    root, variables = _prepare()
    run_push(root, variables, remote_name=args.remote or None, jobs=args.jobs, verify=args.verify)
    return 0


def _gc(args: argparse.Namespace) -> int:
    from dshub.ci.gc import GcOptions, run_gc

    root, variables = _prepare()
    options = GcOptions(
        remote_name=args.remote or None,
        jobs=args.jobs,
        min_age_hours=args.min_age_hours,
        delete=args.delete,
        dshub_url=args.dshub_url or None,
        report_path=Path(args.report) if args.report else None,
    )
    run_gc(root, variables, options)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from dshub.ci.validate import ValidateOptions, run_validate

    root, variables = _prepare()
    extensions = tuple(e.strip() for e in (args.allowed_extensions or "").split(",") if e.strip())
    options = ValidateOptions(
        remote_name=args.remote or None,
        jobs=args.jobs,
        max_git_file_mb=args.max_git_file_mb,
        allowed_extensions=extensions,
        junit_path=Path(args.junit) if args.junit else None,
        diff_path=Path(args.diff) if args.diff else None,
    )
    run_validate(root, variables, options)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from dshub.ci.publish import publish

    variables = CiVariables(dict(os.environ))
    token = variables.require(
        args.token_variable, "a GitLab token with Maintainer on the component project"
    )
    publish(
        Path(args.source),
        gitlab_url=args.gitlab_url,
        token=token,
        project_path=args.project,
        version=args.version,
    )
    return 0


def add_ci_parser(sub: Any) -> None:
    """Register `ci` and its sub-commands on the `dshub` sub-parser collection `sub`."""
    ci = sub.add_parser("ci", help="job logic of the dshub CI/CD components")
    ci_sub = ci.add_subparsers(dest="ci_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--remote", default="", help="DVC remote name (default: core.remote)")
        parser.add_argument("--jobs", type=_jobs, default=8, help="parallel transfers and checks")

    push = ci_sub.add_parser("push", help="dvc push, then prove HEAD's objects are in storage")
    common(push)
    push.add_argument("--verify", type=_bool, default=True, help="check presence after pushing")
    push.set_defaults(func=_guard("push", _push))

    gc = ci_sub.add_parser(
        "gc", help="collect unreferenced, old objects from the dataset's storage"
    )
    common(gc)
    gc.add_argument("--min-age-hours", type=_non_negative, default=72.0)
    gc.add_argument(
        "--delete", type=_bool, default=False, help="true = really delete (default: dry run)"
    )
    gc.add_argument("--dshub-url", default="", help="dshub to ask for indexed versions' objects")
    gc.add_argument("--report", default="dvc-gc-report.json", help="where to write the JSON report")
    gc.set_defaults(func=_guard("gc", _gc))

    validate = ci_sub.add_parser("validate", help="validate pointers, remote and storage")
    common(validate)
    validate.add_argument("--max-git-file-mb", type=_non_negative, default=10.0)
    validate.add_argument("--allowed-extensions", default="", help="comma-separated, empty = any")
    validate.add_argument("--junit", default="validate-storage.xml")
    validate.add_argument("--diff", default="dvc-data-diff.md")
    validate.set_defaults(func=_guard("validate", _validate))

    publish = ci_sub.add_parser("publish", help="publish ci-templates/ as a component project")
    publish.add_argument("--gitlab-url", required=True)
    publish.add_argument("--project", required=True, help="group/project of the component project")
    publish.add_argument("--version", required=True, help="semantic version to tag, e.g. 1.0.0")
    publish.add_argument("--source", default="ci-templates")
    publish.add_argument("--token-variable", default="DSHUB_GITLAB_TOKEN")
    publish.set_defaults(func=_guard("publish", _publish))


def _guard(
    name: str, handler: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except DshubError as exc:
            sys.stdout.flush()
            print(f"dshub ci {name}: {exc.message}", file=sys.stderr)
            return exc.exit_code

    return run
