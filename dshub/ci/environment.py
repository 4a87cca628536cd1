"""The CI/CD variables the jobs read, and the storage credentials they hand to DVC.

The contract (ARCHITECTURE.md, "Contracts between the parts"): dshub sets DSHUB_DVC_REMOTE_URL,
DSHUB_DATASET_ID and, in direct mode, DSHUB_S3_ENDPOINT_URL plus a read-only key pair (for
merge-request validation) and a read-write pair (protected: push and gc only). In proxy mode
the remote is dshub's and the job authenticates with CI_JOB_TOKEN, which DVC takes from its
config, not the environment (`dshub.ci.proxy`). A missing variable is reported as one line
that names it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from enum import Enum
from urllib.parse import urlsplit

from dshub.ci.errors import CiConfigError
from dshub.config import CiVariables


class Access(Enum):
    """Which key pair a job needs."""

    READ_ONLY = "RO"
    READ_WRITE = "RW"


_WHY = {
    Access.READ_ONLY: "the read-only storage key dshub sets on the dataset (masked CI/CD variable)",
    Access.READ_WRITE: "the read-write storage key dshub sets on the dataset (masked, protected "
    "CI/CD variable: it reaches only pipelines on protected branches and tags)",
}


def storage_environment(variables: CiVariables, remote_url: str, access: Access) -> dict[str, str]:
    """Environment entries that let DVC (and boto) reach `remote_url` with the `access` keys.

    S3 remotes need the key pair of `access` and take DSHUB_S3_ENDPOINT_URL when it is set;
    local-directory remotes need nothing, and neither do dshub's (proxy-mode, http) remotes,
    whose job token goes into DVC's config instead (`dshub.ci.access.remote_access`).
    """
    scheme = urlsplit(remote_url).scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and remote_url[1:2] == ":"):
        return {}
    if scheme == "s3":
        prefix = f"DSHUB_S3_{access.value}_"
        result = {
            "AWS_ACCESS_KEY_ID": variables.require(prefix + "ACCESS_KEY_ID", _WHY[access]),
            "AWS_SECRET_ACCESS_KEY": variables.require(prefix + "SECRET_ACCESS_KEY", _WHY[access]),
            # A session token or profile from elsewhere must not mix with these keys.
            "AWS_SESSION_TOKEN": "",
            "AWS_PROFILE": "",
        }
        endpoint = variables.get("DSHUB_S3_ENDPOINT_URL")
        if endpoint:
            result["AWS_ENDPOINT_URL_S3"] = endpoint
            result["AWS_ENDPOINT_URL"] = endpoint
        return result
    if scheme in ("http", "https"):
        return {}
    raise CiConfigError(f"remote {remote_url} uses the unsupported scheme {scheme!r}")


def apply_environment(target: MutableMapping[str, str], extra: Mapping[str, str]) -> None:
    """Merge `extra` into `target`; an empty value removes the variable."""
    for key, value in extra.items():
        if value == "":
            target.pop(key, None)
        else:
            target[key] = value
