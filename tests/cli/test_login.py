"""`dshub login` / `dshub logout` with real git: 0600 files, no echo, idempotent, others kept."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

TOKEN = "glpat-login-test-0123456789"
OTHER = "machine example.org login me password keepme"


def _dshub(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("NETRC", None)
    env.pop("DSHUB_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "dshub", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _fill(home: Path, url: str) -> str:
    done = subprocess.run(
        ["git", "credential", "fill"],
        input=f"url={url}\n\n",
        env={**os.environ, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def test_login_writes_private_entries_replaces_its_own_and_logout_removes_them(
    tmp_path: Path,
) -> None:
    (tmp_path / ".netrc").write_text(OTHER + "\n")
    hosts = ["--gitlab-url", "http://127.0.0.1:8929", "--dshub-url", "http://dshub.test:8000"]
    for token in ("glpat-old-one", TOKEN):
        done = _dshub(tmp_path, "login", *hosts, "--token-stdin", stdin=token + "\n")
        assert done.returncode == 0, done.stderr
        assert token not in done.stdout + done.stderr
    netrc = (tmp_path / ".netrc").read_text()
    assert OTHER in netrc
    assert netrc.count(f"machine 127.0.0.1 login oauth2 password {TOKEN}") == 1
    assert netrc.count("machine dshub.test ") == 1 and "glpat-old-one" not in netrc
    for name in (".netrc", ".git-credentials"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert f"password={TOKEN}" in _fill(tmp_path, "http://127.0.0.1:8929/g/p.git")
    assert "glpat-old-one" not in (tmp_path / ".git-credentials").read_text()

    done = _dshub(tmp_path, "logout", *hosts)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".netrc").read_text() == OTHER + "\n"
    assert TOKEN not in (tmp_path / ".git-credentials").read_text()


def test_login_refuses_a_url_with_credentials(tmp_path: Path) -> None:
    done = _dshub(
        tmp_path, "login", "--gitlab-url", "http://u:p@127.0.0.1:1", "--token-stdin", stdin="x\n"
    )
    assert done.returncode != 0
    assert "without credentials" in done.stderr
