"""The "start a new project" form and "Replace" a file, against the management world
(`tests.ui_manage.conftest`: sandbox, gunicorn, moto S3): over HTTP (success with the import
pointers in the sandbox, a taken name inline with 409, a hidden dataset's 404 page, a
cross-site post's 403) and in Chromium (dataset page → "start a new project" → the result
page; blob page → "Replace" → one file → the new bytes at the branch), axe-core on the new
pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests
import yaml
from playwright.sync_api import Browser, expect

from tests.ui.browser import chromium, new_context, serious_violations
from tests.ui_manage.conftest import UiWorld, shots, ui_world  # noqa: F401 (fixtures)

FILES = {"cells/a.png": b"\x89PNG cell a", "cells/b.png": b"\x89PNG cell b"}


@pytest.fixture(scope="module")
def world(ui_world: UiWorld) -> UiWorld:  # noqa: F811
    """`imaging/seed` with the site `moto` and two tracked files under `cells/`."""
    manage, pid = ui_world.manage, ui_world.seed_id
    applied = manage.call(
        "maintainer", "POST", f"/api/v1/datasets/{pid}/storage-site", {"name": "moto"}
    )
    assert applied.status_code in (200, 201), applied.get_json()
    sent = requests.post(
        f"{ui_world.server.url}/api/v1/datasets/{pid}/files",
        headers=manage.headers("maintainer"),
        data={"folder": "cells"},
        files=[("files[]", (p.rsplit("/", 1)[1], data, "image/png")) for p, data in FILES.items()],
        timeout=60,
    )
    assert sent.status_code == 201, sent.text
    return ui_world


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _error_of(html: str, field: str) -> str:
    found = re.search(rf'<p id="{field}-error" class="field-error" role="alert">([^<]*)</p>', html)
    assert found, f"no inline error for {field}"
    return found.group(1)


def _file(world: UiWorld, project: str, path: str) -> str:
    found = world.manage.admin.projects.get(project).files.get(path, ref="main")
    return str(found.decode().decode())


def test_form_offers_namespaces_refs_and_outputs(world: UiWorld) -> None:
    client, _ = world.form_client("developer")
    answer = client.get(f"/-/datasets/{world.seed_id}/new-project?ref=main")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert '<option value="developer"' in html  # the personal namespace
    assert re.search(r'<option value="main" selected>main \(branch\)', html)
    assert re.findall(r'name="paths" value="([^"]+)" checked', html) == sorted(FILES)
    page = client.get("/datasets/imaging/seed").get_data(as_text=True)
    assert f'href="/-/datasets/{world.seed_id}/new-project?ref=main">start a new project' in page


def test_start_a_project_over_http(world: UiWorld) -> None:
    client, csrf = world.form_client("developer")
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "name": "cell-counter",
        "namespace": "developer",
        "ref": "main",
        "paths": ["cells/a.png"],
    }
    answer = client.post(f"/-/datasets/{world.seed_id}/new-project", data=form)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 201, html
    assert "Project developer/cell-counter started" in html
    assert "dshub login --gitlab-url http://127.0.0.1:" in html
    assert "dvc pull" in html and "cells/a.png.dvc" in html
    pointer = yaml.safe_load(_file(world, "developer/cell-counter", "cells/a.png.dvc"))
    assert pointer["deps"][0]["repo"]["rev"] == "main"
    assert pointer["outs"][0]["path"] == "a.png"
    with pytest.raises(gitlab.exceptions.GitlabGetError):
        _file(world, "developer/cell-counter", "cells/b.png.dvc")  # not chosen

    # The same name again: inline at Name, 409, the input kept.
    answer = client.post(f"/-/datasets/{world.seed_id}/new-project", data=form)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 409
    assert "already" in _error_of(html, "name")
    assert 'value="cell-counter"' in html
    assert re.findall(r'name="paths" value="([^"]+)" checked', html) == ["cells/a.png"]

    # A path that is not tracked: at "What to import", 422.
    answer = client.post(
        f"/-/datasets/{world.seed_id}/new-project",
        data={**form, "name": "other", "paths": ["nope.bin"]},
    )
    assert answer.status_code == 422
    assert "not a tracked file or directory" in _error_of(answer.get_data(as_text=True), "paths")

    # A namespace the caller may not create in: at Namespace, a 4xx.
    answer = client.post(
        f"/-/datasets/{world.seed_id}/new-project",
        data={**form, "name": "other", "namespace": "vault"},
    )
    assert 400 <= answer.status_code < 500
    _error_of(answer.get_data(as_text=True), "namespace")


def test_hidden_dataset_and_cross_site_are_refused(world: UiWorld) -> None:
    vault = world.manage.create("admin", name="closed", namespace="vault")
    assert vault.status_code == 201, vault.get_json()
    hidden = vault.get_json()["id"]
    client, csrf = world.form_client("nonmember")
    for answer in (
        client.get(f"/-/datasets/{hidden}/new-project"),
        client.post(
            f"/-/datasets/{hidden}/new-project",
            data={"csrf_token": csrf, "name": "x", "namespace": "nonmember", "paths": ["a"]},
        ),
    ):
        assert answer.status_code == 404
        assert "Page not found" in answer.get_data(as_text=True)
    forged = requests.post(
        f"{world.server.url}/-/datasets/{world.seed_id}/new-project",
        cookies={"tokenGitLab": world.manage.tokens["developer"] or ""},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        data={"csrf_token": "guess", "name": "forged", "namespace": "developer"},
        timeout=10,
        allow_redirects=False,
    )
    assert forged.status_code == 403
    assert not world.manage.admin.projects.list(search="forged")


def test_browser_start_project_and_replace(
    browser: Browser,
    world: UiWorld,
    shots: Path,  # noqa: F811
) -> None:
    page = new_context(browser, world.server.url, world.manage.tokens["developer"]).new_page()
    page.goto("/datasets/imaging/seed")
    page.get_by_role("link", name="start a new project").click()
    expect(page.get_by_role("heading", name="Start a new project from seed")).to_be_visible()
    assert serious_violations(page) == []
    page.screenshot(path=str(shots / "new-project.png"), full_page=True)
    page.get_by_label("Name", exact=True).fill("cell-browser")
    page.get_by_label("Namespace").select_option("developer")
    page.get_by_role("button", name="Start the project").click()
    expect(
        page.get_by_role("heading", name="Project developer/cell-browser started")
    ).to_be_visible()
    expect(page.locator("pre").first).to_contain_text("dshub login --gitlab-url")
    assert serious_violations(page) == []
    assert "cells/b.png.dvc" in page.content()

    # Replace, as a Maintainer (main is protected against Developers: they would get an MR).
    page = new_context(browser, world.server.url, world.manage.tokens["maintainer"]).new_page()
    page.goto("/datasets/imaging/seed/-/blob/cells/b.png")
    page.get_by_role("link", name="Replace b.png").click()
    expect(page.get_by_role("heading", name="Replace b.png")).to_be_visible()
    expect(page.locator("#destination")).to_contain_text("cells/b.png")
    expect(page.locator("#pick-folder")).to_have_count(0)
    assert serious_violations(page) == []
    page.screenshot(path=str(shots / "replace.png"), full_page=True)
    new_bytes = b"\x89PNG the new cell b, longer"
    page.locator("#pick-files").set_input_files(
        {"name": "whatever.png", "mimeType": "image/png", "buffer": new_bytes}
    )
    expect(page.locator("#file-list li")).to_have_count(1)
    expect(page.locator("#file-list li .name")).to_have_text("b.png")
    page.get_by_role("button", name="Upload Files").click()
    expect(page.locator("#upload-result")).to_be_visible(timeout=60_000)
    got = requests.get(
        f"{world.server.url}/api/v1/datasets/{world.seed_id}/files/cells/b.png",
        headers=world.manage.headers("maintainer"),
        params={"ref": "main"},
        timeout=30,
    )
    assert got.status_code == 200, got.text
    assert got.content == new_bytes
