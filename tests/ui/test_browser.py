"""The seed's reading journeys in a real browser: Debian's Chromium driven by Playwright,
against gunicorn + the GitLab sandbox + moto S3 (see conftest)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.download.world import SEED_PATH, World
from tests.receiver.serving import Gunicorn
from tests.ui.browser import chromium, new_context, serious_violations
from tests.ui.conftest import XSS_FILE


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _sign_in(page: Page, token: str) -> None:
    page.goto("/")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Personal access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_reader_journey(browser: Browser, server: Gunicorn, world: World, tmp_path: Path) -> None:
    context = new_context(browser, server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    page.goto("/")
    expect(page.get_by_role("link", name="dogs")).to_be_visible()
    expect(page.get_by_role("link", name="cats")).to_have_count(0)  # private: not yet

    _sign_in(page, world.tokens["reporter"])
    expect(page.locator(".who")).to_contain_text("@reporter")
    assert world.tokens["reporter"] not in page.content()

    page.get_by_label("Search datasets").fill("cats")
    page.get_by_label("Search datasets").press("Enter")
    expect(page.get_by_role("heading", name="1 dataset")).to_be_visible()
    facets = page.get_by_role("complementary", name="Filters")
    facets.get_by_role("link", name=re.compile(r"^vision")).click()
    expect(page).to_have_url(re.compile(r"namespace=vision"))
    page.get_by_role("link", name="cats", exact=True).click()
    expect(page).to_have_title(re.compile(r"^cats · dshub"))
    expect(page.get_by_role("heading", name="Storage site")).to_be_visible()
    expect(page.get_by_role("heading", name="git clone + dvc pull")).to_be_visible()

    page.get_by_label("Version or branch").select_option("v0.1.0")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name="images/").click()
    expect(page).to_have_url(re.compile(r"/datasets/vision/cats/-/tree/images\?ref=v0\.1\.0"))
    expect(page).to_have_title(re.compile(r"^images · cats at v0\.1\.0"))
    expect(page.get_by_role("link", name="cat0.png", exact=True)).to_be_visible()

    page.get_by_role("link", name="show preview images").click()
    expect(page).to_have_url(re.compile(r"previews=1"))
    thumb = page.get_by_role("img", name="Preview of cat0.png")
    thumb.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
    )
    assert thumb.get_attribute("loading") == "lazy"

    with page.expect_download() as download:
        page.get_by_role("link", name="Download cat0.png").click()
    assert download.value.suggested_filename == "cat0.png"
    assert Path(download.value.path()).read_bytes() == world.files["images/cat0.png"]

    # "download data": the real files of this folder at this version, as one zip.
    with page.expect_download() as download:
        page.get_by_role("link", name="download data").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        names = {n.rsplit("/", 1)[-1]: n for n in archive.namelist()}
        assert archive.read(names["cat0.png"]) == world.files["images/cat0.png"]
        assert "MANIFEST.md5" in names
    # "download files": the dataset's repository (pointers, no data), as GitLab archives it.
    with page.expect_download() as download:
        page.get_by_role("link", name="download files").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        listed = archive.namelist()
        assert any(n.endswith(".dvc") for n in listed), listed
        assert not any(n.endswith("cat0.png") for n in listed), listed

    page.get_by_role("link", name="Copy link to cat0.png").click()
    expect(page.get_by_role("status").first).to_have_text("Link copied to the clipboard.")
    link = page.evaluate("() => navigator.clipboard.readText()")
    assert link.startswith(server.url) and link.endswith("?ref=v0.1.0"), link

    fresh = new_context(browser, server.url, world.tokens["reporter"])
    answer = fresh.request.get(link)
    assert answer.status == 200
    assert answer.body() == world.files["images/cat0.png"]
    fresh.close()

    # At a branch the permanent link names the commit, never the branch.
    page.goto("/datasets/vision/cats")
    copy = page.get_by_role("link", name="Copy link to model.bin")
    sha = requests.get(
        f"{server.url}/api/v1/datasets/{world.cats.id}/tree",
        headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
        timeout=10,
    ).json()["commit_sha"]
    assert (copy.get_attribute("data-copy", timeout=5000) or "").endswith(f"?ref={sha}")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name="cats", exact=True)).to_have_count(0)
    context.close()


def test_private_dataset_is_nowhere_for_a_non_member(
    browser: Browser, server: Gunicorn, world: World
) -> None:
    context = new_context(browser, server.url, world.tokens["outsider"])
    page = context.new_page()
    page.goto("/")
    expect(page.locator(".who")).to_be_visible()
    assert "cats" not in page.locator(".results").inner_text()
    assert "vision" not in page.locator(".facets").inner_text()
    page.goto("/?q=cats")
    expect(page.get_by_role("heading", name="No datasets match")).to_be_visible()

    def page_for(url: str) -> tuple[int, str]:
        answer = page.goto(url)
        assert answer is not None
        return answer.status, page.locator("main").inner_text()

    private = page_for("/datasets/vision/cats")
    missing = page_for("/datasets/vision/kats")
    assert private[0] == missing[0] == 404
    assert private[1] == missing[1].replace("kats", "cats")
    blob = page_for(f"/datasets/vision/cats/-/blob/{SEED_PATH}?ref=v0.1.0")
    blob_missing = page_for(f"/datasets/vision/kats/-/blob/{SEED_PATH}?ref=v0.1.0")
    assert blob[0] == blob_missing[0] == 404
    assert blob[1] == blob_missing[1].replace("kats", "cats")
    assert page_for(f"/-/datasets/{world.cats.id}")[0] == 404
    thumbnail = context.request.get(
        f"/api/v1/datasets/{world.cats.id}/files/images/cat0.png?ref=v0.1.0&preview=256"
    )
    assert thumbnail.status == 404
    context.close()


def test_stored_markup_never_runs(browser: Browser, server: Gunicorn, world: World) -> None:
    context = new_context(browser, server.url)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    for url in (
        "/?q=tricky",
        "/datasets/tricks/tricky",
        f"/datasets/tricks/tricky/-/blob/{XSS_FILE}",
        "/?topic=%3Cb%3Ebold%3C%2Fb%3E",
    ):
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, url
        assert page.evaluate("() => window.__pwned") is None, url
        assert page.locator("main script").count() == 0
        assert page.locator("main img[onerror]").count() == 0
        assert page.locator("main b").count() == 0
    page.goto("/datasets/tricks/tricky")
    expect(page.locator(".dataset-header .description")).to_contain_text("<script>")
    expect(page.get_by_role("link", name=XSS_FILE, exact=True)).to_be_visible()
    assert page.locator(".readme a[href^='javascript']").count() == 0
    assert dialogs == []
    context.close()


PAGES = {
    "datasets": "/",
    "search": "/?q=cats",
    "sign-in": "/-/sign-in",
    "details": "/datasets/vision/cats",
    "details-no-site": "/datasets/tricks/bare",
    "tree-tag": "/datasets/vision/cats/-/tree/images?ref=v0.1.0",
    "tree-previews": "/datasets/pets/dogs/-/tree/pics?previews=1",
    "file": "/datasets/pets/dogs/-/blob/pics/photo.jpg?ref=v1",
    "versions": "/datasets/vision/cats/-/versions",
    "sites": "/-/storage-sites",
    "site": "/-/storage-sites/lab",
    "about-sites": "/-/help/storage-sites",
    "not-found": "/datasets/vision/nothing-here",
    "empty-search": "/?q=zzzznothing",
}


def test_every_page_passes_axe_and_is_captured(
    browser: Browser, server: Gunicorn, world: World, artifacts: Path
) -> None:
    failures: dict[str, list[str]] = {}
    for width, height in ((1280, 900), (375, 800)):
        context = new_context(
            browser,
            server.url,
            world.tokens["reporter"],
            viewport={"width": width, "height": height},
        )
        page = context.new_page()
        for name, url in PAGES.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
            found = serious_violations(page)
            if found:
                failures[f"{name} at {width}px"] = found
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            if overflow > 0:
                failures.setdefault(f"{name} at {width}px", []).append(
                    f"scrolls sideways by {overflow}px"
                )
        context.close()
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())


def test_missing_bytes_broken_previews_and_who_committed(
    browser: Browser, server: Gunicorn, world: World, artifacts: Path
) -> None:
    context = new_context(browser, server.url, world.tokens["reporter"])
    page = context.new_page()
    # Signed in by cookie alone (no sign-in form in this browser): the header names the user.
    page.goto("/datasets/pets/dogs/-/tree/pics?ref=v1")
    expect(page.locator(".who")).to_contain_text("@reporter")

    # "not in storage" on exactly the file whose bytes the site lost (sync recorded it).
    rows = page.locator("table.file-table tbody tr")
    lost = rows.filter(has=page.get_by_role("link", name="victim.bin", exact=True))
    expect(lost.locator(".badge.missing")).to_have_text("not in storage")
    expect(page.locator(".badge.missing")).to_have_count(1)
    tree = context.request.get(f"/api/v1/datasets/{world.dogs.id}/tree?path=pics&ref=v1").json()
    marks = {item["name"]: item["in_storage"] for item in tree["items"]}
    assert marks["victim.bin"] is False and marks["photo.jpg"] is True, marks
    assert marks[".gitignore"] is None  # a git file: nothing to check
    # Pages start at an offset in the store; git and DVC entries (a folder in both, at the
    # root) still merge into the same level, page by page.
    for folder in ("", "pics"):
        api = f"/api/v1/datasets/{world.dogs.id}/tree?path={folder}&ref=v1"
        whole = [item["path"] for item in context.request.get(api).json()["items"]]
        for per_page in (1, 2, 3):
            paged: list[str] = []
            for number in range(1, len(whole) // per_page + 2):
                answer = context.request.get(f"{api}&page={number}&per_page={per_page}").json()
                paged += [item["path"] for item in answer["items"]]
            assert paged == whole, (folder, per_page)

    # The file page says so too, and who committed the file (linked to GitLab).
    page.get_by_role("link", name="victim.bin", exact=True).click()
    expect(page.locator("#file-title .badge.missing")).to_be_visible()
    expect(page.locator(".notice")).to_contain_text("did not hold this file's bytes")
    committed = page.locator(".committed-by")
    expect(committed).to_contain_text("Test User")
    sha = world.shas["dogs"]
    expect(committed.get_by_role("link")).to_have_text(re.compile(rf"^{sha[:8]}"))
    href = committed.get_by_role("link").get_attribute("href") or ""
    assert href == f"{world.dogs.web_url}/-/commit/{sha}", href
    page.screenshot(path=str(artifacts / "file-not-in-storage-1280.png"), full_page=True)
    page.goto("/datasets/pets/dogs/-/blob/pics/photo.jpg?ref=v1")
    expect(page.locator(".badge.missing")).to_have_count(0)

    # A preview that cannot be decoded shows the placeholder, not a broken image.
    page.goto("/datasets/pets/dogs/-/tree/pics?ref=v1&previews=1")
    good = page.get_by_role("img", name="Preview of photo.jpg")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=good.element_handle())
    tile = page.locator(".tile").filter(has=page.get_by_role("link", name="fake.png"))
    tile.scroll_into_view_if_needed()
    expect(tile.locator(".thumb.none")).to_have_text("PNG")
    expect(page.get_by_role("img", name="Preview of fake.png")).to_have_count(0)
    page.screenshot(path=str(artifacts / "tree-broken-preview-1280.png"), full_page=True)
    page.goto("/datasets/pets/dogs/-/blob/pics/fake.png?ref=v1")
    expect(page.locator(".large-preview .thumb.none")).to_contain_text("No preview")
    expect(page.get_by_role("img", name="Preview of fake.png")).to_have_count(0)
    context.close()
