"""No undocumented setting, no undocumented route, one reconcile mechanism per deployment.

- every `DSHUB_*` variable the service reads (dshub/config.py's `load_settings`, gunicorn's
  settings, any direct environment read in webhook_service/ or indexer/) is a row of README's
  configuration table and is set in the compose and Kubernetes examples;
- every route under /api/v1 and /dvc that `create_app()` registers is a row of README's
  endpoint table (a precise list of the missing rows otherwise).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml
from werkzeug.routing import Rule

from dshub.config import DOCUMENTED
from tests.deploy.lint import k8s_documents
from webhook_service import create_app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# A werkzeug rule variable: <name>, <int:name>, <path:name>, <any(a, b):name>.
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_DIRECT_READ = re.compile(r"(?:environ(?:\.get)?[(\[]|getenv\()\s*[\"'](DSHUB_\w+)[\"']")


def settings_the_service_reads() -> set[str]:
    """`DSHUB_*` names read by load_settings (read.parse / read.raw) and direct reads."""
    tree = ast.parse((ROOT / "dshub" / "config.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("parse", "raw")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("DSHUB_")
        ):
            names.add(str(node.args[0].value))
    for package in ("webhook_service", "indexer"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(_DIRECT_READ.findall(path.read_text()))
    return names


def configuration_table() -> set[str]:
    """Variables with a row in README's configuration table (`| `DSHUB_X` | ... |`)."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(DSHUB_\w+)` \|", section, flags=re.MULTILINE))


def test_the_settings_scan_finds_what_the_code_reads() -> None:
    read = settings_the_service_reads()
    assert set(DOCUMENTED) <= read, sorted(set(DOCUMENTED) - read)
    assert {"DSHUB_BIND", "DSHUB_WORKERS", "DSHUB_THREADS", "DSHUB_INDEX_URL"} <= read


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    missing = sorted(settings_the_service_reads() - configuration_table())
    assert not missing, "README.md's configuration table lacks rows for: " + ", ".join(missing)


def _compose_environment() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    return {
        name: service.get("environment", {})
        for name, service in compose["services"].items()
        if "dshub" in str(service.get("image", ""))
    }


def test_every_setting_is_set_in_the_compose_example() -> None:
    environments = _compose_environment()
    assert set(environments) == {"web", "worker"}
    missing = sorted(settings_the_service_reads() - set(environments["web"]))
    assert not missing, "deploy/compose.yaml's web service does not set: " + ", ".join(missing)
    worker_missing = sorted(set(DOCUMENTED) - set(environments["worker"]))
    assert not worker_missing, "the compose worker does not set: " + ", ".join(worker_missing)


def _k8s_settings(workload: str) -> set[str]:
    documents = [document for _, document in k8s_documents()]
    config = {key for d in documents if d["kind"] == "ConfigMap" for key in d.get("data", {})}
    names = set()
    for document in documents:
        if document["metadata"]["name"] != workload or "template" not in document["spec"]:
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            names |= {item["name"] for item in container.get("env", [])}
            if any("configMapRef" in item for item in container.get("envFrom", [])):
                names |= config
    return names


def test_every_setting_is_set_in_the_kubernetes_example() -> None:
    missing = sorted(settings_the_service_reads() - _k8s_settings("dshub-web"))
    assert not missing, "deploy/k8s's web StatefulSet does not set: " + ", ".join(missing)
    worker_missing = sorted(
        {"DSHUB_GITLAB_TOKEN", "DSHUB_INDEX_URL", "DSHUB_REDIS_URL"} - _k8s_settings("dshub-worker")
    )
    assert not worker_missing, worker_missing


# ------------------------------------------------------------------------------ endpoints


def endpoint_table() -> list[tuple[set[str], str]]:
    """(methods, path without query) of every request in README's endpoint table."""
    rows = []
    for line in README.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = re.split(r"(?<!\\)\|", line)[1]
        for span in re.findall(r"`([^`]+)`", first_cell):
            methods, _, path = span.replace("\\|", "|").partition(" ")
            if path.startswith("/") and re.fullmatch(r"[A-Z|]+", methods):
                rows.append((set(methods.split("|")), path.split("?", 1)[0]))
    return rows


def _rule_pattern(rule: Rule) -> re.Pattern[str]:
    """A regex matching README's spelling of `rule`: each variable as `<...>`, a path any text."""
    parts, position = [], 0
    for match in _VARIABLE.finditer(rule.rule):
        parts.append(re.escape(rule.rule[position : match.start()]))
        parts.append(r".+" if match.group("converter") == "path" else r"<[^<>/]+>")
        position = match.end()
    parts.append(re.escape(rule.rule[position:]))
    return re.compile("".join(parts))


def test_every_api_and_dvc_route_is_in_the_readme_endpoint_table(tmp_path: Path) -> None:
    app = create_app({"DSHUB_DATA_DIR": str(tmp_path)})
    table = endpoint_table()
    assert len(table) > 10, table
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/", "/dvc/")):
            continue
        pattern = _rule_pattern(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if not any(method in methods and pattern.fullmatch(path) for methods, path in table):
                missing.append(f"{method} {rule.rule}  ({rule.endpoint})")
    assert not missing, "README.md's endpoint table has no row for:\n" + "\n".join(missing)


def test_the_endpoint_check_would_notice_a_missing_row() -> None:
    rule = Rule("/api/v1/datasets/<int:project_id>/nothing-documented-here")
    pattern = _rule_pattern(rule)
    assert not any(pattern.fullmatch(path) for _, path in endpoint_table())
    documented = _rule_pattern(Rule("/api/v1/datasets/<int:project_id>/versions"))
    assert any(documented.fullmatch(path) for _, path in endpoint_table())


# ------------------------------------------------------------------ reconcile mechanisms


def test_each_deployment_has_exactly_one_reconcile_mechanism() -> None:
    environments = _compose_environment()
    compose_services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    # compose: the workers' scheduler (interval > 0), and no service runs `dshub reconcile`.
    assert environments["worker"]["DSHUB_RECONCILE_INTERVAL"] != "0"
    assert not any(
        "reconcile" in service.get("command", []) for service in compose_services.values()
    )
    # Kubernetes: the CronJob, with the scheduler off.
    kinds = [document["kind"] for _, document in k8s_documents()]
    assert kinds.count("CronJob") == 1
    config = next(d for _, d in k8s_documents() if d["kind"] == "ConfigMap")
    assert config["data"]["DSHUB_RECONCILE_INTERVAL"] == "0"
    # systemd: the timer, with the scheduler off in the long-running units.
    units = ROOT / "deploy" / "systemd"
    assert (units / "dshub-reconcile.timer").is_file()
    for name in ("dshub-web.service", "dshub-worker@.service"):
        assert "Environment=DSHUB_RECONCILE_INTERVAL=0" in (units / name).read_text().splitlines()
