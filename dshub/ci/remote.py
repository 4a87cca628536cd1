"""The dataset's DVC remote as `.dvc/config` names it, and the checks that it is this dataset's.

Only the committed `.dvc/config` counts (what GitLab and every clone see); a `config.local`
cannot change what a merge request proposes. A remote's URL must equal DSHUB_DVC_REMOTE_URL,
and gc additionally insists that the URL ends with this project's dataset id, so a project
started from a dataset (a fork, a copy) can never collect the original dataset's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.proxy import ssl_verify_of
from dshub.config import CiVariables

_SECRET_OPTIONS = ("access_key_id", "secret_access_key", "session_token", "password", "token")


@dataclass(frozen=True)
class RemoteConfig:
    """One remote section of `.dvc/config`."""

    name: str
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _normalise(url: str) -> str:
    return url.strip().rstrip("/")


def read_remote(repo_root: Path, name: str | None) -> RemoteConfig:
    """The remote `name` (or the default remote, `core.remote`) of the committed `.dvc/config`."""
    from dvc.config import Config, ConfigError

    dvc_dir = repo_root / ".dvc"
    if not (dvc_dir / "config").is_file():
        raise CiCheckFailed(f"{repo_root} has no .dvc/config: this is not a DVC repository")
    try:
        conf = Config(dvc_dir=str(dvc_dir), validate=False).load_one("repo")
    except ConfigError as exc:
        raise CiCheckFailed(f".dvc/config cannot be read: {exc}") from exc
    remotes: Mapping[str, Any] = conf.get("remote", {})
    chosen = name or conf.get("core", {}).get("remote")
    if not chosen:
        raise CiCheckFailed(
            ".dvc/config names no default remote (core.remote); set it to the dataset's "
            "remote with `dvc remote default <name>`"
        )
    section = remotes.get(chosen)
    if not section or not section.get("url"):
        raise CiCheckFailed(f".dvc/config has no remote named {chosen!r} with a url")
    return RemoteConfig(name=chosen, url=str(section["url"]), options=dict(section))


def remote_problems(remote: RemoteConfig, variables: CiVariables) -> list[str]:
    """Every way `remote` differs from what dshub set for this dataset (empty when it matches)."""
    problems: list[str] = []
    expected = variables.expected_remote_url()
    if _normalise(remote.url) != _normalise(expected):
        problems.append(
            f"remote {remote.name!r} in .dvc/config points at {remote.url}, but this dataset's "
            f"storage is {expected} (DSHUB_DVC_REMOTE_URL); restore the remote URL"
        )
    endpoint = remote.options.get("endpointurl")
    expected_endpoint = variables.get("DSHUB_S3_ENDPOINT_URL")
    if endpoint and _normalise(str(endpoint)) != _normalise(expected_endpoint or ""):
        problems.append(
            f"remote {remote.name!r} in .dvc/config sets endpointurl {endpoint}, but the storage "
            f"site's endpoint is {expected_endpoint or '(none)'} (DSHUB_S3_ENDPOINT_URL); "
            "remove endpointurl from .dvc/config"
        )
    secrets = sorted(key for key in remote.options if key in _SECRET_OPTIONS)
    if secrets:
        problems.append(
            f"remote {remote.name!r} in .dvc/config holds credentials ({', '.join(secrets)}); "
            "remove them: the pipeline gets its keys from CI/CD variables"
        )
    return problems


def tls_problems(remote: RemoteConfig) -> list[str]:
    """A committed `ssl_verify = false` on `remote` (empty list when verification is on)."""
    if ssl_verify_of(dict(remote.options)) is not False:
        return []
    return [
        f"remote {remote.name!r} in .dvc/config sets ssl_verify = false: every clone and "
        f"pipeline would send its token and data to whoever answers for {remote.url}; remove "
        "it, or name the CA bundle that signs the server's certificate (ssl_verify = <path>)"
    ]


def require_expected_remote(remote: RemoteConfig, variables: CiVariables) -> None:
    """Raise `CiConfigError` with every problem when `remote` is not this dataset's remote."""
    problems = remote_problems(remote, variables)
    if problems:
        raise CiConfigError("; ".join(problems))


def require_owned_remote(remote: RemoteConfig, variables: CiVariables) -> None:
    """Raise unless `remote` is this dataset's remote and its URL ends with this dataset's id."""
    require_expected_remote(remote, variables)
    dataset_id = variables.require(
        "DSHUB_DATASET_ID", "dshub sets it to the project id of the dataset the storage belongs to"
    )
    project_id = variables.get("CI_PROJECT_ID")
    if project_id is not None and project_id != dataset_id:
        raise CiConfigError(
            f"this project (CI_PROJECT_ID {project_id}) is not dataset {dataset_id} "
            "(DSHUB_DATASET_ID): the storage belongs to another project; refusing to collect it"
        )
    last_segment = urlsplit(_normalise(remote.url)).path.rstrip("/").rsplit("/", 1)[-1]
    if last_segment != dataset_id:
        raise CiConfigError(
            f"remote {remote.url} does not end with this dataset's id {dataset_id} "
            "(DSHUB_DATASET_ID): it belongs to another dataset; refusing to collect it"
        )
