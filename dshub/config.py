"""The service's configuration: every setting is a ``DSHUB_*`` environment variable.

`load_settings` parses and validates all of them at once and raises `ConfigError`
carrying one human-readable line per bad value, so an operator fixes everything in
one go instead of one restart per typo. Nothing here imports Flask.

The command line's settings (`ClientConfig`: `DSHUB_URL`, `DSHUB_TOKEN`, the config file) and
the CI/CD jobs' (`CiVariables`: the variables dshub sets on a dataset, read when a job needs
one) are objects of their own, so a `dshub download` or a pipeline job is never stopped by a
malformed server variable.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

from dshub.ci.errors import CiConfigError
from indexer.errors import InvalidInput

PREFIX = "DSHUB_"
DEFAULT_WEBHOOK_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_DVC_MAX_OBJECT_BYTES = 50 * 1024**3
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
DEFAULT_UPLOAD_MAX_BYTES = 5 * 1024**3
DEFAULT_UPLOAD_POINTER_WARN = 100
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


class ConfigError(ValueError):
    """Raised when one or more settings are invalid; `lines` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def report(self, stream: TextIO | None = None) -> None:
        """Print every problem on its own line, `dshub: configuration error: ...` (stderr)."""
        out = sys.stderr if stream is None else stream
        for line in self.lines:
            print(f"dshub: configuration error: {line}", file=out)


