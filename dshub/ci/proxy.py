"""dshub's DVC remote (proxy mode): the job's CI_JOB_TOKEN as DVC http auth, for the job only.

In proxy mode `.dvc/config` names `DSHUB_URL/dvc/<id>` and pipelines authenticate with
`CI_JOB_TOKEN`; no storage key is in the project. DVC's http remote takes credentials from
its configuration, never from the environment, so for the job's lifetime the remote's section
of `.dvc/config.local` gets `auth = custom`, `custom_auth_header = JOB-TOKEN` and
`password = <CI_JOB_TOKEN>`, and its `url` pinned to the URL the job checked (a `config.local`
left in the build directory cannot send the data elsewhere). The file is made owner-only and
put back byte for byte when the job ends, on failure and on SIGTERM (a cancelled job) too.

Presence checks (the dvc-push job's proof, validate-storage) do not go through DVC, whose http
remote asks one GET per object: `DshubRemote.missing` asks dshub's batch answer,
`POST <remote>/missing {"keys": [...]}`, 10,000 keys per request, with the same token header,
TLS setting and error handling as the access check.

The remote's other options are deliberately left to `.dvc/config` and DVC's defaults:
`method` stays DVC's POST (dshub's remote takes POST and PUT, so either committed choice
works); `ssl_verify` is never turned off by the job (verification on; a private CA is named
with `ssl_verify = <ca file>` in `.dvc/config` or trusted by the CI image, and the access check
uses the same setting); DVC's timeouts (60 s to connect, 60 s without a byte, no limit on a
whole transfer) suit large objects streamed through dshub.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dshub.ci.errors import CiCheckFailed, CiConfigError

if TYPE_CHECKING:
    import requests

AUTH_HEADER = "JOB-TOKEN"
ACCESS_CHECK_TIMEOUT = 30.0
# An object id nobody stores: the access check expects dshub to answer 404 for it.
_PROBE_KEY = "files/md5/00/" + "0" * 30
_MESSAGE_LIMIT = 64 * 1024
PRESENCE_BATCH = 10_000  # keys per request: dshub's limit (indexer.data.presence.MAX_KEYS)
# dshub answers once storage has: 10,000 HEADs on a slow site take minutes.
PRESENCE_ANSWER_TIMEOUT = 600.0


def is_proxy_url(url: str) -> bool:
    """True when `url` is an http(s) remote, i.e. dshub's DVC remote (proxy mode)."""
    return urlsplit(url).scheme.lower() in ("http", "https")


def service_url(remote_url: str, dataset_id: str) -> str:
    """dshub's base URL from its DVC remote URL `<DSHUB_URL>/dvc/<dataset id>`."""
    trimmed = remote_url.strip().rstrip("/")
    suffix = f"/dvc/{dataset_id}"
    if not trimmed.endswith(suffix) or len(trimmed) == len(suffix):
        raise CiConfigError(
            f"remote {remote_url} is not dshub's DVC remote of dataset {dataset_id} "
            f"(<DSHUB_URL>{suffix})"
        )
    return trimmed[: -len(suffix)]


def error_message(response: requests.Response) -> str:
    """dshub's `{"error": {"message"}}`, else the reason phrase (the body is read capped)."""
    import json

    body = b""
    for chunk in response.iter_content(8192):
        body += chunk
        if len(body) >= _MESSAGE_LIMIT:
            break
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason or "no message"


def check_access(remote_url: str, token: str, ssl_verify: bool | str = True) -> None:
    """Ask dshub's remote for an object nobody has: 404 (or 200) means the token is accepted.

    DVC counts any refused request as a missing object, so without this check a wrong token
    would surface as "everything is missing" instead of the reason.
    """
    import requests  # not at import time: direct-mode jobs never need it

    probe = f"{remote_url.rstrip('/')}/{_PROBE_KEY}"
    try:
        with requests.get(
            probe,
            headers={AUTH_HEADER: token},
            timeout=ACCESS_CHECK_TIMEOUT,
            stream=True,
            verify=ssl_verify,
        ) as response:
            status = response.status_code
            message = "" if status in (200, 404) else error_message(response)
    except requests.RequestException as exc:
        raise _unreachable(remote_url, exc) from None
    if status in (200, 404):
        return
    raise _refused(remote_url, status, message)


