"""Registering, updating, listing and searching storage sites through the API."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from werkzeug.test import TestResponse

from tests.conftest import S3Bucket
from tests.sites.conftest import RO, RW, IamMoto, SiteEnv, s3_site

SECRETS = (RW["secret_access_key"], RO["secret_access_key"])
KEY_IDS = (RW["access_key_id"], RO["access_key_id"])


def _no_secret(text: str, key_ids: bool = True) -> None:
    for secret in SECRETS + (KEY_IDS if key_ids else ()):
        assert secret not in text


def _bucket_keys(bucket: S3Bucket) -> list[str]:
    listing = bucket.client().list_objects_v2(Bucket=bucket.name)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_admin_registers_an_s3_site_after_a_real_probe(
    site_env: SiteEnv, s3_bucket: S3Bucket
) -> None:
    answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=s3_site(s3_bucket))
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["validated"] is True and body["access_mode"] == "proxy"
    assert [(s["step"], s["status"]) for s in body["steps"]] == [
        ("resolve", "ok"),
        ("connect", "ok"),
        ("write", "ok"),
        ("read", "ok"),
        ("delete", "ok"),
    ]
    assert _bucket_keys(s3_bucket) == []  # the probe object is gone
    assert "credentials_ref" not in body and body["has_credentials"] is True
    _no_secret(answer.get_data(as_text=True))


def test_admin_group_member_registers_a_local_site(site_env: SiteEnv, tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    body = {"name": "lab-disk", "kind": "local", "path": str(root), "prefix": "ds"}
    answer = site_env.call("POST", "/api/v1/storage-sites", "member", json=body)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["validated"] is True
    assert list(root.rglob("*")) in ([], [root / "ds"])  # no probe file left behind


def test_only_admins_and_admin_group_members_may_register(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    body = {"name": "lab-disk", "kind": "local", "path": str(tmp_path)}
    assert site_env.call("POST", "/api/v1/storage-sites", None, json=body).status_code == 401
    refused = site_env.call("POST", "/api/v1/storage-sites", "other", json=body)
    assert refused.status_code == 403
    assert "storage-admins" in refused.get_json()["error"]["message"]
    # The same sites, except that only those who administer sites see a local site's path.
    assert site_env.call("GET", "/api/v1/storage-sites", "other").get_json()["items"] == [
        {**item, "path": None}
        for item in site_env.call("GET", "/api/v1/storage-sites", "admin").get_json()["items"]
        if item["name"] != "lab-disk"
    ]


def test_fields_that_look_like_secrets_are_refused(site_env: SiteEnv, s3_bucket: S3Bucket) -> None:
    for extra in (
        {"secret_access_key": "x"},
        {"aws_access_key_id": "x"},
        {"description": "keys AKIAABCDEFGHIJKLMNOP inside"},
    ):
        answer = site_env.call(
            "POST", "/api/v1/storage-sites", "admin", json=s3_site(s3_bucket, **extra)
        )
        assert answer.status_code == 400
        assert "credentials file" in answer.get_json()["error"]["message"]
    with_userinfo = s3_site(s3_bucket, endpoint_url="http://key:secret@127.0.0.1:9")
    answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=with_userinfo)
    assert answer.status_code == 400


def test_unknown_credentials_entry_is_a_precise_400(site_env: SiteEnv, s3_bucket: S3Bucket) -> None:
    body = s3_site(s3_bucket, credentials_ref="nope")
    answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    assert answer.status_code == 400
    assert "no entry 'nope'" in answer.get_json()["error"]["message"]


def _failed_step(answer: TestResponse) -> dict[str, str]:
    body = answer.get_json()
    assert answer.status_code == 422, body
    assert body["error"]["code"] == "site_validation_failed"
    failed: list[dict[str, str]] = [s for s in body["error"]["steps"] if s["status"] == "failed"]
    assert len(failed) == 1
    return failed[0]


def test_unknown_bucket_fails_at_connect(site_env: SiteEnv, s3_bucket: S3Bucket) -> None:
    body = s3_site(s3_bucket, bucket="no-such-bucket-here")
    step = _failed_step(site_env.call("POST", "/api/v1/storage-sites", "admin", json=body))
    assert step["step"] == "connect" and "unknown bucket" in step["message"]
    assert site_env.call("GET", "/api/v1/storage-sites/moto", "admin").status_code == 404


def test_wrong_region_names_the_bucket_region(site_env: SiteEnv, s3_bucket: S3Bucket) -> None:
    body = s3_site(s3_bucket, region="eu-west-3")
    step = _failed_step(site_env.call("POST", "/api/v1/storage-sites", "admin", json=body))
    assert step["step"] == "connect"
    assert "wrong region" in step["message"] and s3_bucket.region in step["message"]


def test_closed_port_is_reported_unreachable(site_env: SiteEnv, s3_bucket: S3Bucket) -> None:
    from tests.support.services import free_port

    body = s3_site(s3_bucket, endpoint_url=f"http://127.0.0.1:{free_port()}")
    step = _failed_step(site_env.call("POST", "/api/v1/storage-sites", "admin", json=body))
    assert step["step"] == "connect" and "unreachable" in step["message"]


def test_access_denied_is_reported_with_the_credentials_entry(
    make_site_env: object, iam_moto: IamMoto
) -> None:
    env: SiteEnv = make_site_env({"nobody": iam_moto.denied})  # type: ignore[operator]
    body = {
        "name": "guarded",
        "kind": "s3",
        "endpoint_url": iam_moto.endpoint_url,
        "bucket": iam_moto.bucket,
        "region": "us-east-1",
        "credentials_ref": "nobody",
    }
    answer = env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    step = _failed_step(answer)
    assert step["step"] == "connect"
    assert "access denied" in step["message"] and "'nobody'" in step["message"]
    assert iam_moto.denied["secret_access_key"] not in answer.get_data(as_text=True)


def test_link_local_endpoint_is_refused_before_any_contact(site_env: SiteEnv) -> None:
    body = {
        "name": "imds",
        "kind": "s3",
        "endpoint_url": "http://169.254.169.254",
        "bucket": "latest",
        "credentials_ref": "moto-rw",
    }
    answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["code"] == "endpoint_not_allowed"
    assert (
        "link-local" in error["message"] and "DSHUB_ALLOW_LINK_LOCAL_ENDPOINTS" in error["message"]
    )
    body["endpoint_url"] = "http://metadata.google.internal"
    answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    assert answer.get_json()["error"]["code"] == "endpoint_not_allowed"


def test_local_directory_that_is_not_writable_fails_at_write(
    site_env: SiteEnv, read_only_dir: Path
) -> None:
    body = {"name": "frozen", "kind": "local", "path": str(read_only_dir)}
    step = _failed_step(site_env.call("POST", "/api/v1/storage-sites", "admin", json=body))
    assert step["step"] == "write" and "not writable" in step["message"]


def test_missing_local_directory_fails_at_directory(site_env: SiteEnv, tmp_path: Path) -> None:
    body = {"name": "gone", "kind": "local", "path": str(tmp_path / "missing")}
    step = _failed_step(site_env.call("POST", "/api/v1/storage-sites", "admin", json=body))
    assert step["step"] == "directory" and "does not exist" in step["message"]


def test_reregistration_needs_put_and_put_revalidates(
    site_env: SiteEnv, s3_bucket: S3Bucket
) -> None:
    first = site_env.call("POST", "/api/v1/storage-sites", "admin", json=s3_site(s3_bucket))
    assert first.status_code == 201
    again = site_env.call("POST", "/api/v1/storage-sites", "admin", json=s3_site(s3_bucket))
    assert again.status_code == 409 and "PUT" in again.get_json()["error"]["message"]
    updated = s3_site(s3_bucket, description="renamed team bucket")
    answer = site_env.call("PUT", "/api/v1/storage-sites/moto", "member", json=updated)
    assert answer.status_code == 200 and answer.get_json()["description"] == "renamed team bucket"
    broken = s3_site(s3_bucket, bucket="no-such-bucket-here")
    assert (
        site_env.call("PUT", "/api/v1/storage-sites/moto", "admin", json=broken).status_code == 422
    )
    kept = site_env.call("GET", "/api/v1/storage-sites/moto", "other").get_json()
    assert kept["bucket"] == s3_bucket.name  # a failed update changes nothing
    refused = site_env.call("PUT", "/api/v1/storage-sites/moto", "other", json=updated)
    assert refused.status_code == 403


def test_signed_in_users_list_and_search_sites_without_secrets(
    site_env: SiteEnv, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    assert (
        site_env.call("POST", "/api/v1/storage-sites", "admin", json=s3_site(s3_bucket)).status_code
        == 201
    )
    local = {"name": "lab-disk", "kind": "local", "path": str(tmp_path), "description": "Lab NAS"}
    assert site_env.call("POST", "/api/v1/storage-sites", "admin", json=local).status_code == 201
    assert site_env.call("GET", "/api/v1/storage-sites", None).status_code == 401
    assert site_env.call("GET", "/api/v1/storage-sites/moto", None).status_code == 401
    listing = site_env.call("GET", "/api/v1/storage-sites", "other")
    names = [item["name"] for item in listing.get_json()["items"]]
    assert {"moto", "lab-disk"} <= set(names)
    _no_secret(listing.get_data(as_text=True))
    found = site_env.call("GET", "/api/v1/storage-sites?q=nas", "other").get_json()["items"]
    assert [item["name"] for item in found] == ["lab-disk"]
    one = site_env.call("GET", "/api/v1/storage-sites/moto", "other").get_json()
    assert one["validated"] is True and one["access_mode"] == "proxy" and one["datasets"] == 0
    embedded = site_env.call("GET", "/api/v1/storage-sites/local", "other").get_json()
    assert embedded["validated"] is False  # registered at start-up, never probed
    _no_secret(json.dumps(one))


def test_no_secret_reaches_the_log(
    site_env: SiteEnv, s3_bucket: S3Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    site_env.call("POST", "/api/v1/storage-sites", "admin", json=s3_site(s3_bucket))
    broken = s3_site(s3_bucket, name="x", bucket="nope-nope")
    site_env.call("POST", "/api/v1/storage-sites", "admin", json=broken)
    assert "storage site registered" in caplog.text
    _no_secret(caplog.text)
    # At DEBUG botocore itself logs the Authorization header (key id and signature), but
    # never a secret key.
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    site_env.call("PUT", "/api/v1/storage-sites/moto", "admin", json=s3_site(s3_bucket))
    _no_secret(caplog.text, key_ids=False)


def test_a_local_path_with_dot_dot_is_refused_before_any_probe_is_written(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    (tmp_path / "lab").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for path in (f"{tmp_path}/lab/../elsewhere", f"{tmp_path}/lab/", f"{tmp_path}//lab"):
        body = {"name": "typo", "kind": "local", "path": path}
        answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
        assert answer.status_code == 400, answer.get_json()
        assert "normalised" in answer.get_json()["error"]["message"]
    assert list(outside.iterdir()) == []  # the validation probe wrote nothing there
