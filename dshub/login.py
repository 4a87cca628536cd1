"""`dshub login` / `dshub logout`: git and DVC credentials for GitLab and dshub, from a token.

For each host (GitLab's and dshub's) `login` writes a git credential with git's own `store`
helper (`git credential-store --file ~/.git-credentials store`, plus the URL-scoped
`credential.<url>.helper store` so git and dulwich — DVC's git — use it) and a
`machine <host> login <user> password <token>` line in `~/.netrc` (or `$NETRC`), which
DVC's http remote (aiohttp, `trust_env`) reads. Both files are 0600; the token is never
printed. Running it again replaces its own entries and keeps every other; `logout` removes
them. `--ci` takes `CI_JOB_TOKEN` (user `gitlab-ci-token`) and `CI_SERVER_URL`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from indexer.errors import InvalidInput

PERSONAL_USER = "oauth2"  # GitLab's user name for a personal token over HTTP
JOB_USER = "gitlab-ci-token"


@dataclass(frozen=True)
class Host:
    """One server to authenticate to: its scheme and `host[:port]`."""

    protocol: str
    host: str

    @classmethod
    def of(cls, url: str) -> Host:
        """The host of an http(s) URL (400 else)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"not an http(s) URL: {url!r}")
        if parts.username or parts.password:
            raise InvalidInput("give the URL without credentials")
        return cls(parts.scheme, parts.netloc)

    @property
    def name(self) -> str:
        """The netrc machine name (host without port: what aiohttp looks up)."""
        return self.host.rsplit(":", 1)[0] if not self.host.endswith("]") else self.host

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"


def netrc_path() -> Path:
    """`$NETRC`, else `~/.netrc`."""
    return Path(os.environ.get("NETRC") or Path.home() / ".netrc")


def credentials_path() -> Path:
    """The file git's `store` helper uses by default."""
    return Path.home() / ".git-credentials"


def _private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _git(args: list[str], stdin: str = "") -> None:
    done = subprocess.run(["git", *args], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode:
        # git's message never holds the password (it is only on stdin)
        raise InvalidInput(f"git {args[0]} failed: {done.stderr.strip()[:300]}")


def _credential(host: Host, user: str, token: str | None) -> str:
    lines = [f"protocol={host.protocol}", f"host={host.host}", f"username={user}"]
    if token is not None:
        lines.append(f"password={token}")
    return "\n".join(lines) + "\n\n"


def _netrc_lines(text: str, hosts: Iterable[Host], user: str) -> list[str]:
    """The netrc's lines without our single-line entries for `hosts` and `user`."""
    ours = {(h.name, user) for h in hosts}
    kept = []
    for line in text.splitlines():
        words = line.split()
        if (
            len(words) == 6
            and words[0] == "machine"
            and words[2] == "login"
            and words[4] == "password"
            and (words[1], words[3]) in ours
        ):
            continue
        kept.append(line)
    return kept


def _write_netrc(lines: list[str]) -> None:
    path = netrc_path()
    _private(path)
    scratch = path.with_name(f".{path.name}.dshub{os.getpid()}")
    fd = os.open(scratch, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + ("\n" if lines else ""))
    os.replace(scratch, path)


def login(hosts: list[Host], token: str, user: str = PERSONAL_USER) -> list[str]:
    """Write (or replace) the git credential and netrc entry for each host; what was written."""
    if not token or any(c.isspace() for c in token):
        raise InvalidInput("the token must be one word (a GitLab personal or job token)")
    store = credentials_path()
    _private(store)
    for host in hosts:
        _git(["credential-store", "--file", str(store), "erase"], _credential(host, user, None))
        _git(["credential-store", "--file", str(store), "store"], _credential(host, user, token))
        _git(["config", "--global", "--replace-all", f"credential.{host.url}.helper", "store"])
    path = netrc_path()
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = _netrc_lines(text, hosts, user)
    lines += [f"machine {name} login {user} password {token}" for name in _names(hosts)]
    _write_netrc(lines)
    return [f"git credential for {h.url} in {store}" for h in hosts] + [
        f"netrc entry for {name} in {path}" for name in _names(hosts)
    ]


def logout(hosts: list[Host], user: str = PERSONAL_USER) -> list[str]:
    """Remove what `login` wrote for the hosts; what was removed."""
    store = credentials_path()
    if store.is_file():
        for host in hosts:
            _git(["credential-store", "--file", str(store), "erase"], _credential(host, user, None))
            subprocess.run(
                ["git", "config", "--global", "--unset-all", f"credential.{host.url}.helper"],
                capture_output=True,
                check=False,
            )
    path = netrc_path()
    if path.is_file():
        _write_netrc(_netrc_lines(path.read_text(encoding="utf-8"), hosts, user))
    return [f"removed the git credential and netrc entry for {h.url}" for h in hosts]


def _names(hosts: Iterable[Host]) -> list[str]:
    return list(dict.fromkeys(h.name for h in hosts))
