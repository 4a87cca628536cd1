"""The wheel holds every runtime file and no tests, and runs with no source checkout around.

Built from the working tree, installed into a fresh venv (no system site packages), then
`dshub serve` from that venv — in a temporary working directory, with no PYTHONPATH — on its
embedded default against the GitLab sandbox: its own `dshub hooks install`, then health,
readiness, a search and a download of a dataset indexed through real webhooks.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
import requests

from dshub import __version__
from indexer.sites.registry import LOCAL_SITE
from tests.deploy.installed import ROOT, Installed, clean_environment, install, source_files
from tests.deploy.installed import wheel_names as names_in
from tests.gitlab_sandbox.demo import picture
from tests.gitlab_sandbox.server import Sandbox
from tests.support.dataset_repo import DatasetRepo
from tests.support.services import free_port, wait_until

PACKAGES = ("dshub", "webhook_service", "indexer")
# Source folders installed as data files, and where they land under the install prefix.
DATA_FOLDERS = {
    "ci-templates/": "share/dshub/ci-templates/",
    "gitlab-ci/": "share/dshub/gitlab-ci/",
}
DATA = f"dshub-{__version__}.data/data/"
DIST_INFO = f"dshub-{__version__}.dist-info"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """dshub's wheel, built from this tree and installed into a fresh venv (once per module)."""
    found = install(tmp_path_factory.mktemp("wheel"))
    print(f"wheel built in {found.build_seconds:.1f} s, installed in {found.install_seconds:.1f} s")
    return found


def _expected_members() -> set[str]:
    expected = set()
    for name in source_files():
        top = name.split("/")[0]
        if top in PACKAGES and "__pycache__" not in name:
            expected.add(name)
        for folder, target in DATA_FOLDERS.items():
            if name.startswith(folder):
                expected.add(DATA + target + name.removeprefix(folder))
    return expected


def test_the_wheel_holds_every_runtime_file_and_no_tests(installed: Installed) -> None:
    names = set(names_in(installed.wheel))
    missing = sorted(_expected_members() - names)
    # Templates, static files, SQL migrations, the CI component project: every file of the
    # packages' folders (whatever its suffix) and the data folders, listed one per line.
    assert not missing, "files missing from the wheel (pyproject.toml package-data or " + (
        "data-files):\n" + "\n".join(missing)
    )
    assert any(name.endswith(".sql") for name in names)
    assert any(name.startswith(DATA + "share/dshub/ci-templates/templates/") for name in names)
    tops = {name.split("/")[0] for name in names}
    assert tops == {*PACKAGES, DIST_INFO, f"dshub-{__version__}.data"}, tops
    tests = [n for n in names if n.startswith("tests/") or "/tests/" in n or "conftest" in n]
    assert not tests, tests


