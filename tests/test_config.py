"""Configuration: every DSHUB_* setting parsed and validated, one line per bad value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dshub.config import (
    DOCUMENTED,
    ConfigError,
    ensure_secret_key,
    load_server_settings,
    load_settings,
)


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    settings = load_settings({"DSHUB_DATA_DIR": str(tmp_path)})
    assert settings.embedded
    assert settings.gitlab_url is None
    assert settings.index_url == f"sqlite:///{tmp_path / 'index.sqlite3'}"
    assert settings.webhook_max_bytes == 25 * 1024 * 1024
    assert settings.download_mode == "stream"


def test_every_bad_value_is_reported_on_its_own_line(tmp_path: Path) -> None:
    env = {
        "DSHUB_DATA_DIR": str(tmp_path),
        "DSHUB_GITLAB_URL": "ftp://gitlab",
        "DSHUB_PUBLIC_URL": "not a url",
        "DSHUB_REDIS_URL": "http://localhost:6379",
        "DSHUB_INDEX_URL": "mysql://x",
        "DSHUB_WEBHOOK_MAX_BYTES": "-5",
        "DSHUB_RECONCILE_INTERVAL": "soon",
        "DSHUB_DOWNLOAD_MODE": "teleport",
        "DSHUB_MR_NOTES": "perhaps",
        "DSHUB_LOG_LEVEL": "chatty",
        "DSHUB_STORAGE_CREDENTIALS_FILE": str(tmp_path / "missing.json"),
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    lines = info.value.lines
    named = sorted(line.split(":", 1)[0] for line in lines)
    assert named == sorted(key for key in env if key != "DSHUB_DATA_DIR")
    assert str(info.value).count("\n") == len(lines) - 1


def test_secrets_are_never_echoed_in_errors(tmp_path: Path) -> None:
    env = {
        "DSHUB_DATA_DIR": str(tmp_path),
        "DSHUB_SECRET_KEY": "short-secret-value",
        "DSHUB_WEBHOOK_SECRET": "tiny",
        "DSHUB_WEBHOOK_SIGNING_KEY": "whsec_@@@not-base64",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    text = str(info.value)
    assert len(info.value.lines) == 3
    for value in env.values():
        if value != str(tmp_path):
            assert value not in text


def test_webhook_secrets_are_a_rotation_list(tmp_path: Path) -> None:
    settings = load_settings(
        {"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_WEBHOOK_SECRET": "old-secret-1, new-secret-2"}
    )
    assert settings.webhook_secrets == ("old-secret-1", "new-secret-2")
    assert "old-secret-1" not in repr(settings)


def test_empty_entry_in_a_list_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DSHUB_NAMESPACES: has an empty entry"):
        load_settings({"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_NAMESPACES": "a,,b"})


def test_token_without_gitlab_url_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DSHUB_GITLAB_TOKEN: is set but DSHUB_GITLAB_URL"):
        load_settings({"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_GITLAB_TOKEN": "glpat-x"})


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="DSHUB_DATA_DIR: exists and is not a directory"):
        load_settings({"DSHUB_DATA_DIR": str(target)})


def test_signing_key_decodes(tmp_path: Path) -> None:
    key = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = load_settings({"DSHUB_DATA_DIR": str(tmp_path), "DSHUB_WEBHOOK_SIGNING_KEY": key})
    assert settings.webhook_signing_key is not None
    assert len(settings.webhook_signing_key) == 24


def test_generated_secret_key_is_stable_and_private(tmp_path: Path) -> None:
    settings = load_settings({"DSHUB_DATA_DIR": str(tmp_path / "data")})
    first = ensure_secret_key(settings)
    second = ensure_secret_key(settings)
    assert first == second
    assert len(first) >= 32
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o777 == 0o600


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = set(re.findall(r"`(DSHUB_[A-Z_]+)`", readme))
    missing = set(DOCUMENTED) - documented
    assert not missing, f"README.md does not document {sorted(missing)}"


def test_debug_logging_never_lets_botocore_log_signed_headers() -> None:
    import logging

    from dshub.logs import configure_logging

    configure_logging("DEBUG", "json")
    assert logging.getLogger("dshub").level == logging.DEBUG
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("urllib3").getEffectiveLevel() >= logging.INFO


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"DSHUB_WORKERS": "two"}, "DSHUB_WORKERS: must be a whole number"),
        ({"DSHUB_WORKERS": "٣"}, "DSHUB_WORKERS: must be a whole number"),
        ({"DSHUB_THREADS": "0"}, "DSHUB_THREADS: must be greater than 0"),
        ({"DSHUB_BIND": "8000"}, "DSHUB_BIND: must be HOST:PORT"),
        ({"DSHUB_BIND": "127.0.0.1:70000"}, "DSHUB_BIND: must be HOST:PORT"),
    ],
)
def test_server_settings_are_parsed_in_config_with_one_line_per_problem(
    env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_server_settings(env)
    assert len(caught.value.lines) == 1 and caught.value.lines[0].startswith(problem)


def test_server_settings_default_to_loopback() -> None:
    server = load_server_settings({})
    assert (server.bind, server.workers, server.threads) == ("127.0.0.1:8000", 2, 8)
    assert load_server_settings({"DSHUB_WORKERS": "4"}).workers == 4


def test_a_malformed_server_variable_does_not_stop_the_cli_client() -> None:
    # The client reads only its own settings; a broken DSHUB_WORKERS is the server's problem.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dshub.cli import main; raise SystemExit(main(['config', 'list']))",
        ],
        env={**os.environ, "DSHUB_WORKERS": "many"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "DSHUB_GITLAB_URL" in result.stdout
