""" "Upload Files" in a real browser (Debian's Chromium via Playwright) against gunicorn + the
GitLab sandbox + moto S3: folder and file uploads with progress, a tracked directory the files
join, refusals before sending, cancel, a resumed retry, keyboard-only use, axe-core, and
screenshots. The tests share one world and run in file order."""

from __future__ import annotations

import contextlib
import io
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect
from playwright.sync_api import Error as PlaywrightError

from indexer.write.sessions import SessionStore
from tests.receiver.serving import Gunicorn
from tests.support.services import wait_until
from tests.ui.browser import chromium, new_context, serious_violations
from tests.uploads.conftest import MAX_BYTES, POINTER_WARN, UploadWorld
from webhook_service.csrf import token_for

DATASET = "/datasets/lab/cells"


def png(seed: int, size: int = 48) -> bytes:
    """A small noisy PNG (Pillow), different for every seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size))
    image.putdata([(rng.randrange(256), rng.randrange(256), seed % 256) for _ in range(size**2)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_images(folder: Path, names: list[str], seed: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i, name in enumerate(names):
        data = png(seed + i)
        (folder / name).write_bytes(data)
        made[name] = data
    return made


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser, server: Gunicorn, world: UploadWorld) -> Iterator[BrowserContext]:
    made = new_context(browser, server.url, world.tokens["mia"])
    yield made
    made.close()


def requests_of(page: Page) -> list[Request]:
    """Every request the page makes to the API from now on."""
    seen: list[Request] = []
    page.on("request", lambda r: seen.append(r) if "/api/v1/" in r.url else None)
    return seen


def head_sha(world: UploadWorld) -> str:
    return str(world.admin.projects.get(world.pid).branches.get("main").commit["id"])


def open_sessions(world: UploadWorld, who: str = "mia") -> list[str]:
    return SessionStore(world.config["DSHUB_INDEX_URL"]).open_ids(world.user_ids[who])


def open_upload(page: Page, folder: str = "") -> None:
    page.goto(f"{DATASET}/-/tree/{folder}" if folder else DATASET)
    page.get_by_role("link", name="Upload Files").click()
    expect(page.get_by_role("heading", name="Upload Files")).to_be_visible()


def check_page(page: Page, artifacts: Path, name: str) -> None:
    assert serious_violations(page) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(artifacts / f"{name}-1280.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(artifacts / f"{name}-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_folder_upload_shows_progress_and_lands_in_the_tree(
    context: BrowserContext, world: UploadWorld, tmp_path: Path, artifacts: Path
) -> None:
    page = context.new_page()
    images = write_images(tmp_path / "shots", ["a.png", "b.png", "c.png"], seed=1)
    open_upload(page)
    expect(page.locator("#destination")).to_contain_text("the top folder")
    expect(page.locator("#tracked-notice")).to_have_count(0)
    page.get_by_label("Choose a folder").set_input_files(tmp_path / "shots")
    rows = page.locator("#file-list li")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("shots/a.png")
    expect(page.locator("#selection-summary")).to_contain_text("3 files")
    check_page(page, artifacts, "upload-selected")

    page.get_by_label("Commit message").fill("Add three shots")
    page.get_by_role("button", name="Upload Files").click()
    result = page.locator("#upload-result")
    expect(result.get_by_role("heading", name="Uploaded")).to_be_visible(timeout=30_000)
    for i in range(3):
        bar = page.get_by_label(re.compile(rf"Progress of shots/{'abc'[i]}\.png"))
        assert bar.evaluate("b => b.value === b.max && b.max > 1")
        expect(rows.nth(i).locator(".note")).to_have_text("uploaded")
    commit = world.admin.projects.get(world.pid).commits.get("main")
    assert commit.title == "Add three shots"
    expect(result.get_by_role("link", name=commit.id[:8])).to_have_attribute(
        "href", re.compile(rf"/-/commit/{commit.id}$")
    )
    expect(result.get_by_role("link", name="shots/b.png")).to_be_visible()
    check_page(page, artifacts, "upload-done")

    result.get_by_role("link", name="See the files in the folder").click()
    page.get_by_role("link", name="shots/").click()
    for name in images:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download b.png").click()
    assert Path(download.value.path()).read_bytes() == images["b.png"]
    page.close()


def test_files_join_a_tracked_directory(
    context: BrowserContext, world: UploadWorld, tmp_path: Path
) -> None:
    page = context.new_page()
    # A new folder as one tracked directory: the upload page of a folder not made yet.
    write_images(tmp_path / "first", ["x0.png"], seed=50)
    page.goto(f"/-/datasets/{world.pid}/upload?folder=scans")
    expect(page.locator("#tracked-notice")).to_have_count(0)
    page.get_by_label("One tracked directory").check()
    page.get_by_label("Choose files").set_input_files(tmp_path / "first" / "x0.png")
    page.get_by_role("button", name="Upload Files").click()
    expect(page.locator("#upload-result").get_by_role("heading", name="Uploaded")).to_be_visible(
        timeout=30_000
    )
    pointer_before = world.pointer("scans.dvc")
    assert b".dir" in pointer_before
    open_upload(page, "scans")
    expect(page.locator("#destination")).to_contain_text("scans/")
    expect(page.locator("#tracked-notice")).to_contain_text(
        "This folder is the DVC-tracked directory scans: the files join it"
    )
    images = write_images(tmp_path / "more", ["x1.png", "x2.png"], seed=60)
    page.get_by_label("Choose files").set_input_files(
        [tmp_path / "more" / "x1.png", tmp_path / "more" / "x2.png"]
    )
    page.get_by_role("button", name="Upload Files").click()
    expect(page.locator("#upload-result").get_by_role("heading", name="Uploaded")).to_be_visible(
        timeout=30_000
    )
    assert world.pointer("scans.dvc") != pointer_before  # the one manifest changed
    project = world.admin.projects.get(world.pid)
    tree = project.repository_tree(ref="main", recursive=True, all=True)
    assert not [e for e in tree if str(e["path"]).startswith("scans/")]  # no pointer per file
    page.goto(f"{DATASET}/-/tree/scans")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download x2.png").click()
    assert Path(download.value.path()).read_bytes() == images["x2.png"]
    page.close()


def test_an_oversized_file_is_refused_before_sending(
    context: BrowserContext, world: UploadWorld, server: Gunicorn, tmp_path: Path
) -> None:
    big = tmp_path / "huge.bin"
    big.write_bytes(b"\0" * (MAX_BYTES + 1))
    page = context.new_page()
    open_upload(page)
    sent = requests_of(page)
    log_before = server.log.read_text(errors="replace").count("/api/v1/")
    page.get_by_label("Choose files").set_input_files(big)
    row = page.locator("#file-list li")
    expect(row).to_contain_text("too large")
    expect(row).to_contain_text("not sent")
    expect(page.get_by_role("button", name="Upload Files")).to_be_disabled()
    page.get_by_label("Commit message").press("Enter")  # submitting by keyboard sends nothing
    page.wait_for_timeout(300)
    assert sent == []
    assert server.log.read_text(errors="replace").count("/api/v1/") == log_before
    assert open_sessions(world) == []
    page.close()


def hold(page: Page, name: str) -> list[Route]:
    """Hold the first PUT of `name` (the request waits in the browser until released)."""
    held: list[Route] = []

    def handle(route: Route) -> None:
        if route.request.method == "PUT" and route.request.url.endswith(name) and not held:
            held.append(route)
            return
        route.continue_()

    page.route("**/api/v1/uploads/**", handle)
    return held


def wait_held(page: Page, held: list[Route]) -> None:
    for _ in range(200):
        if held:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the PUT was never made")


def test_cancel_midway_leaves_no_commit(
    context: BrowserContext, world: UploadWorld, tmp_path: Path
) -> None:
    before = head_sha(world)
    names = ["c0.png", "c1.png", "c2.png"]
    write_images(tmp_path / "c", names, seed=70)
    page = context.new_page()
    open_upload(page)
    held = hold(page, "c1.png")
    page.get_by_label("Choose files").set_input_files([tmp_path / "c" / n for n in names])
    page.get_by_role("button", name="Upload Files").click()
    wait_held(page, held)
    expect(page.locator("#upload-status")).to_contain_text("Uploading 2 of 3: c1.png")
    expect(page.locator("#file-list li").nth(0).locator(".note")).to_have_text("uploaded")
    expect(page.locator("#drop-zone")).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_label("Choose files")).to_be_disabled()
    assert len(open_sessions(world)) == 1
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#upload-status")).to_have_text("Cancelled: nothing was committed.")
    wait_until(lambda: open_sessions(world) == [], 10, "the session deleted")
    assert head_sha(world) == before
    expect(page.locator("#drop-zone")).to_have_attribute("aria-disabled", "false")
    with contextlib.suppress(PlaywrightError):  # the browser dropped it with the XHR
        held[0].abort()
    page.close()


def test_retry_after_the_network_drops_resumes(
    context: BrowserContext, world: UploadWorld, tmp_path: Path
) -> None:
    names = ["r0.png", "r1.png", "r2.png"]
    images = write_images(tmp_path / "r", names, seed=80)
    page = context.new_page()
    open_upload(page)
    sent = requests_of(page)
    held = hold(page, "r1.png")
    page.get_by_label("Choose files").set_input_files([tmp_path / "r" / n for n in names])
    page.get_by_role("button", name="Upload Files").click()
    wait_held(page, held)
    context.set_offline(True)
    held[0].abort("internetdisconnected")
    expect(page.locator("#upload-status")).to_contain_text("The upload stopped")
    retry = page.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    expect(retry).to_be_focused()
    context.set_offline(False)
    page.unroute("**/api/v1/uploads/**")
    retry.click()
    expect(page.locator("#upload-result").get_by_role("heading", name="Uploaded")).to_be_visible(
        timeout=30_000
    )
    expect(page.locator("#file-list li").nth(0).locator(".note")).to_have_text("already uploaded")

    def count(method: str, name: str) -> int:
        return sum(1 for r in sent if r.method == method and r.url.endswith(name))

    assert count("PUT", "r0.png") == 1  # never sent again
    assert count("HEAD", "r0.png") == 1
    assert count("PUT", "r1.png") == 2  # the cut one, then the retry
    assert count("PUT", "r2.png") == 1
    assert count("POST", "/uploads") == 1  # one session throughout
    for name, data in images.items():
        got = world.call("GET", f"/api/v1/datasets/{world.pid}/files/{name}", "mia")
        assert got.status_code == 200 and got.data == data
    assert open_sessions(world) == []
    page.close()


def test_keyboard_only_folder_upload(
    context: BrowserContext, world: UploadWorld, tmp_path: Path
) -> None:
    write_images(tmp_path / "keys", ["k0.png", "k1.png"], seed=90)
    page = context.new_page()
    open_upload(page)
    page.get_by_label("Choose files").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "pick-folder"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(tmp_path / "keys")
    expect(page.locator("#file-list li")).to_have_count(2)
    for _ in range(40):
        if page.evaluate("document.activeElement.id") == "start-upload":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "start-upload"
    page.keyboard.press("Enter")
    result = page.locator("#upload-result")
    expect(result.get_by_role("heading", name="Uploaded")).to_be_visible(timeout=30_000)
    expect(result).to_be_focused()
    expect(result.get_by_role("link", name="keys/k1.png")).to_be_visible()
    page.close()


def test_a_developer_gets_a_new_branch_and_merge_request(
    browser: Browser, server: Gunicorn, world: UploadWorld, tmp_path: Path, artifacts: Path
) -> None:
    context = new_context(browser, server.url, world.tokens["dev"])
    page = context.new_page()
    open_upload(page)
    expect(page.get_by_label("Commit to main")).to_be_disabled()
    expect(page.locator("#branch-protected")).to_contain_text("main is protected")
    expect(page.get_by_label("New branch + merge request")).to_be_checked()
    page.get_by_label("New branch name").fill("dev-shots")
    write_images(tmp_path / "d", ["d0.png"], seed=99)
    page.get_by_label("Choose files").set_input_files(tmp_path / "d" / "d0.png")
    check_page(page, artifacts, "upload-developer")
    page.get_by_role("button", name="Upload Files").click()
    result = page.locator("#upload-result")
    expect(result.get_by_role("link", name=re.compile(r"^Merge request !\d+"))).to_be_visible()
    expect(result).to_contain_text("on branch dev-shots")
    mrs = world.admin.projects.get(world.pid).mergerequests.list(source_branch="dev-shots")
    assert len(mrs) == 1
    context.close()


def test_a_raw_put_needs_the_csrf_token(world: UploadWorld) -> None:
    """Bytes may be PUT as application/octet-stream, but only with the page's CSRF token."""
    client = world.app.test_client()
    token = world.tokens["mia"]
    client.set_cookie("tokenGitLab", token)
    url = "/api/v1/uploads/nosuchsession/files/a.png"
    headers: dict[str, Any] = {"Content-Type": "application/octet-stream"}
    refused = client.put(url, data=b"x", headers=headers)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "csrf_refused"
    headers["X-CSRF-Token"] = token_for(token, world.app.config["SECRET_KEY"])
    assert client.put(url, data=b"x", headers=headers).status_code == 404  # past CSRF
    headers["Content-Type"] = "text/plain"
    assert client.put(url, data=b"x", headers=headers).status_code == 403


def test_many_pointers_warn_until_confirmed(
    context: BrowserContext, world: UploadWorld, tmp_path: Path
) -> None:
    """More files than DSHUB_UPLOAD_POINTER_WARN as one pointer each: the API's warning, and
    "Upload Files" only once the user confirms."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(POINTER_WARN + 1):
        (folder / f"m{i:03d}.txt").write_bytes(str(i).encode())
    page = context.new_page()
    open_upload(page)
    warning = page.locator("#threshold-warning")
    expect(warning).to_be_hidden()
    page.get_by_label("Choose a folder").set_input_files(folder)
    expect(page.locator("#file-list li")).to_have_count(POINTER_WARN + 1)
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(f"More than {POINTER_WARN} files")
    start = page.get_by_role("button", name="Upload Files")
    expect(start).to_be_disabled()
    page.get_by_label("Write one pointer per file anyway").check()
    expect(start).to_be_enabled()
    page.close()
