"""A tracked directory whose manifest lives in the S3 site, pushed with real git + dvc while
every webhook is lost: the index misses it until reconcile, then holds every entry with its size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRegistry
from tests.conftest import S3Bucket
from tests.convergence.gitlab_ops import expected_index
from tests.convergence.harness import Example
from tests.receiver.serving import Gunicorn
from tests.support.dataset_repo import DatasetRepo, image_bytes
from tests.support.index_snapshot import index_snapshot


def test_lost_webhooks_for_a_tracked_directory_are_repaired_by_reconcile(
    tmp_path: Path,
    redis_url: str,
    receiver: Gunicorn,
    s3_bucket: S3Bucket,
    dvc_env: dict[str, str],
) -> None:
    example = Example(tmp_path, redis_url, f"{receiver.url}/webhooks/gitlab")
    try:
        SiteRegistry(example.store.url).put(
            StorageSite(
                name="lab",
                kind="s3",
                bucket=s3_bucket.name,
                prefix="team",
                endpoint_url=s3_bucket.endpoint_url,
                region=s3_bucket.region,
            )
        )
        gl = example.gl
        project = gl.projects.create(
            {"name": "cats", "namespace_id": example.groups[0], "initialize_with_readme": True}
        )
        project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
        example.settle()
        repo = DatasetRepo(
            example.workdir / "work",
            example.sandbox.url,
            "lab/cats",
            example.sandbox.admin_token,
            dvc_env,
        )
        repo.init_dvc_s3(s3_bucket, f"team/{project.id}")
        contents = {f"cat{i}.png": image_bytes(i, 300 + i) for i in range(3)}
        contents["masks/cat0.png"] = image_bytes(9, 77)
        for rel, data in contents.items():
            repo.write(f"images/{rel}", data)
        repo.write("labels.csv", b"file,label\n")
        repo.track("images", "labels.csv")
        example.sandbox.faults.drop_webhooks(100)
        repo.commit_and_push("Add cats")
        repo.tag("v1", "First")
        example.settle()
        assert example.store.get_dataset(project.id) is None  # every hint was lost

        example.reconcile()
        dir_md5 = yaml.safe_load((repo.path / "images.dvc").read_text())["outs"][0]["md5"]
        entries = {
            rel: (hashlib.md5(data).hexdigest(), len(data)) for rel, data in contents.items()
        }
        truth = expected_index(gl, {dir_md5: entries})
        assert truth[str(project.id)]["refs"]["v1"]["files"]["images/masks/cat0.png"][2] == 77
        assert index_snapshot(example.store) == truth
    finally:
        example.close()
