"""Client sub-commands of `dshub` (download, ls, search, versions, create, upload, version,
compare, restore, revert, new-project, login, logout): REST API only, no Flask."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from dshub import login
from dshub.client import ApiClient
from dshub.config import ClientConfig
from dshub.download import download_file
from indexer.errors import DshubError, InvalidInput


def _client() -> ApiClient:
    return ApiClient(ClientConfig.load())


def _report(exc: DshubError) -> int:
    print(f"dshub: {exc.message}", file=sys.stderr)
    return exc.exit_code


def _cmd_download(args: argparse.Namespace) -> int:
    pairs: list[str] = args.pairs
    if len(pairs) % 2:
        return _report(InvalidInput("give NAME DATASET_PATH pairs (an even number of arguments)"))
    try:
        client = _client()
        for name, dataset_path in zip(pairs[::2], pairs[1::2], strict=True):
            done = download_file(
                client,
                args.project_id,
                dataset_path,
                ref=args.ref,
                output_dir=Path(args.output),
                name=name,
                progress=not args.quiet,
            )
            if not args.quiet:
                resumed = f", resumed at byte {done.resumed_from}" if done.resumed_from else ""
                print(
                    f"{done.path}  {done.size} bytes  {done.hash_name}:{done.hash_value}{resumed}"
                )
    except DshubError as exc:
        return _report(exc)
    return 0


def _print_json_or(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for line in lines:
            print(line)


def _cmd_ls(args: argparse.Namespace) -> int:
    try:
        params = {"ref": args.ref, "path": args.path or ""}
        data = _client().get_json(f"/api/v1/datasets/{args.project_id}/tree", params)
    except DshubError as exc:
        return _report(exc)
    items = data.get("items", [])
    lines = [
        f"{item.get('type', '?'):4} {item.get('size') if item.get('size') is not None else '-':>12} "
        f"{item.get('path')}"
        for item in items
    ]
    _print_json_or(args, data, lines)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"q": args.query, "per_page": args.limit}
    if args.topic:
        params["topic"] = args.topic
    if args.namespace:
        params["namespace"] = args.namespace
    try:
        data = _client().get_json("/api/v1/datasets", params)
    except DshubError as exc:
        return _report(exc)
    lines = [
        f"{item['id']:>8}  {item.get('path_with_namespace', '')}  {item.get('description', '')}"
        for item in data.get("items", [])
    ]
    lines.append(f"({data.get('total', len(lines))} datasets)")
    _print_json_or(args, data, lines)
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    try:
        data = _client().get_json(f"/api/v1/datasets/{args.project_id}/versions")
    except DshubError as exc:
        return _report(exc)
    lines = []
    for item in data.get("items", []):
        author = (item.get("author") or {}).get("username")
        lines.append(
            f"{item['name']:20} {str(item.get('commit_sha', ''))[:12]}  "
            f"{item.get('file_count', '?')} files  {item.get('total_size', '?')} bytes"
            + (f"  by {author}" if author else "")
        )
        notes = str(item.get("release_notes") or "").strip()
        lines += [f"    {line}" for line in notes.splitlines()]
    _print_json_or(args, data, lines)
    return 0


def _cmd_version_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.ref:
        body["ref"] = args.ref
    if args.message:
        body["message"] = args.message
    try:
        data = _client().send_json("POST", f"/api/v1/datasets/{args.project_id}/versions", body)
    except DshubError as exc:
        return _report(exc)
    line = f"version {data['name']} at {str(data['commit_sha'])[:12]}"
    _print_json_or(args, data, [line])
    return 0


def _cmd_version_delete(args: argparse.Namespace) -> int:
    path = f"/api/v1/datasets/{args.project_id}/versions/{args.name}"
    try:
        data = _client().send_json("DELETE", path)
    except DshubError as exc:
        return _report(exc)
    _print_json_or(args, data, [f"deleted version {args.name}"])
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    params = {"from": args.base, "to": args.head, "limit": args.limit}
    try:
        data = _client().get_json(f"/api/v1/datasets/{args.project_id}/compare", params)
    except DshubError as exc:
        return _report(exc)
    signs = {"added": "+", "removed": "-", "modified": "M"}
    lines = [f"{signs[kind]} {item['path']}" for kind in signs for item in data.get(kind, [])]
    lines.append(
        f"{data.get('added_total', 0)} added, {data.get('removed_total', 0)} removed, "
        f"{data.get('modified_total', 0)} modified; +{data.get('bytes_added', 0)} "
        f"-{data.get('bytes_removed', 0)} bytes"
    )
    lines += [f"note: {problem}" for problem in data.get("problems", [])]
    _print_json_or(args, data, lines)
    return 0


def _revision_summary(answer: dict[str, Any]) -> list[str]:
    lines = [f"restored  {path}" for path in answer.get("changed", [])]
    if answer.get("commit"):
        lines.append(f"commit {answer['commit']} on {answer.get('branch')}")
    else:
        lines.append("nothing changed: the branch's data already is the version's")
    if answer.get("kept"):
        lines.append(f"({answer['kept']})")
    merge_request = answer.get("merge_request")
    if merge_request:
        lines.append(f"merge request !{merge_request.get('iid')} {merge_request.get('web_url')}")
    return lines


def _cmd_restore(args: argparse.Namespace) -> int:
    body = {"version": args.version, **_write_options(args)}
    try:
        data = _client().send_json("POST", f"/api/v1/datasets/{args.project_id}/restore", body)
    except DshubError as exc:
        return _report(exc)
    _print_json_or(args, data, _revision_summary(data))
    return 0


def _cmd_revert(args: argparse.Namespace) -> int:
    body = {"sha": args.sha, **_write_options(args)}
    body.pop("message", None)
    try:
        data = _client().send_json("POST", f"/api/v1/datasets/{args.project_id}/revert", body)
    except DshubError as exc:
        return _report(exc)
    _print_json_or(args, data, _revision_summary(data))
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "namespace": args.namespace,
        "visibility": args.visibility,
        "topics": args.topic or [],
    }
    if args.description is not None:
        body["description"] = args.description
    if args.path:
        body["path"] = args.path
    try:
        data = _client().send_json("POST", "/api/v1/datasets", body)
    except DshubError as exc:
        return _report(exc)
    line = f"created dataset {data['id']}: {data['path_with_namespace']}  {data.get('web_url', '')}"
    _print_json_or(args, data, [line])
    return 0


def _write_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("branch", "new_branch"):
        if getattr(args, name, None):
            options[name] = getattr(args, name)
    if getattr(args, "merge_request", False):
        options["merge_request"] = True
    if getattr(args, "message", None):
        options["message"] = args.message
    return options


def _summary(answer: dict[str, Any]) -> list[str]:
    lines = [f"{f['action']:9} {f['path']}" for f in answer.get("files", [])]
    if answer.get("commit"):
        lines.append(f"commit {answer['commit']} on {answer.get('branch')}")
    else:
        lines.append("nothing changed: every file already was as given")
    merge_request = answer.get("merge_request")
    if merge_request:
        lines.append(f"merge request !{merge_request.get('iid')} {merge_request.get('web_url')}")
    return lines


def _cmd_upload(args: argparse.Namespace) -> int:
    from dshub import upload

    try:
        files = upload.collect(args.paths)
        folder = args.folder
        if folder is None and args.layout == "directory":
            directories = [p for p in args.paths if Path(p).is_dir()]
            folder = Path(directories[0]).resolve().name if len(directories) == 1 else None
        options = _write_options(args)
        options.pop("message", None)
        options.update(folder=folder or "", layout=args.layout)
        if args.confirm:
            options["confirm"] = True
        answer = upload.upload(
            _client(),
            args.project_id,
            files,
            options=options,
            message=args.message,
            jobs=args.jobs,
            progress=not args.quiet,
        )
    except DshubError as exc:
        return _report(exc)
    _print_json_or(args, answer, _summary(answer))
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from dshub import upload

    try:
        answer = upload.remove(_client(), args.project_id, args.paths, _write_options(args))
    except DshubError as exc:
        return _report(exc)
    _print_json_or(args, answer, _summary(answer))
    return 0


def _cmd_mv(args: argparse.Namespace) -> int:
    from dshub import upload

    try:
        answer = upload.move(
            _client(), args.project_id, args.source, args.target, _write_options(args)
        )
    except DshubError as exc:
        return _report(exc)
    _print_json_or(args, answer, _summary(answer))
    return 0


def _write_arguments(parser: Any) -> None:
    parser.add_argument("--project-id", type=int, required=True)
    parser.add_argument("--branch", help="branch to change (default: the default branch)")
    parser.add_argument("-m", "--message", help="commit message")
    parser.add_argument("--new-branch", help="commit to this new branch instead")
    parser.add_argument(
        "--merge-request", action="store_true", help="open a merge request from --new-branch"
    )
    parser.add_argument("--json", action="store_true")


def register_writes(sub: Any) -> None:
    """Add `upload`, `rm` and `mv` to the `dshub` argument parser."""
    up = sub.add_parser(
        "upload",
        help="upload files or a directory into a dataset (one commit)",
        description="Upload FILES or a DIR (its files, named relative to it) into --folder.",
    )
    _write_arguments(up)
    up.add_argument("--folder", help="dataset folder to upload into (default: the root)")
    up.add_argument("--layout", choices=("files", "directory"), default="files")
    up.add_argument("--confirm", action="store_true", help="allow many per-file pointers")
    up.add_argument("-j", "--jobs", type=int, default=8, help="parallel transfers (default 8)")
    up.add_argument("--quiet", action="store_true", help="no progress bar")
    up.add_argument("paths", nargs="+", metavar="FILES|DIR")
    up.set_defaults(func=_cmd_upload)

    rm = sub.add_parser("rm", help="delete dataset files or folders (one commit)")
    _write_arguments(rm)
    rm.add_argument("paths", nargs="+", metavar="PATH")
    rm.set_defaults(func=_cmd_rm)

    mv = sub.add_parser("mv", help="rename a dataset file or folder (one commit)")
    _write_arguments(mv)
    mv.add_argument("source", metavar="FROM")
    mv.add_argument("target", metavar="TO")
    mv.set_defaults(func=_cmd_mv)


def register_versions(sub: Any) -> None:
    """Add `version create|delete|list`, `compare`, `restore` and `revert`."""
    version = sub.add_parser("version", help="make, delete and list a dataset's versions")
    actions = version.add_subparsers(dest="version_command", required=True)
    create = actions.add_parser(
        "create",
        help="tag a ref as a version with release notes (never moved: make a new one)",
    )
    create.add_argument("--project-id", type=int, required=True)
    create.add_argument("--ref", help="branch, tag or commit (default: the default branch)")
    create.add_argument("-m", "--message", help="the release notes (and tag message)")
    create.add_argument("--json", action="store_true")
    create.add_argument("name", help="the version's name, e.g. v0.2.0")
    create.set_defaults(func=_cmd_version_create)
    delete = actions.add_parser("delete", help="delete a version and its release")
    delete.add_argument("--project-id", type=int, required=True)
    delete.add_argument("--json", action="store_true")
    delete.add_argument("name")
    delete.set_defaults(func=_cmd_version_delete)
    listing = actions.add_parser("list", help="list versions with notes and author")
    listing.add_argument("--project-id", type=int, required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_versions)

    compare = sub.add_parser("compare", help="files added, removed, modified between two refs")
    compare.add_argument("--project-id", type=int, required=True)
    compare.add_argument("--limit", type=int, default=100, help="files per list (default 100)")
    compare.add_argument("--json", action="store_true")
    compare.add_argument("base", metavar="FROM")
    compare.add_argument("head", metavar="TO")
    compare.set_defaults(func=_cmd_compare)

    restore = sub.add_parser(
        "restore", help="one commit making the branch's data that of a version"
    )
    _write_arguments(restore)
    restore.add_argument("version")
    restore.set_defaults(func=_cmd_restore)

    revert = sub.add_parser("revert", help="revert one commit (GitLab's revert)")
    _write_arguments(revert)
    revert.add_argument("sha")
    revert.set_defaults(func=_cmd_revert)


def _cmd_new_project(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "namespace": args.namespace, "ref": args.ref}
    if args.path:
        body["paths"] = args.path
    if args.project_path:
        body["path"] = args.project_path
    try:
        data = _client().send_json("POST", f"/api/v1/datasets/{args.project_id}/projects", body)
    except DshubError as exc:
        return _report(exc)
    lines = [f"created project {data['id']}: {data['path_with_namespace']}  {data['web_url']}"]
    lines += [
        f"  imports {i['path']} at {data['rev']} ({data['rev_lock'][:12]})" for i in data["imports"]
    ]
    lines.append(f"  git clone {data['http_url_to_repo']} && dvc pull   (after dshub login)")
    _print_json_or(args, data, lines)
    return 0


def _login_target(args: argparse.Namespace) -> tuple[list[login.Host], str, str | None]:
    """The hosts, the user name and (for --ci) the token."""
    env = os.environ
    gitlab_url = args.gitlab_url or env.get("CI_SERVER_URL") or env.get("GITLAB_URL")
    dshub_url = args.dshub_url or env.get("DSHUB_URL")
    if dshub_url is None:
        try:
            dshub_url = ClientConfig.load().url
        except DshubError:
            dshub_url = None
    urls = [u for u in (gitlab_url, dshub_url) if u]
    if not urls:
        raise InvalidInput("give --gitlab-url and --dshub-url (or set CI_SERVER_URL, DSHUB_URL)")
    hosts = list(dict.fromkeys(login.Host.of(u) for u in urls))
    if args.ci:
        return hosts, login.JOB_USER, env.get("CI_JOB_TOKEN") or None
    return hosts, login.PERSONAL_USER, None


def _cmd_login(args: argparse.Namespace) -> int:
    try:
        hosts, user, token = _login_target(args)
        if token is None and args.ci:
            raise InvalidInput("--ci needs CI_JOB_TOKEN (run it inside a GitLab CI job)")
        if token is None:
            token = (
                sys.stdin.readline().strip()
                if args.token_stdin
                else getpass.getpass("GitLab token (not shown): ").strip()
            )
        done = login.login(hosts, token, user)
    except DshubError as exc:
        return _report(exc)
    for line in done:
        print(line)
    return 0


def _cmd_logout(args: argparse.Namespace) -> int:
    try:
        hosts, user, _ = _login_target(args)
        done = login.logout(hosts, user)
    except DshubError as exc:
        return _report(exc)
    for line in done:
        print(line)
    return 0


def register_projects(sub: Any) -> None:
    """`new-project`, `login` and `logout`."""
    new = sub.add_parser(
        "new-project",
        help="start a new project from a dataset version (DVC import, no credential committed)",
    )
    new.add_argument("--project-id", type=int, required=True, help="the dataset's id")
    new.add_argument("--ref", required=True, help="the version (tag), branch or commit")
    new.add_argument("--name", required=True, help="the new project's name")
    new.add_argument("--namespace", required=True, help="group or user namespace: path or id")
    new.add_argument("--path", action="append", help="a dataset path to import (repeat)")
    new.add_argument("--project-path", help="the new project's GitLab path")
    new.add_argument("--json", action="store_true")
    new.set_defaults(func=_cmd_new_project)
    for name, func, text in (
        ("login", _cmd_login, "store your GitLab token for git and DVC (git credential, netrc)"),
        ("logout", _cmd_logout, "remove what dshub login stored"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--gitlab-url", help="GitLab's URL (default: $CI_SERVER_URL, $GITLAB_URL)")
        cmd.add_argument("--dshub-url", help="dshub's URL (default: $DSHUB_URL, the config file)")
        cmd.add_argument("--ci", action="store_true", help="use CI_JOB_TOKEN (inside a CI job)")
        if name == "login":
            cmd.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
        cmd.set_defaults(func=func)


def register(sub: Any) -> None:
    """Add the client sub-commands to the `dshub` argument parser."""
    register_writes(sub)
    register_versions(sub)
    register_projects(sub)
    download = sub.add_parser(
        "download",
        help="download dataset files at a ref",
        description="Download files: NAME DATASET_PATH pairs; a leading / means the dataset root.",
    )
    download.add_argument("--project-id", type=int, required=True)
    download.add_argument("--ref", help="tag, branch or commit sha (default: default branch)")
    download.add_argument("--output", default=".", help="directory to write into")
    download.add_argument("--quiet", action="store_true", help="no progress or summary")
    download.add_argument("pairs", nargs="+", metavar="NAME DATASET_PATH")
    download.set_defaults(func=_cmd_download)

    ls = sub.add_parser("ls", help="list a dataset's files at a ref")
    ls.add_argument("--project-id", type=int, required=True)
    ls.add_argument("--ref")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("path", nargs="?")
    ls.set_defaults(func=_cmd_ls)

    search = sub.add_parser("search", help="search datasets you may read")
    search.add_argument("query", nargs="?", default="")
    search.add_argument("--topic", action="append")
    search.add_argument("--namespace")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=_cmd_search)

    versions = sub.add_parser("versions", help="list a dataset's versions (tags)")
    versions.add_argument("--project-id", type=int, required=True)
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(func=_cmd_versions)

    create = sub.add_parser(
        "create",
        help="create a dataset (a GitLab project with a DVC repository) as yourself",
        description="Create a dataset in a namespace you may create projects in "
        "(see GET /api/v1/namespaces). Topics are what the web UI calls tags.",
    )
    create.add_argument("name", help="the dataset's name")
    create.add_argument(
        "--namespace", required=True, help="group or user namespace: full path or id"
    )
    create.add_argument("--description", help="what the dataset holds (goes into its README)")
    create.add_argument(
        "--visibility", choices=("private", "internal", "public"), default="private"
    )
    create.add_argument("--topic", action="append", help="a topic (repeat for more)")
    create.add_argument("--path", help="the project path (default: derived from the name)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_cmd_create)
