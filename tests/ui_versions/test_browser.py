"""Versions in a real browser (Debian's Chromium via Playwright) against the versions world:
create v0.1.0 → replace a file and add one through the API → create v0.2.0 → compare shows
exactly the changes with thumbnails side by side → "restore this version" v0.1.0 → the data
at the branch head equals v0.1.0 → "download files" and "download data" at v0.1.0 hold the
uploaded bytes. A Reporter sees no control and their POST is refused with GitLab's reason."""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.ui.browser import chromium, new_context, serious_violations
from tests.ui_versions.conftest import BACKEND, IMAGES, png, upload_images
from tests.versions.conftest import FILES, VersionsWorld

pytestmark = BACKEND
CHANGED = {"img/one.png": png((30, 30, 200)), "img/three.png": png((240, 200, 20))}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _check_page(page: Page, artifacts: Path, name: str) -> None:
    assert serious_violations(page) == [], name
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def _loaded(page: Page, name: str) -> None:
    image = page.get_by_role("img", name=name)
    image.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )


def _corner(page: Page, name: str) -> list[int]:
    """The RGB of a thumbnail's top-right corner (away from the drawn diagonal)."""
    script = """img => {
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const drawing = canvas.getContext("2d");
        drawing.drawImage(img, 0, 0);
        return Array.from(drawing.getImageData(canvas.width - 4, 3, 1, 1).data).slice(0, 3);
    }"""
    rgb: list[int] = page.get_by_role("img", name=name).evaluate(script)
    return rgb


def _create(page: Page, name: str, notes: str) -> None:
    page.get_by_label("Version name").fill(name)
    page.get_by_label("Release notes").fill(notes)
    page.get_by_role("button", name="Create version").click()
    expect(page.get_by_role("status")).to_contain_text(f"Version {name} created.")
    expect(page.get_by_role("heading", name=re.compile(rf"^{re.escape(name)}\b"))).to_be_visible()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # DVC's content address


def test_versions_journey(
    browser: Browser, world: VersionsWorld, artifacts: Path, tmp_path: Path
) -> None:
    upload_images(world, IMAGES, "Two images")
    path = world.project().path_with_namespace
    context = new_context(browser, world.url, world.tokens["mia"])
    page = context.new_page()
    page.goto(f"/datasets/{path}/-/versions")
    expect(page.get_by_role("heading", name="Create version")).to_be_visible()
    _check_page(page, artifacts, "versions-empty")
    _create(page, "v0.1.0", "First images")
    expect(page.get_by_text("First images")).to_be_visible()

    upload_images(world, CHANGED, "Replace one image, add one")
    page.goto(f"/datasets/{path}/-/versions")
    _create(page, "v0.2.0", "Blue one, yellow three")
    _check_page(page, artifacts, "versions")

    page.get_by_role("link", name="Compare").click()
    page.get_by_label("from").select_option("v0.1.0")
    page.get_by_label("to").select_option("v0.2.0")
    page.get_by_role("button", name="Compare").click()
    expect(page).to_have_url(re.compile(r"/-/compare\?from=v0\.1\.0&to=v0\.2\.0"))
    added = page.get_by_role("list", name=re.compile("^Added"))
    modified = page.get_by_role("list", name=re.compile("^Modified"))
    expect(added.locator(".change-path code")).to_have_text(["img/three.png"])
    expect(modified.locator(".change-path code")).to_have_text(["img/one.png"])
    expect(page.get_by_role("list", name=re.compile("^Removed"))).to_have_count(0)
    _loaded(page, "img/one.png at v0.1.0")
    _loaded(page, "img/one.png at v0.2.0")
    _loaded(page, "img/three.png at v0.2.0")
    red, blue = _corner(page, "img/one.png at v0.1.0"), _corner(page, "img/one.png at v0.2.0")
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0], (red, blue)  # each side's bytes
    before = page.get_by_role("img", name="img/one.png at v0.1.0").bounding_box()
    after = page.get_by_role("img", name="img/one.png at v0.2.0").bounding_box()
    assert before and after and after["x"] > before["x"] and abs(after["y"] - before["y"]) < 2
    _check_page(page, artifacts, "compare")

    page.get_by_role("link", name="Versions").click()
    page.get_by_role("button", name="restore this version v0.1.0").click()
    expect(page.get_by_role("heading", name="Restore version v0.1.0?")).to_be_visible()
    expect(page.locator("main")).to_contain_text(
        "One new commit on branch main will make the data equal to v0.1.0"
    )
    expect(page.locator("main")).to_contain_text(".gitlab-ci.yml")
    _check_page(page, artifacts, "restore-confirm")
    page.get_by_role("button", name="Restore v0.1.0 on main").click()
    expect(page.get_by_role("status")).to_contain_text("Restored version v0.1.0 on main.")
    expect(page.get_by_role("status")).to_contain_text("New commit")
    same = world.call(
        "GET", f"/api/v1/datasets/{world.pid}/compare?from=v0.1.0&to=main", "mia"
    ).get_json()
    assert (same["added"], same["removed"], same["modified"]) == ([], [], []), same
    head = world.call("GET", f"/api/v1/datasets/{world.pid}/files/img/one.png?ref=main", "mia")
    assert head.data == IMAGES["img/one.png"]

    heading = page.get_by_role("heading", name=re.compile(r"^v0\.1\.0 "))
    item = page.locator("ol.versions > li").filter(has=heading)
    with page.expect_download() as download:
        item.get_by_role("link", name="download files (zip)").click()
    with zipfile.ZipFile(download.value.path()) as pointers:
        names = {n.split("/", 1)[1]: n for n in pointers.namelist() if "/" in n}
        pointer = pointers.read(names["img/one.png.dvc"]).decode()
        assert _md5(IMAGES["img/one.png"]) in pointer
        assert "img/three.png.dvc" not in names
    with page.expect_download() as download:
        item.get_by_role("link", name="download data").click()
    with zipfile.ZipFile(download.value.path()) as data:
        got = {n: data.read(n) for n in data.namelist() if not n.endswith("/")}
    wanted = {**IMAGES, **FILES}
    assert {n: got[n] for n in wanted} == wanted
    assert "img/three.png" not in got and "MANIFEST.md5" in got
    context.close()


def test_reporter_sees_no_control_and_is_refused(
    browser: Browser, world: VersionsWorld, artifacts: Path
) -> None:
    path = world.project().path_with_namespace
    context = new_context(browser, world.url, world.tokens["rep"])
    page = context.new_page()
    page.goto(f"/datasets/{path}/-/versions")
    expect(page.get_by_role("heading", name="Versions", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Create version")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("restore this version"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    _check_page(page, artifacts, "versions-reporter")
    # A hand-made form post (with this session's CSRF token): GitLab refuses, the page says why.
    page.evaluate(
        """pid => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = `/-/datasets/${pid}/versions`;
            const token = document.querySelector("input[name=csrf_token]").value;
            for (const [name, value] of [["csrf_token", token], ["name", "v5.0.0"]]) {
                const input = document.createElement("input");
                input.type = "hidden"; input.name = name; input.value = value;
                form.append(input);
            }
            document.body.append(form);
            form.submit();
        }""",
        world.pid,
    )
    expect(page.get_by_role("alert")).to_contain_text("GitLab refused to create version v5.0.0")
    listed = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "mia").get_json()
    assert "v5.0.0" not in str(listed)
    context.close()
