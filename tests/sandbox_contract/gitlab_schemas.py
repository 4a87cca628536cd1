"""Validation against GitLab's own response schemas (tests/fixtures/gitlab/api-schemas, see SOURCE.md)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.support.paths import GITLAB_API_SCHEMAS

SCHEMAS = GITLAB_API_SCHEMAS
BASE = "https://gitlab-schemas.invalid/"


def _retrieve(uri: str) -> Resource[Any]:
    rel = uri[len(BASE) :]
    return Resource.from_contents(
        json.loads((SCHEMAS / rel).read_text()), default_specification=DRAFT4
    )


_REGISTRY: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
# SOURCE.md: some files use the non-standard types "date", "uri" and "string ".
_TYPES = jsonschema.Draft4Validator.TYPE_CHECKER.redefine_many(
    {
        "date": lambda _c, v: isinstance(v, str),
        "uri": lambda _c, v: isinstance(v, str),
        "string ": lambda _c, v: isinstance(v, str),
    }
)
_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, type_checker=_TYPES)


def validate(rel_schema: str, instance: Any) -> None:
    """Raise `jsonschema.ValidationError` unless `instance` matches the schema file."""
    _Validator({"$ref": BASE + rel_schema}, registry=_REGISTRY).validate(instance)


def validate_basic_project(instance: dict[str, Any]) -> None:
    """Validate a full project against `project.json`, which lists only the basic shape.

    SOURCE.md: project.json has `additionalProperties: false` and no `visibility`,
    `permissions`, `_links`...; so the keys the schema does not list are left out first.
    """
    schema = json.loads((SCHEMAS / "public_api/v4/project.json").read_text())
    basic = {k: v for k, v in instance.items() if k in schema["properties"]}
    validate("public_api/v4/project.json", basic)
