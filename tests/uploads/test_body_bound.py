"""Uploads are bounded by DSHUB_UPLOAD_MAX_BYTES, not by the app-wide (webhook) body bound.

Found by the fault harness (bench/reliability, full scale): a 48 MiB PUT into an upload
session was a 413 "exceeds the capacity limit", because the routes set
`request.max_content_length = None` to count bytes themselves and Flask reads None as "use
MAX_CONTENT_LENGTH" — DSHUB_WEBHOOK_MAX_BYTES, 25 MiB. Here that bound is set far below
the upload limit, so a file between the two proves which one applies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from tests.uploads.conftest import MAX_BYTES, UploadWorld
from webhook_service import create_app
from webhook_service.app_settings import services as app_services

APP_BOUND = 16 * 1024  # the webhook bound here; uploads may hold up to MAX_BYTES (256 KiB)
DATA = bytes(range(256)) * 400  # 102,400 bytes: above the app bound, below the upload limit


@pytest.fixture
def client(upload_world: UploadWorld) -> Iterator[FlaskClient]:
    settings = app_services(upload_world.app).settings
    app = create_app(dataclasses.replace(settings, webhook_max_bytes=APP_BOUND))
    try:
        yield app.test_client()
    finally:
        app_services(app).close()


def test_a_session_file_above_the_app_bound_is_accepted(
    upload_world: UploadWorld, client: FlaskClient
) -> None:
    assert APP_BOUND < len(DATA) < MAX_BYTES
    token = {"PRIVATE-TOKEN": upload_world.tokens["mia"]}
    opened = client.post(f"/api/v1/datasets/{upload_world.pid}/uploads", headers=token, json={})
    assert opened.status_code == 201, opened.get_json()
    sid = opened.get_json()["id"]
    put = client.put(f"/api/v1/uploads/{sid}/files/big.bin", data=DATA, headers=token)
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["complete"] is True
    done = client.post(f"/api/v1/uploads/{sid}/commit", headers=token, json={"message": "big"})
    assert done.status_code == 201, done.get_json()
    assert [f["md5"] for f in done.get_json()["files"]] == [hashlib.md5(DATA).hexdigest()]


def test_a_multipart_file_above_the_app_bound_is_accepted(
    upload_world: UploadWorld, client: FlaskClient
) -> None:
    answer = client.post(
        f"/api/v1/datasets/{upload_world.pid}/files",
        headers={"PRIVATE-TOKEN": upload_world.tokens["mia"]},
        data={"files[]": [(io.BytesIO(DATA), "big.bin")]},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 201, answer.get_json()
    assert [f["md5"] for f in answer.get_json()["files"]] == [hashlib.md5(DATA).hexdigest()]


def test_above_the_upload_limit_is_still_413(
    upload_world: UploadWorld, client: FlaskClient
) -> None:
    token = {"PRIVATE-TOKEN": upload_world.tokens["mia"]}
    sid = client.post(
        f"/api/v1/datasets/{upload_world.pid}/uploads", headers=token, json={}
    ).get_json()["id"]
    put = client.put(
        f"/api/v1/uploads/{sid}/files/huge.bin", data=b"x" * (MAX_BYTES + 1), headers=token
    )
    assert put.status_code == 413 and put.get_json()["error"]["max_bytes"] == MAX_BYTES
