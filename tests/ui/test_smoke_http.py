"""Pages over plain HTTP (no browser): status codes, headers, CSRF, permissions."""

from __future__ import annotations

import requests

from tests.download.world import World
from tests.receiver.serving import Gunicorn


def test_pages_render(server: Gunicorn, world: World) -> None:
    cookies = {"tokenGitLab": world.tokens["reporter"]}
    for url in (
        "/",
        "/?q=cats",
        "/datasets/vision/cats",
        "/datasets/vision/cats/-/tree/images?ref=v0.1.0&previews=1",
        "/datasets/vision/cats/-/blob/model.bin?ref=v0.1.0",
        "/datasets/vision/cats/-/versions",
        "/-/storage-sites",
        "/-/storage-sites/lab",
        "/-/help/storage-sites",
        "/-/sign-in",
    ):
        answer = requests.get(server.url + url, cookies=cookies, timeout=10)
        assert answer.status_code == 200, (url, answer.text[:2000])
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
