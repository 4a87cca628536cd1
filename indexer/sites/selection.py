"""A dataset's storage-site selection: who may choose, and the CI/CD variables it sets.

The selection is made once by a Maintainer (or more) of the dataset's GitLab project and is
never changed. It is recorded in the service database (`SiteRegistry.select`) and written to
the project as the CI/CD variables of the contract in ARCHITECTURE.md, with the service token
(python-gitlab). Which variables and flags follow from the site's access mode:

- proxy: DSHUB_URL, DSHUB_DATASET_ID, DSHUB_STORAGE_SITE, DSHUB_DVC_REMOTE_URL = DSHUB_URL/dvc/<id>;
- direct: the same with DSHUB_DVC_REMOTE_URL = s3://bucket/<site prefix>/<id>, plus
  DSHUB_S3_ENDPOINT_URL, the read-only keys (masked, not protected) from the credentials entry
  `credentials_ref_readonly`, and the read-write keys (masked, hidden, protected) from
  `credentials_ref`.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions
import requests

from indexer.data.storage import Credentials
from indexer.errors import (
    Conflict,
    DshubError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    Unavailable,
)
from indexer.sites.probe import endpoint_of
from indexer.sites.registry import SiteRecord

MAINTAINER = 40
GUEST = 10
# GitLab refuses to mask values outside this alphabet or shorter than 8 characters.
MASKABLE = re.compile(r"^[a-zA-Z0-9_+=/@:.~-]{8,}$")


class NotADataset(Conflict):
    """The project's default branch is not a DVC repository."""

    code = "not_a_dataset"


class SelectionExists(Conflict):
    """The dataset already has a storage site; the selection cannot be changed."""

    code = "storage_site_already_selected"


@dataclass(frozen=True)
class CiVariable:
    """One CI/CD variable to set on a project, with GitLab's flags."""

    key: str
    value: str = field(repr=False)
    masked: bool = False
    protected: bool = False
    hidden: bool = False


def _translate(exc: Exception, what: str) -> DshubError:
    if isinstance(exc, gitlab.exceptions.GitlabAuthenticationError):
        return NotAuthenticated("GitLab did not accept the token")
    if isinstance(exc, gitlab.exceptions.GitlabError):
        return Unavailable(f"GitLab answered {exc.response_code} while {what}")
    if isinstance(exc, requests.RequestException):
        return Unavailable(f"GitLab could not be reached while {what}")
    raise exc


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, gitlab.exceptions.GitlabError) and exc.response_code == 404


# ------------------------------------------------------------------------------ who may


def is_site_admin(client: gitlab.Gitlab, user_id: int, admin_group: str | None) -> bool:
    """Whether the caller (whose token `client` carries) is an active member of `admin_group`.

    Asked with the caller's own token: a member can always see their group, so no service
    token is needed, and GitLab's answer is exactly what the caller may know.
    """
    if not admin_group:
        return False
    try:
        member = client.groups.get(admin_group, lazy=True).members_all.get(user_id)
    except Exception as exc:
        # 404: not a member (or the group is hidden from them); 403: the token may not ask.
        if _not_found(exc) or getattr(exc, "response_code", None) == 403:
            return False
        raise _translate(exc, f"checking membership of group {admin_group!r}") from exc
    attrs = member.asdict()
    return attrs.get("state", "active") == "active" and int(attrs.get("access_level", 0)) >= GUEST


# ------------------------------------------------------------------------------ variables


def dvc_remote_url(record: SiteRecord, project_id: int, public_url: str) -> str:
    """The DVC remote a dataset's `.dvc/config` must name (proxy: dshub; direct: the bucket)."""
    site = record.site
    if site.access_mode == "direct":
        return f"s3://{site.bucket}/{site.dataset_prefix(project_id).rstrip('/')}"
    return f"{public_url.rstrip('/')}/dvc/{project_id}"


