"""Byte access to the dataset's remote for gc, through the service's own storage stores.

The remote URL from `.dvc/config` (already checked to be this dataset's) becomes an
`indexer.data.storage` store confined to the dataset's prefix, so the CI job and dshub's gc
endpoint list and delete through the same code.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from dshub.ci.environment import Access
from dshub.ci.errors import CiConfigError
from dshub.ci.remote import RemoteConfig
from dshub.config import CiVariables
from indexer.data.storage import Credentials, LocalObjectStore, S3ObjectStore, StorageSite


def open_remote_store(
    repo_root: Path, remote: RemoteConfig, variables: CiVariables, access: Access
) -> LocalObjectStore | S3ObjectStore:
    """A store over the remote's objects: S3 with the `access` keys, or a local directory."""
    parts = urlsplit(remote.url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        prefix = parts.path.strip("/")
        site = StorageSite(
            name=remote.name,
            kind="s3",
            bucket=parts.netloc,
            prefix=prefix,
            endpoint_url=variables.get("DSHUB_S3_ENDPOINT_URL"),
        )
        keys = f"DSHUB_S3_{access.value}_"
        credentials = Credentials(
            access_key_id=variables.require(keys + "ACCESS_KEY_ID", "storage key for gc"),
            secret_access_key=variables.require(keys + "SECRET_ACCESS_KEY", "storage key for gc"),
        )
        return S3ObjectStore(site, credentials, f"{prefix}/" if prefix else "")
    if scheme in ("", "file"):
        path = Path(parts.path if scheme == "file" else remote.url)
        # DVC resolves a relative local remote against the directory of .dvc/config.
        root = path if path.is_absolute() else (repo_root / ".dvc" / path).resolve()
        if not root.is_dir():
            raise CiConfigError(f"local remote {remote.url} is not a directory on this runner")
        return LocalObjectStore(root)
    raise CiConfigError(f"gc does not support remote {remote.url}")