@dataclass(frozen=True)
class Settings:
    """The validated settings of one dshub process (service, worker or CLI command)."""

    data_dir: Path
    index_url: str
    public_url: str = DEFAULT_PUBLIC_URL
    gitlab_url: str | None = None
    gitlab_token: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    webhook_signing_key: bytes | None = field(default=None, repr=False)
    webhook_max_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES
    dvc_max_object_bytes: int = DEFAULT_DVC_MAX_OBJECT_BYTES
    upload_max_bytes: int = DEFAULT_UPLOAD_MAX_BYTES
    upload_pointer_warn: int = DEFAULT_UPLOAD_POINTER_WARN
    upload_staging_dir: Path | None = None
    redis_url: str | None = None
    storage_credentials_file: Path | None = None
    namespaces: tuple[str, ...] = ()
    admin_group: str | None = None
    allow_link_local_endpoints: tuple[str, ...] = ()
    reconcile_interval: int = 3600
    download_mode: str = "stream"
    mr_notes: bool = False
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def oauth_enabled(self) -> bool:
        """True when a GitLab OAuth application is configured ("Sign in with GitLab")."""
        return bool(self.oauth_client_id and self.oauth_client_secret and self.gitlab_url)

    @property
    def staging_dir(self) -> Path:
        """Where upload sessions keep their bytes until the commit: one directory every web
        process of the deployment reaches (`DSHUB_UPLOAD_STAGING_DIR`), by default inside
        `DSHUB_DATA_DIR` (right for one host; a scale-out gives each web its own data dir)."""
        return self.upload_staging_dir or self.data_dir / "upload-sessions"

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: the journal is drained by an in-process worker."""
        return self.redis_url is None


# Every setting that `load_settings` understands, with its one-line documentation.
# README.md's configuration table is checked against this by a test.
DOCUMENTED: dict[str, str] = {
    "DSHUB_GITLAB_URL": "base URL of GitLab (http/https); unset = the GitLab sandbox under `make run`",
    "DSHUB_GITLAB_TOKEN": "service token dshub reads GitLab with (admin or a bot with Reporter+)",
    "DSHUB_PUBLIC_URL": "URL people and pipelines reach dshub at (default http://127.0.0.1:8000)",
    "DSHUB_SECRET_KEY": "secret for sessions and CSRF, at least 32 characters; "
    "unset = generated once into DSHUB_DATA_DIR/secret_key",
    "DSHUB_OAUTH_CLIENT_ID": "Application ID of dshub's GitLab OAuth application (redirect URI "
    "`DSHUB_PUBLIC_URL/-/oauth/callback`, scope `api`); with the secret, offers Sign in with GitLab",
    "DSHUB_OAUTH_CLIENT_SECRET": "Secret of that GitLab OAuth application (set both or neither)",
    "DSHUB_WEBHOOK_SECRET": "shared secret(s) GitLab sends as X-Gitlab-Token; comma-separated to rotate",
    "DSHUB_WEBHOOK_SIGNING_KEY": "optional `whsec_<base64>` key to verify GitLab's webhook-signature",
    "DSHUB_WEBHOOK_MAX_BYTES": "largest accepted webhook body in bytes (default 26214400 = 25 MiB)",
    "DSHUB_DVC_MAX_OBJECT_BYTES": "largest object `dvc push` may upload through dshub's DVC "
    "remote, in bytes (default 53687091200 = 50 GiB)",
    "DSHUB_UPLOAD_MAX_BYTES": "largest file one upload through the API may hold, in bytes "
    "(default 5368709120 = 5 GiB); larger files answer 413 with the limit",
    "DSHUB_UPLOAD_POINTER_WARN": "most per-file pointers one upload writes without confirm=true "
    "(default 100); more answer 422",
    "DSHUB_UPLOAD_STAGING_DIR": "directory shared by every web process where upload sessions "
    "keep bytes until their commit (default DSHUB_DATA_DIR/upload-sessions; set it to a shared "
    "volume when web processes have their own data directories)",
    "DSHUB_REDIS_URL": "redis://, rediss:// or unix:// URL of the RQ queue; "
    "unset = local journal drained by an in-process worker",
    "DSHUB_INDEX_URL": "sqlite:///PATH or postgresql://... (default sqlite in DSHUB_DATA_DIR)",
    "DSHUB_DATA_DIR": "directory for the journal, the SQLite index, caches (default ./var)",
    "DSHUB_STORAGE_CREDENTIALS_FILE": "file holding storage-site credentials (never stored elsewhere)",
    "DSHUB_NAMESPACES": "comma-separated GitLab namespaces whose projects count as datasets",
    "DSHUB_ADMIN_GROUP": "GitLab group whose members may register storage sites",
    "DSHUB_ALLOW_LINK_LOCAL_ENDPOINTS": "comma-separated addresses/CIDRs a storage-site endpoint "
    "may resolve to although link-local or cloud-metadata (default: none)",
    "DSHUB_RECONCILE_INTERVAL": "seconds between full reconciles with GitLab; 0 = off (default 3600)",
    "DSHUB_DOWNLOAD_MODE": "`stream` (default) or `redirect` to presigned storage URLs",
    "DSHUB_MR_NOTES": "1 to keep a data-diff note on merge requests that change pointers",
    "DSHUB_LOG_LEVEL": "DEBUG, INFO (default), WARNING or ERROR",
    "DSHUB_LOG_FORMAT": "`json` (default) or `text`",
}


class _Reader:
    """Collects parse errors instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def parse(self, name: str, parser: Callable[[str], T], default: T) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parser(value)
        except ValueError as exc:
            # Secrets are never echoed back; everything else is, so the typo is visible.
            shown = "" if _is_secret(name) else f" (got {value!r})"
            self.errors.append(f"{name}: {exc}{shown}")
            return default


def _is_secret(name: str) -> bool:
    return any(word in name for word in ("TOKEN", "SECRET", "KEY"))


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials; use the matching *_TOKEN setting")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    return value.rstrip("/")


def _redis_url(value: str) -> str:
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value


def _index_url(value: str) -> str:
    scheme = urlsplit(value).scheme
    if scheme == "sqlite":
        if not value.startswith("sqlite:///") or len(value) <= len("sqlite:///"):
            raise ValueError("must be sqlite:///relative/path or sqlite:////absolute/path")
        return value
    if scheme in ("postgresql", "postgres"):
        return value
    raise ValueError("must start with sqlite:/// or postgresql://")