def _keys(credentials: Mapping[str, Credentials], ref: str | None, what: str) -> Credentials:
    entry = credentials.get(ref) if ref else None
    if entry is None:
        raise InvalidInput(
            f"the credentials file has no entry {ref!r} for the {what} keys of this site; "
            "ask the operator to add it"
        )
    for part, value in (
        ("access key id", entry.access_key_id),
        ("secret", entry.secret_access_key),
    ):
        if not MASKABLE.match(value):
            raise InvalidInput(
                f"the {what} {part} of credentials entry {ref!r} cannot be masked by GitLab "
                "(needs 8+ characters of letters, digits and _+=/@:.~-); rotate the key"
            )
    return entry


def contract_variables(
    record: SiteRecord,
    project_id: int,
    public_url: str,
    credentials: Mapping[str, Credentials],
) -> list[CiVariable]:
    """The CI/CD variables of the contract for a dataset on this site (see the module doc)."""
    site = record.site
    variables = [
        CiVariable("DSHUB_URL", public_url.rstrip("/")),
        CiVariable("DSHUB_DATASET_ID", str(project_id)),
        CiVariable("DSHUB_STORAGE_SITE", site.name),
        CiVariable("DSHUB_DVC_REMOTE_URL", dvc_remote_url(record, project_id, public_url)),
    ]
    if site.access_mode != "direct":
        return variables
    ro = _keys(credentials, record.credentials_ref_readonly, "read-only")
    rw = _keys(credentials, site.credentials_ref, "read-write")
    return [
        *variables,
        CiVariable("DSHUB_S3_ENDPOINT_URL", endpoint_of(site)),
        CiVariable("DSHUB_S3_RO_ACCESS_KEY_ID", ro.access_key_id, masked=True),
        CiVariable("DSHUB_S3_RO_SECRET_ACCESS_KEY", ro.secret_access_key, masked=True),
        CiVariable(
            "DSHUB_S3_RW_ACCESS_KEY_ID", rw.access_key_id, masked=True, protected=True, hidden=True
        ),
        CiVariable(
            "DSHUB_S3_RW_SECRET_ACCESS_KEY",
            rw.secret_access_key,
            masked=True,
            protected=True,
            hidden=True,
        ),
    ]


def _create_data(variable: CiVariable) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": variable.key,
        "value": variable.value,
        "protected": variable.protected,
        "raw": True,  # our values are literal: never expand $ in a key
        "environment_scope": "*",
    }
    if variable.hidden:
        data["masked_and_hidden"] = True
    else:
        data["masked"] = variable.masked
    return data


def set_variables(client: gitlab.Gitlab, project_id: int, variables: list[CiVariable]) -> None:
    """Create each variable with exactly its flags, replacing any variable of the same key.

    A variable left by an earlier, interrupted attempt is deleted and created again, because
    GitLab cannot make an existing variable hidden.
    """
    project = client.projects.get(project_id, lazy=True)
    for variable in variables:
        try:
            try:
                project.variables.create(_create_data(variable))
            except gitlab.exceptions.GitlabCreateError as exc:
                if exc.response_code != 400 or "taken" not in str(exc.error_message):
                    raise
                project.variables.delete(variable.key)
                project.variables.create(_create_data(variable))
        except Exception as exc:
            raise _translate(
                exc, f"setting CI/CD variable {variable.key} on project {project_id}"
            ) from None


# ------------------------------------------------------------------------------ .dvc/config

REMOTE_NAME = "dshub"
DVC_CONFIG = ".dvc/config"


class RemoteConflict(Conflict):
    """`.dvc/config` already names another default remote (or `dshub` at another URL)."""

    code = "dvc_remote_conflict"


