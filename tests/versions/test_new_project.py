"""Start a new project from a private dataset the DVC way, then get its data with git + DVC.

The story: mia makes v0.1.0 and (after changing b.png) v0.2.0 of `lab/cells`; rep, a
Reporter with only a personal access token, starts a project in their own namespace from
v0.1.0; `dshub login` (HOME a temp dir) writes the git credential and netrc; `git clone`
over the sandbox's HTTP git and `dvc pull` give exactly v0.1.0's bytes, `dvc update --rev
v0.2.0` v0.2.0's. No commit of the new project holds the token; out gets the one 404.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from indexer.data.dvc_env import dvc_environment
from indexer.sync.refs import sync_project
from tests.versions.conftest import FILES, VersionsWorld
from webhook_service.app_settings import services as app_services

ACCESS_MODE = "proxy"  # the dataset's remote is dshub's DVC remote (see conftest)
V2 = {**FILES, "b.png": b"b" * 2500}


def _run(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _versions(world: VersionsWorld) -> None:
    if "v2" in world.state:
        return
    made = world.call(
        "POST", f"/api/v1/datasets/{world.pid}/versions", "mia", json={"name": "v0.1.0"}
    )
    assert made.status_code == 201, made.get_json()
    changed = world.upload("mia", {"b.png": V2["b.png"]}, message="Bigger b")
    assert changed.status_code == 201, changed.get_json()
    made = world.call(
        "POST", f"/api/v1/datasets/{world.pid}/versions", "mia", json={"name": "v0.2.0"}
    )
    assert made.status_code == 201, made.get_json()
    world.state["v2"] = True


def _start(world: VersionsWorld) -> dict[str, Any]:
    if "started" not in world.state:
        _versions(world)
        answer = world.call(
            "POST",
            f"/api/v1/datasets/{world.pid}/projects",
            "rep",
            json={"name": "cells-model", "namespace": "rep", "ref": "v0.1.0"},
        )
        assert answer.status_code == 201, answer.get_json()
        world.state["started"] = answer.get_json()
    started: dict[str, Any] = world.state["started"]
    return started


def test_reporter_starts_project_and_pulls_each_version(world: VersionsWorld) -> None:
    started = _start(world)
    assert sorted(i["path"] for i in started["imports"]) == sorted(FILES)
    home = world.root / f"home-{started['id']}"
    home.mkdir()
    env = dvc_environment(world.root / "dvc-client", base={**os.environ, "HOME": str(home)})
    env.pop("NETRC", None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    login = [sys.executable, "-m", "dshub", "login", "--gitlab-url", world.sandbox.url]
    out = _run([*login, "--dshub-url", world.url, "--token-stdin"], env, home, world.tokens["rep"])
    assert world.tokens["rep"] not in out
    for name in (".netrc", ".git-credentials"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    _run([*login, "--dshub-url", world.url, "--token-stdin"], env, home, world.tokens["rep"])
    assert (home / ".netrc").read_text().count("machine 127.0.0.1 ") == 1  # replaced, not added

    _run(["git", "clone", "-q", started["http_url_to_repo"], "model"], env, home)
    model = home / "model"
    pointer = yaml.safe_load((model / "a.png.dvc").read_text())
    assert pointer["deps"][0]["repo"]["rev_lock"] == started["rev_lock"]
    assert "@" not in pointer["deps"][0]["repo"]["url"]
    _run(["dvc", "pull", "-q"], env, model)
    assert {n: (model / n).read_bytes() for n in FILES} == FILES

    pointers = [f"{n}.dvc" for n in FILES]
    _run(["dvc", "update", "-q", "--rev", "v0.2.0", *pointers], env, model)
    assert {n: (model / n).read_bytes() for n in FILES} == V2


def test_no_commit_of_the_new_project_holds_a_token(world: VersionsWorld) -> None:
    started = _start(world)
    clone = world.root / "audit"
    url = started["http_url_to_repo"].replace("://", f"://oauth2:{world.sandbox.admin_token}@")
    world.git("clone", "-q", url, str(clone))
    revs = world.git("rev-list", "--all", cwd=clone).split()
    assert revs
    for token in (*world.tokens.values(), world.sandbox.admin_token):
        found = world.git("grep", "-l", "-F", token, *revs, cwd=clone, check=False)
        assert found == "1", f"a commit holds a token: {found}"
    assert world.git("ls-files", cwd=clone).split().count(".dvc/config") == 1


def test_non_member_gets_the_one_404(world: VersionsWorld) -> None:
    _versions(world)
    body = {"name": "nope", "namespace": "out", "ref": "v0.1.0"}
    answer = world.call("POST", f"/api/v1/datasets/{world.pid}/projects", "out", json=body)
    assert answer.status_code == 404
    assert answer.get_json() == world.call("GET", f"/api/v1/datasets/{world.pid}", "out").get_json()


def test_bad_bodies_and_taken_names(world: VersionsWorld) -> None:
    _start(world)
    path = f"/api/v1/datasets/{world.pid}/projects"
    assert world.call("POST", path, "rep", json={"name": "x"}).status_code == 400
    bad = world.call(
        "POST",
        path,
        "rep",
        json={"name": "x", "namespace": "rep", "ref": "v0.1.0", "paths": ["nope.png"]},
    )
    assert bad.status_code == 422 and "a.png" in bad.get_json()["error"]["message"]
    again = {"name": "cells-model", "namespace": "rep", "ref": "v0.1.0"}
    assert world.call("POST", path, "rep", json=again).status_code == 409
    refused = world.call("POST", path, "rep", json={**again, "namespace": "lab"})
    assert refused.status_code == 403, refused.get_json()


def test_details_list_it_under_used_by_and_it_is_no_dataset(world: VersionsWorld) -> None:
    started = _start(world)
    details = world.call("GET", f"/api/v1/datasets/{world.pid}", "rep").get_json()
    assert [p["id"] for p in details["used_by"]] == [started["id"]]
    assert sync_project(app_services(world.app).job_context, started["id"]) == "not a dataset"
    listed = world.call("GET", "/api/v1/datasets?per_page=100", "rep").get_json()
    assert started["id"] not in [d["id"] for d in listed["items"]]
    assert world.pid in [d["id"] for d in listed["items"]]


def test_details_page_lists_projects_started_from_it(world: VersionsWorld) -> None:
    started = _start(world)
    page = world.call("GET", "/datasets/lab/cells", "rep")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Projects started from this dataset" in html
    assert started["path_with_namespace"] in html
    assert world.tokens["rep"] not in html


def test_pipelines_of_the_new_project_are_let_in_when_the_caller_may(world: VersionsWorld) -> None:
    """A Reporter cannot change the dataset's job token allowlist: the answer says who must.
    A Maintainer's new project is added, so its CI_JOB_TOKEN may read the dataset."""
    refused = _start(world)["pipelines"]
    assert refused["allowed"] is False and refused["added_to_allowlist"] is False
    assert "mia" in refused["must_ask"] and "Maintainer" in refused["message"]
    answer = world.call(
        "POST",
        f"/api/v1/datasets/{world.pid}/projects",
        "mia",
        json={"name": "cells-pipeline", "namespace": "mia", "ref": "v0.1.0"},
    )
    assert answer.status_code == 201, answer.get_json()
    made = answer.get_json()
    assert made["pipelines"]["allowed"] is True and made["pipelines"]["added_to_allowlist"]
    allowlist = world.project().job_token_scope.get().allowlist.list(get_all=True)
    assert made["id"] in {p.id for p in allowlist}


