"""The browser harness of the UI tests: Playwright for Python driving Debian's `chromium`.

Never downloads a browser. Background networking, component updates and sync are off, and
Playwright gives every launch a fresh, empty profile directory (it refuses a
`--user-data-dir` argument and passes its own temporary one). Without Chromium the test run
stops with one line naming the package; it never skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_tools() -> None:
    """Stop the whole run (not skip) when Chromium or axe-core is missing."""
    if not CHROMIUM.exists():
        pytest.exit(f"{CHROMIUM} is missing: apt-get install chromium", returncode=3)
    if not AXE.exists():
        pytest.exit(f"{AXE} is missing: npm ci (axe-core is in package.json)", returncode=3)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, with no background traffic."""
    require_tools()
    args = [*ARGS, "--no-sandbox"] if os.geteuid() == 0 else ARGS  # root cannot sandbox
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser
        finally:
            browser.close()


def new_context(
    browser: Browser, base_url: str, token: str | None = None, **options: Any
) -> BrowserContext:
    """A fresh context (own cookies) with axe-core injected into every page (an init script
    is not subject to the page's CSP, so the CSP under test stays as served)."""
    context = browser.new_context(base_url=base_url, accept_downloads=True, **options)
    context.add_init_script(path=str(AXE))
    if token:
        context.add_cookies(
            [{"name": "tokenGitLab", "value": token, "url": base_url, "httpOnly": True}]
        )
    return context


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations of the current page, one line each."""
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