def _positive_int(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ValueError("must be a whole number")
    number = int(value, 10)
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _non_negative_int(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ValueError("must be a whole number of seconds")
    number = int(value, 10)
    if number < 0:
        raise ValueError("must be 0 (off) or more")
    return number


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return value

    return parse


def _upper_choice(*options: str) -> Callable[[str], str]:
    inner = _choice(*options)
    return lambda value: inner(value.upper())


def _csv(value: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in value.split(","))
    if any(not item for item in items):
        raise ValueError("has an empty entry; separate values with single commas")
    return items


def _networks(value: str) -> tuple[str, ...]:
    items = _csv(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return items


def _secret_key(value: str) -> str:
    if len(value) < 32:
        raise ValueError("must be at least 32 characters long")
    return value


def _webhook_secrets(value: str) -> tuple[str, ...]:
    secrets = _csv(value)
    if any(len(secret) < 8 for secret in secrets):
        raise ValueError("each secret must be at least 8 characters long")
    return secrets


def _signing_key(value: str) -> bytes:
    if not value.startswith("whsec_"):
        raise ValueError("must look like whsec_<base64 key>")
    try:
        key = base64.b64decode(value[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if len(key) < 16:
        raise ValueError("the key must decode to at least 16 bytes")
    return key


def _directory(value: str) -> Path:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError("exists and is not a directory")
    return path


def _readable_file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError("is not an existing file")
    if not os.access(path, os.R_OK):
        raise ValueError("is not readable by this process")
    return path


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every ``DSHUB_*`` setting from `env` (default: the process environment).

    Raises `ConfigError` listing every invalid value, one line each.
    """
    read = _Reader(os.environ if env is None else env)
    data_dir = read.parse("DSHUB_DATA_DIR", _directory, Path("var"))
    default_index = f"sqlite:///{data_dir / 'index.sqlite3'}"
    settings = Settings(
        data_dir=data_dir,
        index_url=read.parse("DSHUB_INDEX_URL", _index_url, default_index),
        public_url=read.parse("DSHUB_PUBLIC_URL", _http_url, DEFAULT_PUBLIC_URL),
        gitlab_url=read.parse("DSHUB_GITLAB_URL", _http_url, None),
        gitlab_token=read.raw("DSHUB_GITLAB_TOKEN"),
        secret_key=read.parse("DSHUB_SECRET_KEY", _secret_key, None),
        oauth_client_id=read.raw("DSHUB_OAUTH_CLIENT_ID"),
        oauth_client_secret=read.raw("DSHUB_OAUTH_CLIENT_SECRET"),
        webhook_secrets=read.parse("DSHUB_WEBHOOK_SECRET", _webhook_secrets, ()),
        webhook_signing_key=read.parse("DSHUB_WEBHOOK_SIGNING_KEY", _signing_key, None),
        webhook_max_bytes=read.parse(
            "DSHUB_WEBHOOK_MAX_BYTES", _positive_int, DEFAULT_WEBHOOK_MAX_BYTES
        ),
        dvc_max_object_bytes=read.parse(
            "DSHUB_DVC_MAX_OBJECT_BYTES", _positive_int, DEFAULT_DVC_MAX_OBJECT_BYTES
        ),
        upload_max_bytes=read.parse(
            "DSHUB_UPLOAD_MAX_BYTES", _positive_int, DEFAULT_UPLOAD_MAX_BYTES
        ),
        upload_pointer_warn=read.parse(
            "DSHUB_UPLOAD_POINTER_WARN", _positive_int, DEFAULT_UPLOAD_POINTER_WARN
        ),
        upload_staging_dir=read.parse("DSHUB_UPLOAD_STAGING_DIR", _directory, None),
        redis_url=read.parse("DSHUB_REDIS_URL", _redis_url, None),
        storage_credentials_file=read.parse("DSHUB_STORAGE_CREDENTIALS_FILE", _readable_file, None),
        namespaces=read.parse("DSHUB_NAMESPACES", _csv, ()),
        admin_group=read.raw("DSHUB_ADMIN_GROUP"),
        allow_link_local_endpoints=read.parse("DSHUB_ALLOW_LINK_LOCAL_ENDPOINTS", _networks, ()),
        reconcile_interval=read.parse("DSHUB_RECONCILE_INTERVAL", _non_negative_int, 3600),
        download_mode=read.parse("DSHUB_DOWNLOAD_MODE", _choice("stream", "redirect"), "stream"),
        mr_notes=read.parse("DSHUB_MR_NOTES", _bool, False),
        log_level=read.parse("DSHUB_LOG_LEVEL", _upper_choice(*LOG_LEVELS), "INFO"),
        log_format=read.parse("DSHUB_LOG_FORMAT", _choice("json", "text"), "json"),
    )
    if settings.gitlab_token and not settings.gitlab_url:
        read.errors.append("DSHUB_GITLAB_TOKEN: is set but DSHUB_GITLAB_URL is not")
    if bool(settings.oauth_client_id) != bool(settings.oauth_client_secret):
        read.errors.append(
            "DSHUB_OAUTH_CLIENT_ID and DSHUB_OAUTH_CLIENT_SECRET: set both (Sign in with GitLab) "
            "or neither"
        )
    if read.errors:
        raise ConfigError(read.errors)
    return settings


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn serves dshub: `DSHUB_BIND`, `DSHUB_WORKERS`, `DSHUB_THREADS`."""

    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 8


def _bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT with a port from 1 to 65535")
    return value


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Parse gunicorn's process settings (read by `gunicorn_conf` only); `ConfigError` if bad."""
    read = _Reader(os.environ if env is None else env)
    defaults = ServerSettings()
    server = ServerSettings(
        bind=read.parse("DSHUB_BIND", _bind, defaults.bind),
        workers=read.parse("DSHUB_WORKERS", _positive_int, defaults.workers),
        threads=read.parse("DSHUB_THREADS", _positive_int, defaults.threads),
    )
    if read.errors:
        raise ConfigError(read.errors)
    return server


def ensure_secret_key(settings: Settings) -> str:
    """Return the configured secret key, or one generated once and kept in the data directory."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        key = base64.urlsafe_b64encode(os.urandom(48)).decode("ascii")
        handle.write(key)
    return key


# ---------------------------------------------------------------------- the command line


def default_config_path() -> Path:
    """Where the client's config file lives (`$DSHUB_CONFIG` or ~/.config/dshub/config.json)."""
    explicit = os.environ.get("DSHUB_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dshub" / "config.json"


@dataclass(frozen=True)
class ClientConfig:
    """Server URL and token for the command line."""

    url: str
    token: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: Path | None = None) -> ClientConfig:
        """Environment first (`DSHUB_URL`, `DSHUB_TOKEN`), then the config file."""
        env = os.environ if env is None else env
        stored: dict[str, Any] = {}
        config_path = path or default_config_path()
        if config_path.is_file():
            try:
                stored = json.loads(config_path.read_text(encoding="utf-8"))
            except ValueError:
                raise InvalidInput(f"{config_path} is not valid JSON") from None
            if not isinstance(stored, dict):
                raise InvalidInput(f"{config_path} must hold a JSON object")
        url = env.get("DSHUB_URL") or stored.get("url")
        if not url:
            raise InvalidInput(
                f'no dshub server configured: set DSHUB_URL or put "url" in {config_path}'
            )
        if not str(url).startswith(("http://", "https://")):
            raise InvalidInput(f"DSHUB_URL must start with http:// or https:// (got {url!r})")
        token = env.get("DSHUB_TOKEN") or stored.get("token")
        return cls(url=str(url).rstrip("/"), token=str(token) if token else None)


# ---------------------------------------------------------------------- the CI/CD jobs


@dataclass(frozen=True)
class CiVariables:
    """A read-only view of the job's environment with empty values treated as unset."""

    env: Mapping[str, str]

    def get(self, name: str) -> str | None:
        """The variable's value, or None when it is unset or empty."""
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def require(self, name: str, why: str) -> str:
        """The variable's value; raise `CiConfigError` naming it when it is unset or empty."""
        value = self.get(name)
        if value is None:
            raise CiConfigError(f"{name} is not set: {why}")
        return value

    def dvc_state_dir(self) -> Path:
        """DSHUB_CI_DVC_STATE_DIR: DVC's private state for the job (default: under the temp dir)."""
        return Path(
            self.get("DSHUB_CI_DVC_STATE_DIR") or Path(tempfile.gettempdir()) / "dshub-ci-dvc-state"
        )

    def expected_remote_url(self) -> str:
        """DSHUB_DVC_REMOTE_URL: the remote `.dvc/config` must name."""
        return self.require(
            "DSHUB_DVC_REMOTE_URL",
            "dshub sets it on every dataset project when its storage site is selected",
        )
