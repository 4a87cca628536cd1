"""Errors of the CI jobs, each with its exit code; the message is one line a person can act on."""

from __future__ import annotations

from indexer.errors import DshubError


class CiConfigError(DshubError):
    """The job is misconfigured: a missing variable, a bad input, a foreign remote (exit 2)."""

    code = "ci_config"
    exit_code = 2


class CiCheckFailed(DshubError):
    """A check the job exists for failed: objects missing, bad pointers (exit 1)."""

    code = "ci_check_failed"
    exit_code = 1
