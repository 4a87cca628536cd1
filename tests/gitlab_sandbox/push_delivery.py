"""Push, tag push and repository_update hooks after refs moved (API commits and `git push`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState, User


def fire_push(
    state: SandboxState, project: Project, user: User, updates: list[tuple[str, str, str]]
) -> None:
    """Deliver push/tag push hooks (one per ref, none above 3 refs) and one repository_update."""
    # INTEGRATION POINT: payloads come from the repository helper's push_events.py.
    raise NotImplementedError("push_events.py integration pending")