def test_a_clone_of_the_proxy_mode_dataset_pulls_every_upload_through_dshub(
    world: VersionsWorld,
) -> None:
    """Uploads through the API to a proxy-mode site land where dshub's DVC remote serves
    them: a fresh clone names that remote and `dvc pull` (netrc from `dshub login`) gives
    exactly the uploaded bytes, loose files and a tracked directory alike, with git clean."""
    _versions(world)
    scans = {"s1.png": b"1" * 700, "s2.png": b"2" * 900}
    made = world.upload("mia", scans, folder="scans", layout="directory", message="Scans")
    assert made.status_code == 201, made.get_json()
    home = world.root / "home-mia-proxy"
    home.mkdir()
    env = dvc_environment(world.root / "dvc-mia", base={**os.environ, "HOME": str(home)})
    env.pop("NETRC", None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    login = [sys.executable, "-m", "dshub", "login", "--gitlab-url", world.sandbox.url]
    _run([*login, "--dshub-url", world.url, "--token-stdin"], env, home, world.tokens["mia"])
    _run(["git", "clone", "-q", world.project().http_url_to_repo, "cells"], env, home)
    clone = home / "cells"
    remotes = _run(["dvc", "remote", "list"], env, clone).split()
    assert remotes[:2] == ["dshub", f"{world.url}/dvc/{world.pid}"], remotes
    assert (clone / "scans.dvc").is_file() and not (clone / "scans" / "s1.png.dvc").exists()
    _run(["dvc", "pull", "-q"], env, clone)
    assert {n: (clone / n).read_bytes() for n in FILES} == V2
    assert {n: (clone / "scans" / n).read_bytes() for n in scans} == scans
    assert _run(["git", "status", "--porcelain"], env, clone) == ""
    assert "up to date" in _run(["dvc", "status"], env, clone).lower()