def _unreachable(remote_url: str, exc: Exception) -> CiConfigError:
    return CiConfigError(
        f"cannot reach dshub's DVC remote {remote_url} ({type(exc).__name__}); check that "
        "DSHUB_URL is reachable from the runner"
    )


def _refused(remote_url: str, status: int, message: str) -> CiConfigError:
    if status in (401, 403):
        return CiConfigError(
            f"dshub refused this job's CI_JOB_TOKEN for {remote_url}: dshub answered {status} "
            f"({message})"
        )
    return CiConfigError(f"dshub's DVC remote {remote_url} answered {status} ({message})")


@dataclass(frozen=True)
class DshubRemote:
    """dshub's DVC remote as this job reaches it: its URL, the job token, the TLS setting."""

    url: str
    token: str = field(repr=False)
    ssl_verify: bool | str = True

    def missing(self, keys: Sequence[str]) -> set[str]:
        """Those of the object `keys` the remote does not hold, asked of dshub in requests of
        `PRESENCE_BATCH` keys (`POST <remote>/missing`); one-line `CiConfigError` (refused,
        unreachable) or `CiCheckFailed` (an answer that is not one) otherwise."""
        import requests  # not at import time: direct-mode jobs never need it

        wanted = sorted(set(keys))
        absent: set[str] = set()
        with requests.Session() as session:
            for start in range(0, len(wanted), PRESENCE_BATCH):
                absent |= self._ask(session, wanted[start : start + PRESENCE_BATCH])
        return absent

    def _ask(self, session: requests.Session, keys: list[str]) -> set[str]:
        import requests

        url = f"{self.url.rstrip('/')}/missing"
        try:
            with session.post(
                url,
                json={"keys": keys},
                headers={AUTH_HEADER: self.token},
                timeout=(ACCESS_CHECK_TIMEOUT, PRESENCE_ANSWER_TIMEOUT),
                stream=True,
                verify=self.ssl_verify,
            ) as response:
                status = response.status_code
                if status != 200:
                    message = error_message(response)
                    if status == 404:
                        message += f"; this job needs a dshub that answers POST {url}"
                    raise _refused(self.url, status, message)
                data = response.content
        except requests.RequestException as exc:
            raise _unreachable(self.url, exc) from None
        return self._absent(data, keys)

    def _absent(self, data: bytes, keys: list[str]) -> set[str]:
        import json

        try:
            body = json.loads(data)
        except ValueError:
            body = None
        missing = body.get("missing") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or body.get("checked") != len(keys)
            or not isinstance(missing, list)
            or not all(isinstance(key, str) for key in missing)
            or not set(missing) <= set(keys)
        ):
            raise CiCheckFailed(
                f"dshub's DVC remote {self.url} gave an unexpected answer to which of "
                f"{len(keys)} objects it holds; see dshub's log"
            )
        return set(missing)


def ssl_verify_of(options: dict[str, Any]) -> bool | str:
    """The remote's `ssl_verify` as DVC reads it: a CA file path, or a boolean (default on)."""
    value = options.get("ssl_verify")
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


@contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (GitLab cancelling the job) into SystemExit so `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def job_token_auth(root: Path, remote_name: str, remote_url: str, token: str) -> Iterator[None]:
    """Within the block DVC reaches `remote_name` at `remote_url` with `token` as JOB-TOKEN.

    Written to `.dvc/config.local` (owner-only) and restored exactly as it was afterwards.
    """
    from dvc.config import Config

    dvc_dir = root / ".dvc"
    local = dvc_dir / Config.CONFIG_LOCAL
    original = local.read_bytes() if local.exists() else None
    mode = stat.S_IMODE(local.stat().st_mode) if original is not None else None
    with _exit_on_sigterm():
        try:
            if original is None:
                os.close(os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            else:
                local.chmod(0o600)
            config = Config(dvc_dir=str(dvc_dir), validate=False)
            with config.edit("local", validate=False) as conf:
                section = conf["remote"].setdefault(remote_name, {})
                section.update(
                    url=remote_url,
                    auth="custom",
                    custom_auth_header=AUTH_HEADER,
                    password=token,
                )
            yield
        finally:
            if original is None:
                local.unlink(missing_ok=True)
            else:
                local.write_bytes(original)
                local.chmod(mode if mode is not None else 0o600)