def test_installed_code_comes_from_the_venv_not_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    code = (
        "import dshub, indexer, webhook_service, sys\n"
        "print('\\n'.join(m.__file__ for m in (dshub, indexer, webhook_service)))\n"
        "import tests\n"
    )
    result = subprocess.run(
        [str(installed.bin / "python"), "-c", code],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    files = result.stdout.split()
    assert len(files) == 3 and all(f.startswith(str(installed.venv)) for f in files), files
    # The test package is not installed: importing it fails outside the checkout.
    assert result.returncode == 1 and "No module named 'tests'" in result.stderr
    share = installed.venv / "share" / "dshub" / "ci-templates" / "templates"
    assert sorted(p.name for p in share.iterdir()) == sorted(
        p.name for p in (ROOT / "ci-templates" / "templates").iterdir()
    )


@pytest.fixture
def served(
    installed: Installed, gitlab_sandbox: Sandbox, tmp_path: Path, dvc_env: dict[str, str]
) -> Iterator[str]:
    """`dshub serve` from the installed venv, cwd a temporary folder; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = tmp_path / "run"
    run.mkdir()
    env = clean_environment()
    env.update(
        PATH=os.pathsep.join([str(installed.bin), env["PATH"]]),
        DSHUB_DATA_DIR=str(tmp_path / "data"),
        DSHUB_PUBLIC_URL=base,
        DSHUB_GITLAB_URL=gitlab_sandbox.url,
        DSHUB_GITLAB_TOKEN=gitlab_sandbox.admin_token,
        DSHUB_WEBHOOK_SECRET=secrets.token_urlsafe(16),
        DSHUB_WORKERS="1",
        DSHUB_LOG_FORMAT="text",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(installed.bin / "dshub"), "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=run,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        wait_until(lambda: requests.get(f"{base}/healthz", timeout=1).ok, 60, "dshub serve")
        print(f"dshub serve answered /healthz after {time.monotonic() - started:.1f} s")
        # The hook, registered by the installed `dshub hooks install`, then a public dataset
        # pushed with real git and dvc: its events reach the served dshub through the hook.
        hooks = subprocess.run(
            [str(installed.bin / "dshub"), "hooks", "install", "--system"],
            cwd=run,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert hooks.returncode == 0 and hooks.stdout.startswith("created hook"), hooks.stderr
        admin = gitlab.Gitlab(gitlab_sandbox.url, private_token=gitlab_sandbox.admin_token)
        group = admin.groups.create({"name": "demo", "path": "demo", "visibility": "public"})
        project = admin.projects.create(
            {
                "name": "cats",
                "namespace_id": group.id,
                "visibility": "public",
                "initialize_with_readme": True,
                "topics": ["cats"],
                "description": "Cat pictures tracked with DVC",
            }
        )
        project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": LOCAL_SITE})
        repo = DatasetRepo(
            tmp_path / "cats", gitlab_sandbox.url, "demo/cats", gitlab_sandbox.admin_token, dvc_env
        )
        # The embedded default's local site is DSHUB_DATA_DIR/storage, one folder per dataset.
        repo.init_dvc_local(tmp_path / "data" / "storage" / str(project.id))
        repo.write("images/cat0.png", picture(0))
        repo.track("images")
        repo.commit_and_push("Add a cat")
        repo.tag("v0.1.0", "First version")
        print(f"dataset pushed after {time.monotonic() - started:.1f} s")
        yield base
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


def test_dshub_serve_from_the_wheel_indexes_searches_and_downloads(served: str) -> None:
    base = served
    assert requests.get(f"{base}/healthz", timeout=5).json()["status"] == "ok"
    ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text

    def indexed() -> bool:
        answer = requests.get(f"{base}/api/v1/datasets/1/versions", timeout=5)
        return answer.ok and [v["name"] for v in answer.json()["items"]] == ["v0.1.0"]

    wait_until(indexed, 120, "the dataset's version, indexed through webhooks")
    found = requests.get(f"{base}/api/v1/datasets", params={"q": "cats"}, timeout=5).json()
    assert [item["path_with_namespace"] for item in found["items"]] == ["demo/cats"]
    download = requests.get(
        f"{base}/api/v1/datasets/1/files/images/cat0.png", params={"ref": "v0.1.0"}, timeout=10
    )
    assert download.status_code == 200
    assert download.content == picture(0)
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert 'dshub_webhook_events_total{kind="push",outcome="accepted"}' in metrics

    home = requests.get(f"{base}/", timeout=5)
    ui_ships = any(name.startswith("webhook_service/templates/") for name in source_files())
    if home.headers.get("Content-Type", "").startswith("text/html") or ui_ships:
        # The UI exists: its page renders from the installed templates.
        assert home.status_code == 200, home.text[:500]
        assert "<html" in home.text.lower()
    else:
        # No UI yet: `/` is the API's JSON 404 (not a crash, not a stray page).
        assert home.status_code == 404
        assert home.json()["error"]["code"] == "not_found"


def test_the_installed_write_path_finds_the_shipped_dataset_pipeline(
    installed: Installed, tmp_path: Path
) -> None:
    # A new dataset's first commit holds the pipeline: read from the wheel's share/, not a checkout.
    code = "from indexer.write.skeleton import pipeline_text; print(pipeline_text())"
    result = subprocess.run(
        [str(installed.bin / "python"), "-c", code],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == (ROOT / "gitlab-ci" / "dataset.gitlab-ci.yml").read_text().strip()
    )
