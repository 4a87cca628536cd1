"""The dataset pipeline executed for real (gitlab-ci-local, shell executor) on a moto S3 remote.

One repository walks through a merge request's life, so the slow pipeline runs stay few:
validate fails while objects are missing (a single file, and one entry inside a tracked
directory whose `.dir` is stored), dvc-push uploads and then refuses to call a partial
directory complete, passes once storage is whole, validate passes, a changed remote fails,
and a gc dry run on S3 lists exactly the orphan.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.ci.harness import DATASET_ID, PipelineRepo, make_dataset, require_tools, set_origin_main
from tests.conftest import S3Bucket

pytestmark = pytest.mark.slow


def _junit_failures(path: Path) -> dict[str, str]:
    tree = ET.parse(path)  # noqa: S314 - the job's own report
    return {
        f"{case.get('classname')}:{case.get('name')}": (case.find("failure").text or "")  # type: ignore[union-attr]
        for case in tree.iter("testcase")
        if case.find("failure") is not None
    }


def _keys(bucket: S3Bucket, prefix: str) -> set[str]:
    client = bucket.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=prefix)
    return {item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", [])}


def _object_key(md5: str) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}"


@pytest.fixture
def dataset(tmp_path: Path, s3_bucket: S3Bucket, dvc_env: dict[str, str]) -> PipelineRepo:
    require_tools()
    url = f"s3://{s3_bucket.name}/sites/main/{DATASET_ID}"
    repo = make_dataset(
        tmp_path,
        url,
        dvc_env,
        {
            "DSHUB_S3_ENDPOINT_URL": s3_bucket.endpoint_url,
            "DSHUB_S3_RO_ACCESS_KEY_ID": s3_bucket.access_key,
            "DSHUB_S3_RO_SECRET_ACCESS_KEY": s3_bucket.secret_key,
            "DSHUB_S3_RW_ACCESS_KEY_ID": s3_bucket.access_key,
            "DSHUB_S3_RW_SECRET_ACCESS_KEY": s3_bucket.secret_key,
        },
        extra_includes=[
            {"component": "dvc-gc", "inputs": {"job_name": "dvc-gc-now", "min_age_hours": 0}}
        ],
    )
    # Only the test's own `dvc` calls get the endpoint; the jobs must find it themselves.
    repo.dvc_extra_env = {"AWS_ENDPOINT_URL_S3": s3_bucket.endpoint_url}
    return repo


def test_merge_request_lifecycle_on_s3(dataset: PipelineRepo, s3_bucket: S3Bucket) -> None:
    repo = dataset
    prefix = f"sites/main/{DATASET_ID}/"
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "add-data")
    repo.write("a.bin", b"single file " * 100)
    for name in ("one.jpg", "two.jpg", "sub/x.jpg"):
        repo.write(f"images/{name}", f"image {name}".encode() * 50)
    repo.dvc("add", "-q", "a.bin", "images")
    head = repo.commit("Add data")
    a_md5 = repo.dvc("ls", "--json", "--dvc-only", "--show-hash", ".")
    hashes = {entry["path"]: entry["md5"] for entry in json.loads(a_md5)}
    x_md5 = json.loads(repo.dvc("ls", "--json", "--show-hash", ".", "images/sub"))[0]["md5"]

    # Only the directory was pushed, and then one of its entries was lost.
    repo.dvc("push", "images.dvc")
    s3_bucket.client().delete_object(Bucket=s3_bucket.name, Key=prefix + _object_key(x_md5))
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_DIFF_BASE_SHA": base}

    failed = repo.pipeline("validate-storage", mr)
    assert failed.returncode != 0, failed.output
    failures = _junit_failures(repo.work / "validate-storage.xml")
    assert set(failures) == {"storage:a.bin.dvc", "storage:images.dvc"}, failures
    assert "a.bin" in failures["storage:a.bin.dvc"]
    assert f"images/sub/x.jpg ({x_md5})" in failures["storage:images.dvc"]
    assert "images/one.jpg" not in failures["storage:images.dvc"]
    diff = (repo.work / "dvc-data-diff.md").read_text()
    assert "| added | 4 |" in diff and "`images/sub/x.jpg`" in diff

    # Merged to main: dvc push uploads a.bin but, like DVC itself, trusts the stored .dir;
    # the job's own proof catches the lost entry.
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "add-data")
    repo.git("push", "-q", str(repo.origin), "main")
    set_origin_main(repo.work, head)
    partial = repo.pipeline("dvc-push")
    assert partial.returncode != 0, partial.output
    assert _object_key(hashes["a.bin"]) in _keys(s3_bucket, prefix)
    assert "missing from" in partial.output and "images/sub/x.jpg" in partial.output

    # With the manifest gone DVC re-uploads the directory; now the proof passes.
    s3_bucket.client().delete_object(
        Bucket=s3_bucket.name, Key=prefix + _object_key(hashes["images"])
    )
    pushed = repo.pipeline("dvc-push")
    assert pushed.returncode == 0, pushed.output
    assert "verified: all 5 objects" in pushed.output
    assert _object_key(x_md5) in _keys(s3_bucket, prefix)

    repo.git("checkout", "-q", "add-data")
    passed = repo.pipeline("validate-storage", mr)
    assert passed.returncode == 0, passed.output
    assert _junit_failures(repo.work / "validate-storage.xml") == {}

    repo.git("checkout", "-q", "-b", "move-remote")
    repo.dvc("remote", "modify", "storage", "url", f"s3://{s3_bucket.name}/elsewhere")
    repo.commit("Point the remote elsewhere")
    moved = repo.pipeline("validate-storage", mr)
    assert moved.returncode != 0, moved.output
    remote_failure = _junit_failures(repo.work / "validate-storage.xml")
    assert list(remote_failure) == ["remote:.dvc/config remote"]
    assert "DSHUB_DVC_REMOTE_URL" in remote_failure["remote:.dvc/config remote"]

    # gc on S3 (min_age_hours 0, dry run): exactly the orphan is a candidate.
    repo.git("checkout", "-q", "main")
    orphan = _object_key("0123456789abcdef0123456789abcdef")
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key=prefix + orphan, Body=b"orphan")
    before = _keys(s3_bucket, prefix)
    dry = repo.pipeline("dvc-gc-now")
    assert dry.returncode == 0, dry.output
    report = json.loads((repo.work / "dvc-gc-report.json").read_text())
    assert [item["key"] for item in report["candidates"]] == [orphan]
    assert report["candidate_bytes"] == len(b"orphan") and report["dry_run"] is True
    assert _keys(s3_bucket, prefix) == before
