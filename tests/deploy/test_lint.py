"""`make lint-deploy`'s checks pass on deploy/ and fail, precisely, on broken copies."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from tests.deploy import lint

ROOT = Path(__file__).resolve().parents[2]


def test_the_deployment_files_pass_the_fast_checks() -> None:
    # systemd is left to `make lint-deploy`: it builds and installs the wheel (tens of seconds).
    assert lint.main(["docker", "compose", "k8s", "prometheus"]) == 0


def test_dockerfile_rules_name_every_broken_rule(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11\n"
        "RUN apt-get update && apt-get install -y gcc \\\n    && rm -rf /var/lib/apt/lists/*\n"
        "USER root\n"
    )
    original_root = lint.ROOT
    lint.ROOT = tmp_path
    try:
        problems = lint.check_dockerfile_rules(dockerfile)
    finally:
        lint.ROOT = original_root
    text = "\n".join(problems)
    for expected in (
        "not multi-stage",
        "'python:3.11' is not pinned",
        "non-root USER",
        "no HEALTHCHECK",
        "DVC_NO_ANALYTICS=1",
        "installs a compiler",
    ):
        assert expected in text, text
    assert lint.check_dockerfile_rules(ROOT / "deploy" / "Dockerfile") == []


def test_compose_is_checked_against_the_schema_and_the_env_example(tmp_path: Path) -> None:
    shutil.copy(ROOT / "deploy" / ".env.example", tmp_path / ".env.example")
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    broken = text.replace("      replicas: 2", "      replicas: 2\n      replicaz: 3").replace(
        "${DSHUB_MR_NOTES:-0}", "${DSHUB_UNDOCUMENTED_KNOB:-0}"
    )
    assert broken != text
    (tmp_path / "compose.yaml").write_text(broken)
    problems = lint.check_compose(tmp_path / "compose.yaml")
    assert any("services/worker/deploy" in p and "replicaz" in p for p in problems), problems
    assert any("DSHUB_UNDOCUMENTED_KNOB" in p and ".env.example" in p for p in problems)


def test_interpolation_follows_compose_rules() -> None:
    problems: list[str] = []
    env = {"SET": "a", "EMPTY": ""}
    values = lint.interpolate(
        ["${SET}", "${EMPTY:-d}", "${EMPTY-d}", "${UNSET:-d}", "$$HOME", "${UNSET:?need it}"],
        env,
        problems,
    )
    assert values == ["a", "d", "", "d", "$HOME", ""]
    assert problems == ["deploy/compose.yaml: UNSET is required (need it) but unset"]


def test_unit_rules_refuse_an_unhardened_service(tmp_path: Path) -> None:
    unit = tmp_path / "dshub-web.service"
    unit.write_text(
        "[Service]\nExecStart=/opt/dshub/bin/dshub serve\nReadWritePaths=/ /var/lib/dshub\n"
    )
    problems = "\n".join(lint.check_unit_rules(unit))
    for expected in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "runs as root",
        "writable paths",
    ):
        assert expected in problems, problems
    assert "DSHUB_RECONCILE_INTERVAL=0" in problems
    for real in lint.systemd_units():
        if real.suffix == ".service":
            assert lint.check_unit_rules(real) == []


def test_k8s_rules_refuse_a_writable_root_filesystem_and_two_reconcilers() -> None:
    documents = list(lint.k8s_documents())
    assert lint.check_k8s_rules(documents) == []
    changed = copy.deepcopy(documents)
    for _, document in changed:
        if document["kind"] == "Deployment":
            document["spec"]["template"]["spec"]["containers"][0]["securityContext"][
                "readOnlyRootFilesystem"
            ] = False
        if document["kind"] == "ConfigMap":
            document["data"]["DSHUB_RECONCILE_INTERVAL"] = "3600"
    problems = "\n".join(lint.check_k8s_rules(changed))
    assert "dshub-worker: worker: root filesystem is writable" in problems
    assert "both reconcile" in problems


def test_alerts_may_only_use_exported_metrics() -> None:
    assert lint.used_metrics('rate(dshub_http_responses_total{status="500"}[5m])') == {
        "dshub_http_responses_total"
    }
    assert "dshub_nonexistent_total" not in lint.exported_metrics()
    exprs = lint.dashboard_expressions(ROOT / "deploy" / "prometheus" / "grafana-dashboard.json")
    assert len(exprs) >= 10


def test_env_files_are_read_as_compose_reads_them(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# a comment\n\nPLAIN=a b\nQUOTED=\'{"k": "v"}\'\nEMPTY=\n')
    assert lint.read_env_file(env_file) == {"PLAIN": "a b", "QUOTED": '{"k": "v"}', "EMPTY": ""}
    example = lint.read_env_file(ROOT / "deploy" / ".env.example")
    assert example["DSHUB_STORAGE_CREDENTIALS_JSON"].startswith('{"minio"')
