"""Project CI/CD variables (Maintainer+): masked, protected, hidden, environment scopes."""

from __future__ import annotations

import re

from tests.gitlab_sandbox import entities
from tests.gitlab_sandbox.api_users import signed_in
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    not_found,
    paginate,
    param_bool,
    param_choice,
    param_str,
    require,
    router,
    validation_error,
)
from tests.gitlab_sandbox.records import Variable
from tests.gitlab_sandbox.state import Project

KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
MASKABLE_RE = re.compile(r"^[a-zA-Z0-9_+=/@:.~-]{8,}$")
TYPES = ("env_var", "file")


def _project(req: Request) -> Project:
    signed_in(req)
    return req.state.find_project(req.path_params["id"], req.user, "admin")


def _scope_filter(req: Request) -> str | None:
    flt = req.params.get("filter")
    if isinstance(flt, dict) and flt.get("environment_scope") is not None:
        return str(flt["environment_scope"])
    return None


def _find(req: Request, project: Project) -> Variable:
    key = req.path_params["key"]
    scope = _scope_filter(req)
    found = [
        v
        for v in req.state.variables
        if v.project_id == project.id
        and v.key == key
        and (scope is None or v.environment_scope == scope)
    ]
    if not found:
        raise not_found("Variable")
    if len(found) > 1:
        raise ApiError(
            409,
            {
                "message": "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"
            },
        )
    return found[0]


def _check_masked(variable: Variable) -> None:
    if variable.masked and (not MASKABLE_RE.match(variable.value) or "\n" in variable.value):
        raise validation_error({"value": ["is invalid"]})


@router.route("GET", "/api/v4/projects/:id/variables")
def list_variables(req: Request) -> Response:
    """A project's variables (Maintainer+; hidden values are null)."""
    project = _project(req)
    found = [v for v in req.state.variables if v.project_id == project.id]
    return paginate(req, found, entities.variable_json)


@router.route("GET", "/api/v4/projects/:id/variables/:key")
def get_variable(req: Request) -> Response:
    """One variable; `filter[environment_scope]` picks among scopes (409 when ambiguous)."""
    return Response(200, entities.variable_json(_find(req, _project(req))))


@router.route("POST", "/api/v4/projects/:id/variables")
def create_variable(req: Request) -> Response:
    """Create a variable (201); `masked_and_hidden` makes it masked and hidden."""
    project = _project(req)
    require(req, "key", "value")
    key = param_str(req, "key") or ""
    if not KEY_RE.match(key):
        raise validation_error({"key": ["can contain only letters, digits and '_'."]})
    hidden = bool(param_bool(req, "masked_and_hidden", False))
    variable = Variable(
        project_id=project.id,
        key=key,
        value=param_str(req, "value") or "",
        variable_type=param_choice(req, "variable_type", TYPES, "env_var") or "env_var",
        protected=bool(param_bool(req, "protected", False)),
        masked=hidden or bool(param_bool(req, "masked", False)),
        hidden=hidden,
        raw=bool(param_bool(req, "raw", False)),
        environment_scope=param_str(req, "environment_scope") or "*",
        description=param_str(req, "description"),
    )
    _check_masked(variable)
    with req.state.mutation():
        if any(
            v.project_id == project.id
            and v.key == key
            and v.environment_scope == variable.environment_scope
            for v in req.state.variables
        ):
            raise validation_error({"key": [f"({key}) has already been taken"]})
        req.state.variables.append(variable)
    return Response(201, entities.variable_json(variable))


@router.route("PUT", "/api/v4/projects/:id/variables/:key")
def update_variable(req: Request) -> Response:
    """Update a variable's value and flags (hidden stays hidden)."""
    project = _project(req)
    with req.state.mutation():
        variable = _find(req, project)
        if "value" in req.params:
            variable.value = param_str(req, "value") or ""
        for flag in ("protected", "masked", "raw"):
            value = param_bool(req, flag)
            if value is not None:
                setattr(variable, flag, value)
        if variable.hidden and not variable.masked:
            raise validation_error({"masked": ["Only visible variables can be set to unmasked"]})
        variable.variable_type = (
            param_choice(req, "variable_type", TYPES, variable.variable_type) or "env_var"
        )
        if "environment_scope" in req.params:
            variable.environment_scope = param_str(req, "environment_scope") or "*"
        if "description" in req.params:
            variable.description = param_str(req, "description")
        _check_masked(variable)
    return Response(200, entities.variable_json(variable))


@router.route("DELETE", "/api/v4/projects/:id/variables/:key")
def delete_variable(req: Request) -> Response:
    """Delete a variable (204)."""
    project = _project(req)
    with req.state.mutation():
        variable = _find(req, project)
        req.state.variables.remove(variable)
    return Response(204)
