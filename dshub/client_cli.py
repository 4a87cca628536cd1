"""Client sub-commands of `dshub` (download, ls, search, versions, create): REST API only, no Flask."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dshub.client import ApiClient, ClientConfig
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
    lines = [
        f"{item['name']:20} {str(item.get('commit_sha', ''))[:12]}  "
        f"{item.get('file_count', '?')} files  {item.get('total_size', '?')} bytes"
        for item in data.get("items", [])
    ]
    _print_json_or(args, data, lines)
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


def register(sub: Any) -> None:
    """Add the client sub-commands to the `dshub` argument parser."""
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
