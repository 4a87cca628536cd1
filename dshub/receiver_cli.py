"""The receiver's commands: `dshub worker` (RQ + journal drainer) and `dshub hooks install`.

Heavy imports (rq, python-gitlab) happen inside the commands so other commands start fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dshub.config import ConfigError, Settings, load_settings
from dshub.logs import configure_logging

WEBHOOK_PATH = "/webhooks/gitlab"

# Event flags per hook type: what dshub routes (see indexer/ingest/routing.py). System hooks always
# receive project, group, member and user events; the flags add the repository events.
SYSTEM_FLAGS = {
    "push_events": True,
    "tag_push_events": True,
    "merge_requests_events": True,
    "repository_update_events": True,
}
GROUP_FLAGS = {
    "push_events": True,
    "tag_push_events": True,
    "merge_requests_events": True,
    "releases_events": True,
    "member_events": True,
    "project_events": True,
    "subgroup_events": True,
    "issues_events": False,
    "note_events": False,
    "pipeline_events": False,
    "job_events": False,
    "wiki_page_events": False,
}
PROJECT_FLAGS = {
    "push_events": True,
    "tag_push_events": True,
    "merge_requests_events": True,
    "releases_events": True,
    "issues_events": False,
    "note_events": False,
    "pipeline_events": False,
    "job_events": False,
    "wiki_page_events": False,
}


def _settings() -> Settings | None:
    try:
        return load_settings()
    except ConfigError as exc:
        exc.report()
        return None


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    if not settings.redis_url:
        print(
            "dshub: `dshub worker` needs DSHUB_REDIS_URL; without it `dshub serve` runs jobs "
            "itself (the embedded worker)",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)
    import redis
    from rq import Worker

    from indexer.ingest.journal import Journal, JournalError
    from indexer.ingest.queue import Drainer, RedisQueue

    queue = RedisQueue.from_url(settings.redis_url)
    drainer: Drainer | None = None
    if not args.no_drain:
        try:
            drainer = Drainer(Journal.in_directory(settings.data_dir), queue)
        except JournalError as exc:
            print(f"dshub: {exc.message}", file=sys.stderr)
            return 5
    try:
        queue.ping()
        if drainer is not None:
            drainer.drain_once()
    except (redis.RedisError, OSError) as exc:
        print(f"dshub: Redis is not reachable ({type(exc).__name__})", file=sys.stderr)
        return 5
    if drainer is not None and not args.burst:
        drainer.start()
    scheduler = None
    if settings.reconcile_interval and not args.burst:
        from indexer.ingest.scheduler import redis_scheduler

        scheduler = redis_scheduler(queue, settings.reconcile_interval)
        scheduler.start()
    from dshub.services import Services

    services = Services(settings)
    services.install_jobs()
    worker = Worker([queue.queue], connection=queue.connection)
    try:
        worker.work(burst=args.burst, logging_level=settings.log_level)
    finally:
        if scheduler is not None:
            scheduler.stop()
        if drainer is not None:
            drainer.stop()
        services.close()
    return 0


def _cmd_hooks_install(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    problems = []
    if not settings.gitlab_url or not settings.gitlab_token:
        problems.append("set DSHUB_GITLAB_URL and DSHUB_GITLAB_TOKEN (an admin token for --system)")
    if not settings.webhook_secrets:
        problems.append("set DSHUB_WEBHOOK_SECRET: GitLab sends it with every delivery")
    if problems:
        for line in problems:
            print(f"dshub: {line}", file=sys.stderr)
        return 2
    url = args.url or settings.public_url.rstrip("/") + WEBHOOK_PATH
    import gitlab
    import gitlab.exceptions

    assert settings.gitlab_url is not None  # noqa: S101 - checked above, for mypy
    client = gitlab.Gitlab(settings.gitlab_url, private_token=settings.gitlab_token, timeout=30)
    try:
        action, hook_id = install_hook(client, args, url, settings.webhook_secrets[0])
    except (gitlab.exceptions.GitlabError, OSError) as exc:
        return _report_gitlab_error(exc, args.system)
    print(f"{action} hook {hook_id} -> {url}")
    return 0


def _report_gitlab_error(exc: Exception, system: bool) -> int:
    import gitlab.exceptions

    code = getattr(exc, "response_code", None)
    if isinstance(exc, gitlab.exceptions.GitlabAuthenticationError) or code == 401:
        message, status = "GitLab refused DSHUB_GITLAB_TOKEN (401)", 4
    elif code == 403:
        needed = "an administrator token" if system else "Maintainer or Owner access"
        message, status = f"GitLab answered 403: installing this hook needs {needed}", 4
    elif code == 404:
        message, status = "GitLab answered 404: no such group or project", 3
    elif isinstance(exc, (OSError, gitlab.exceptions.GitlabConnectionError)) or code is None:
        message, status = f"cannot reach GitLab ({type(exc).__name__})", 5
    else:
        message, status = f"GitLab error {code}: {getattr(exc, 'error_message', exc)}", 1
    print(f"dshub: {message}", file=sys.stderr)
    return status


def install_hook(client: Any, args: argparse.Namespace, url: str, secret: str) -> tuple[str, int]:
    """Create the hook, or update the one already pointing at `url`; returns (action, hook id)."""
    if args.system:
        manager, flags = client.hooks, SYSTEM_FLAGS
    elif args.group is not None:
        manager, flags = client.groups.get(args.group, lazy=True).hooks, GROUP_FLAGS
    else:
        manager, flags = client.projects.get(args.project, lazy=True).hooks, PROJECT_FLAGS
    attributes: dict[str, Any] = {
        "url": url,
        "token": secret,
        "enable_ssl_verification": url.startswith("https://"),
        **flags,
    }
    existing = [hook for hook in manager.list(iterator=True) if hook.url == url]
    if not existing:
        hook = manager.create(attributes)
        return "created", int(hook.id)
    hook = existing[0]
    if args.system:
        # python-gitlab's system-hook manager has no update; GitLab's API does (PUT /hooks/:id).
        client.http_put(f"/hooks/{hook.id}", post_data=attributes)
        return "updated", int(hook.id)
    for key, value in attributes.items():
        setattr(hook, key, value)
    hook.save()
    return "updated", int(hook.id)


def register(sub: Any) -> None:
    """Add `worker` and `hooks install` to the `dshub` sub-command parser."""
    worker = sub.add_parser(
        "worker", help="run an RQ worker on DSHUB_REDIS_URL and the journal drainer"
    )
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument(
        "--no-drain",
        action="store_true",
        help="do not hand this host's journal (DSHUB_DATA_DIR) to the queue",
    )
    worker.set_defaults(func=_cmd_worker)

    hooks = sub.add_parser("hooks", help="manage the GitLab hooks that feed dshub")
    hooks_sub = hooks.add_subparsers(dest="hooks_command", required=True)
    install = hooks_sub.add_parser(
        "install", help="register (or update) dshub's webhook in GitLab, idempotently"
    )
    target = install.add_mutually_exclusive_group(required=True)
    target.add_argument("--system", action="store_true", help="a system hook (admin token)")
    target.add_argument("--group", metavar="ID", help="a group hook (id or full path)")
    target.add_argument("--project", metavar="ID", help="a project hook (id or full path)")
    install.add_argument("--url", help=f"receiver URL (default DSHUB_PUBLIC_URL + {WEBHOOK_PATH})")
    install.set_defaults(func=_cmd_hooks_install)
