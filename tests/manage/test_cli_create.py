"""`dshub create` end to end: the CLI (REST only) against the API served by gunicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest

from tests.gitlab_sandbox.server import Sandbox
from tests.manage.conftest import ManageWorld, build_world
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn


@pytest.fixture
def served(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> Iterator[tuple[ManageWorld, Gunicorn]]:
    world = build_world(
        tmp_path, gitlab_sandbox, gitlab_admin, f"sqlite:///{tmp_path / 'index.sqlite3'}"
    )
    server = start_gunicorn(tmp_path / "gunicorn", world.settings, workers=1)
    try:
        yield world, server
    finally:
        server.stop()


def _dshub(url: str, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSHUB_URL": url, "DSHUB_CONFIG": "/nonexistent/dshub.json"}
    env.pop("DSHUB_TOKEN", None)
    if token:
        env["DSHUB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "dshub", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dshub_create_makes_a_searchable_dataset_and_reports_refusals_with_exit_codes(
    served: tuple[ManageWorld, Gunicorn],
) -> None:
    world, server = served
    token = world.tokens["maintainer"]
    done = _dshub(
        server.url,
        token,
        "create",
        "Chest X-ray",
        "--namespace",
        "imaging",
        "--description",
        "frontal views",
        "--visibility",
        "internal",
        "--topic",
        "xray",
        "--topic",
        "chest",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["path_with_namespace"] == "imaging/chest-x-ray"
    assert created["topics"] == ["chest", "xray"]
    found = _dshub(server.url, token, "search", "frontal", "--json")
    assert [item["id"] for item in json.loads(found.stdout)["items"]] == [created["id"]]

    taken = _dshub(server.url, token, "create", "Chest X-ray", "--namespace", "imaging")
    assert taken.returncode == 2 and "already exists" in taken.stderr
    too_open = _dshub(
        server.url, token, "create", "Open", "--namespace", "imaging", "--visibility", "public"
    )
    assert too_open.returncode == 2 and "'internal'" in too_open.stderr
    refused = _dshub(server.url, world.tokens["developer"], "create", "D", "--namespace", "imaging")
    assert refused.returncode == 4 and "may not create projects" in refused.stderr
    anonymous = _dshub(server.url, None, "create", "A", "--namespace", "imaging")
    assert anonymous.returncode == 4 and "sign in" in anonymous.stderr
    assert token is not None and token not in done.stderr + taken.stderr + refused.stderr
    text = _dshub(server.url, token, "create", "Plain", "--namespace", "maintainer")
    assert text.returncode == 0 and text.stdout.startswith("created dataset ")
