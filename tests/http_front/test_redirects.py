"""Redirects point at a path on this server, never at the host a client named."""

from __future__ import annotations

from tests.http_front.conftest import Front


def _location(answer: bytes) -> tuple[int, str | None]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    found = [
        line.split(":", 1)[1].strip() for line in head[1:] if line.lower().startswith("location:")
    ]
    return status, found[0] if found else None


def test_merged_slash_redirects_are_relative_whatever_the_host_header(front: Front) -> None:
    for target, expected in (
        ("/api/v1//datasets?q=cats", "/api/v1/datasets?q=cats"),
        ("/api//v1/storage-sites", "/api/v1/storage-sites"),
        ("//api/v1//datasets", "/api/v1/datasets"),
    ):
        raw = f"GET {target} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        status, location = _location(front.send(raw.encode()))
        assert status == 308, (target, status)
        assert location == expected, (target, location)
    # A request without a Host header at all is redirected the same way.
    status, location = _location(front.send(b"GET /api/v1//datasets HTTP/1.0\r\n\r\n"))
    assert (status, location) == (308, "/api/v1/datasets")
