"""The import pointer dshub writes is byte for byte what the installed `dvc import` writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from indexer.data.dvc_env import dvc_environment
from indexer.data.pointers import parse_pointer
from indexer.write.projects import import_pointer_text


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def test_import_pointer_equals_dvc_import(tmp_path: Path) -> None:
    env = dvc_environment(tmp_path / "state")
    env.update({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"})
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    dvc = str(Path(sys.executable).parent / "dvc")
    src, dst = tmp_path / "src", tmp_path / "dst"
    for repo in (src, dst):
        _run(["git", "init", "-q", str(repo)], tmp_path, env)
        _run([dvc, "init", "-q"], repo, env)
    (src / "imgs" / "sub").mkdir(parents=True)
    (src / "imgs" / "sub" / "x.png").write_bytes(b"x" * 300)
    (src / "imgs" / "y.png").write_bytes(b"y" * 70)
    (src / "a.png").write_bytes(b"a" * 10)
    _run([dvc, "remote", "add", "-d", "r", str(tmp_path / "remote")], src, env)
    _run([dvc, "add", "-q", "imgs", "a.png"], src, env)
    _run([dvc, "push", "-q"], src, env)
    _run(["git", "add", "-A"], src, env)
    _run(["git", "commit", "-qm", "v1"], src, env)
    _run(["git", "tag", "v0.1.0"], src, env)
    sha = _run(["git", "rev-parse", "HEAD"], src, env).strip()
    url = src.as_uri()
    for name in ("imgs", "a.png"):
        _run([dvc, "import", "-q", url, name, "--rev", "v0.1.0"], dst, env)
        (out,) = parse_pointer((src / f"{name}.dvc").read_text(), f"{name}.dvc")
        assert import_pointer_text(out, url, "v0.1.0", sha) == (dst / f"{name}.dvc").read_text()
