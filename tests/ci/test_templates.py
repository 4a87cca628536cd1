"""The component templates: spec:inputs conventions and GitLab's CI schema after interpolation."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.ci.harness import (
    COMPONENT_ORIGIN,
    DATASET_PIPELINE,
    GITLAB_CI_LOCAL,
    TEMPLATES,
    git,
    pipeline_yaml,
    require_tools,
    run,
)
from tests.support.paths import GITLAB_CI_SCHEMA

SCHEMA = GITLAB_CI_SCHEMA
BUNDLED_SCHEMA = (
    Path(__file__).resolve().parents[2] / "node_modules/gitlab-ci-local/src/schema.json"
)
NAMES = ("dvc-push", "dvc-gc", "validate-storage")
GLOBAL_KEYWORDS = {
    "default",
    "stages",
    "variables",
    "workflow",
    "image",
    "cache",
    "include",
    "services",
    "before_script",
    "after_script",
}


def _documents(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, body = yaml.safe_load_all((TEMPLATES / name / "template.yml").read_text())
    return header, body


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text())
    return loaded


@pytest.mark.parametrize("name", NAMES)
def test_every_input_is_typed_described_and_snake_case(name: str) -> None:
    header, _ = _documents(name)
    inputs = header["spec"]["inputs"]
    for key in ("job_name", "stage", "image", "remote", "jobs", "rules", "needs"):
        assert key in inputs, f"{name} lacks input {key}"
    for key, spec in inputs.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", key), key
        assert spec.get("type") in ("string", "number", "boolean", "array"), key
        assert len(spec.get("description", "")) > 15, key
        assert "default" in spec, f"{name}.{key} should have a default"
    assert inputs["rules"]["type"] == "array" and inputs["jobs"]["type"] == "number"


@pytest.mark.parametrize("name", NAMES)
def test_template_defines_one_job_and_no_global_keywords(name: str) -> None:
    _, body = _documents(name)
    assert list(body) == ["$[[ inputs.job_name ]]"]
    assert not GLOBAL_KEYWORDS & set(body)
    job = body["$[[ inputs.job_name ]]"]
    if name in ("dvc-push", "dvc-gc"):
        assert job["resource_group"] == "$[[ inputs.resource_group ]]"
        assert job["interruptible"] is False
    else:
        assert job["interruptible"] is True
        assert job["artifacts"]["reports"]["junit"] == "validate-storage.xml"


def test_the_consumer_template_follows_the_same_conventions() -> None:
    header, body = _documents("dataset-consumer")
    inputs = header["spec"]["inputs"]
    for key in ("job_name", "stage", "image", "dshub_url", "targets", "rules", "needs"):
        assert key in inputs, f"dataset-consumer lacks input {key}"
    for key, spec in inputs.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", key), key
        assert spec.get("type") in ("string", "array"), key
        assert len(spec.get("description", "")) > 15 and "default" in spec, key
    assert list(body) == ["$[[ inputs.job_name ]]"] and not GLOBAL_KEYWORDS & set(body)
    job = body["$[[ inputs.job_name ]]"]
    # The token lives in a job directory that after_script removes, also when the job fails.
    assert any("rm -rf" in line and "dshub-job-" in line for line in job["after_script"])
    assert not any("echo" in line and "CI_JOB_TOKEN" in line for line in job["script"])


def _component_project(tmp_path: Path, pipeline: str) -> Path:
    repo = tmp_path / "project"
    run(["git", "init", "-q", "-b", "main", str(repo)], tmp_path)
    subprocess.run(["cp", "-r", str(TEMPLATES), str(repo / "templates")], check=True)
    (repo / ".gitlab-ci.yml").write_text(pipeline)
    (repo / ".gitignore").write_text(".gitlab-ci-local/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "components")
    git(repo, "remote", "add", "origin", COMPONENT_ORIGIN)
    return repo


def _preview(repo: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    args = [str(GITLAB_CI_LOCAL), "--preview", "--home", str(repo.parent)]
    for variable in variables:
        args += ["--variable", variable]
    return subprocess.run(args, cwd=repo, capture_output=True, text=True, check=False, timeout=120)


CUSTOM = [
    {
        "component": "dvc-push",
        "inputs": {
            "job_name": "push-raw",
            "stage": "build",
            "remote": "raw",
            "jobs": 2,
            "verify": False,
            "needs": ["prepare"],
            "rules": [{"when": "always"}],
            "resource_group": "dvc-storage-raw",
        },
    },
    {
        "component": "dvc-gc",
        "inputs": {
            "job_name": "nightly-gc",
            "min_age_hours": 168,
            "delete": True,
            "dshub_url": "https://dshub.example",
            "rules": [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}],
        },
    },
    {
        "component": "validate-storage",
        "inputs": {
            "job_name": "check-data",
            "max_git_file_mb": 2.5,
            "allowed_extensions": ".jpg,.png",
            "image": "registry.example/dshub/ci:1.0.0",
        },
    },
]


def test_rendered_pipelines_validate_against_gitlab_ci_schema(tmp_path: Path) -> None:
    require_tools()
    pipeline = yaml.safe_load(pipeline_yaml(CUSTOM))
    pipeline["stages"] = ["build", "test", "deploy"]
    pipeline["prepare"] = {"stage": "build", "script": ["echo prepare"]}
    repo = _component_project(tmp_path, yaml.safe_dump(pipeline, sort_keys=False))
    result = _preview(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = yaml.safe_load(result.stdout[result.stdout.index("---") :])
    jsonschema.Draft7Validator(_schema()).validate(rendered)
    assert set(rendered) >= {
        "validate-storage",
        "dvc-push",
        "dvc-gc",
        "push-raw",
        "nightly-gc",
        "check-data",
    }
    push = rendered["push-raw"]
    assert [n["job"] if isinstance(n, dict) else n for n in push["needs"]] == ["prepare"]
    assert push["resource_group"] == "dvc-storage-raw" and push["stage"] == "build"
    assert push["script"] == ['dshub ci push --remote "raw" --jobs 2 --verify false']
    assert "--min-age-hours 168 --delete true" in rendered["nightly-gc"]["script"][0]
    assert '--dshub-url "https://dshub.example"' in rendered["nightly-gc"]["script"][0]
    assert '--allowed-extensions ".jpg,.png"' in rendered["check-data"]["script"][0]
    assert rendered["dvc-push"]["resource_group"] == rendered["dvc-gc"]["resource_group"]
    assert rendered["dvc-gc"]["rules"][0]["when"] == "never"  # until a site is selected
    assert rendered["dvc-gc"]["rules"][2]["when"] == "manual"


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ({"remote": "bad remote;rm"}, "regex"),
        ({"jobs": "many"}, "number"),
        ({"verify": "yes"}, "boolean"),
    ],
)
def test_bad_inputs_are_rejected_before_anything_runs(
    tmp_path: Path, inputs: dict[str, Any], error: str
) -> None:
    require_tools()
    pipeline = {
        "include": [
            {
                "component": "$CI_SERVER_FQDN/$CI_PROJECT_PATH/dvc-push@$CI_COMMIT_SHA",
                "inputs": inputs,
            }
        ]
    }
    repo = _component_project(tmp_path, yaml.safe_dump(pipeline))
    result = _preview(repo)
    assert result.returncode != 0
    assert error in (result.stdout + result.stderr).lower()


def _listed_jobs(repo: Path, *variables: str) -> list[str]:
    args = [str(GITLAB_CI_LOCAL), "--list", "--home", str(repo.parent)]
    for variable in variables:
        args += ["--variable", variable]
    result = subprocess.run(
        args, cwd=repo, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("name")), None)
    if header is None:
        return []
    return [line.split()[0] for line in lines[header + 1 :] if line.strip()]


def test_dataset_pipeline_runs_no_job_until_a_storage_site_is_selected(tmp_path: Path) -> None:
    """dshub sets DSHUB_STORAGE_SITE at selection; before that `workflow:rules` says never."""
    require_tools()
    repo = _component_project(tmp_path, pipeline_yaml())
    assert _listed_jobs(repo) == []
    assert _listed_jobs(repo, "DSHUB_STORAGE_SITE=") == []
    assert _listed_jobs(repo, "DSHUB_STORAGE_SITE=lab-s3") == [
        "validate-storage",
        "dvc-push",
        "dvc-gc",
    ]


def test_dataset_pipeline_rules_are_the_component_defaults_behind_the_site_gate() -> None:
    """The shipped pipeline only prepends the storage-site condition to each default."""
    pipeline = yaml.safe_load(DATASET_PIPELINE.read_text())
    gate = {"if": '$DSHUB_STORAGE_SITE == null || $DSHUB_STORAGE_SITE == ""', "when": "never"}
    for entry in pipeline["include"]:
        name = entry["component"].rsplit("/", 1)[1].split("@", 1)[0]
        header, _ = _documents(name)
        default = header["spec"]["inputs"]["rules"]["default"]
        assert entry["inputs"]["rules"] == [gate, *default], name