def dvc_config_naming(text: str, url: str) -> str | None:
    """`.dvc/config` with the remote `dshub` at `url` as the default remote, written by DVC's
    own `Config.edit` (what `dvc remote add -d dshub <url>` writes); None when it already says
    exactly that. Raises `RemoteConflict` when another default remote is named, or `dshub`
    points elsewhere (gc compares the URL with DSHUB_DVC_REMOTE_URL)."""
    from dvc.config import Config, ConfigError

    with tempfile.TemporaryDirectory(prefix="dshub-dvc-config-") as tmp:
        dvc_dir = Path(tmp) / ".dvc"
        dvc_dir.mkdir()
        (dvc_dir / "config").write_text(text, encoding="utf-8")
        try:
            config = Config(dvc_dir=str(dvc_dir), validate=False)
            current = config.load_one("repo")
        except ConfigError as exc:
            raise RemoteConflict(
                f"{DVC_CONFIG} cannot be read by DVC ({exc}); fix it first"
            ) from None
        default = (current.get("core") or {}).get("remote")
        existing = (current.get("remote") or {}).get(REMOTE_NAME)
        if default and default != REMOTE_NAME:
            raise RemoteConflict(
                f"{DVC_CONFIG} already names {default!r} as its default remote; remove it "
                f"(`dvc remote default --unset`) or make it `{REMOTE_NAME}` with URL {url}"
            )
        if existing is not None and existing.get("url") != url:
            raise RemoteConflict(
                f"{DVC_CONFIG} has a remote {REMOTE_NAME!r} at {existing.get('url')!r}, not {url}"
            )
        if default == REMOTE_NAME and existing is not None:
            return None
        with config.edit("repo") as conf:
            conf["remote"].setdefault(REMOTE_NAME, {})["url"] = url
            conf["core"]["remote"] = REMOTE_NAME
        return (dvc_dir / "config").read_text(encoding="utf-8")


def check_dvc_config(project: Any, branch: str, url: str) -> tuple[str | None, str | None]:
    """(new `.dvc/config` text or None when nothing changes, its `last_commit_id`), read with
    the caller's client; raises `RemoteConflict` like `dvc_config_naming`."""
    try:
        found = project.files.get(DVC_CONFIG, ref=branch).asdict()
    except Exception as exc:
        if _not_found(exc):
            raise NotADataset(f"the default branch has no {DVC_CONFIG}") from None
        raise _translate(exc, f"reading {DVC_CONFIG}") from exc
    text = base64.b64decode(found.get("content") or "").decode("utf-8", "replace")
    return dvc_config_naming(text, url), str(found.get("last_commit_id"))


def commit_dvc_config(project: Any, branch: str, url: str, attempts: int = 3) -> str | None:
    """Commit, as the caller whose client `project` belongs to, `.dvc/config` naming the remote
    `dshub` at `url` as default; the sha, or None when it already did. The update carries the
    file's `last_commit_id`; a file changed meanwhile is read and checked again."""
    for attempt in range(attempts):
        text, last = check_dvc_config(project, branch, url)
        if text is None:
            return None
        try:
            commit = project.commits.create(
                {
                    "branch": branch,
                    "commit_message": f"Use dshub's storage site: DVC remote {REMOTE_NAME}",
                    "actions": [
                        {
                            "action": "update",
                            "file_path": DVC_CONFIG,
                            "content": text,
                            "last_commit_id": last,
                        }
                    ],
                }
            )
        except gitlab.exceptions.GitlabCreateError as exc:
            message = str(exc.error_message)
            if exc.response_code == 403:
                raise Forbidden(
                    f"GitLab refused the commit of {DVC_CONFIG}: "
                    + message.removeprefix("403 Forbidden - ")
                ) from None
            if exc.response_code == 400 and "changed since" in message and attempt + 1 < attempts:
                continue
            raise _translate(exc, f"committing {DVC_CONFIG}") from None
        except Exception as exc:
            raise _translate(exc, f"committing {DVC_CONFIG}") from exc
        return str(commit.id)
    raise Conflict(f"{DVC_CONFIG} kept changing; try again")  # pragma: no cover
