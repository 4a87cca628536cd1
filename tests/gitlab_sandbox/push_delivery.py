"""Push, tag push and repository_update hooks after refs moved (API commits and `git push`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.gitlab_sandbox import merge_requests, push_events
from tests.gitlab_sandbox.gitrepo import GitRepo

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState, User

# GitLab's `push_event_hooks_limit`: a push changing more refs fires no push/tag hooks.
PUSH_EVENT_HOOKS_LIMIT = 3


def fire_push(
    state: SandboxState, project: Project, user: User, updates: list[tuple[str, str, str]]
) -> None:
    """Deliver push/tag push hooks (one per ref, none above 3 refs) and one repository_update."""
    if not updates:
        return
    with state.mutation():
        project.last_activity_at = state.now()
    merge_requests.refresh_after_push(state, project, user, updates)
    dispatcher = state.webhooks
    if dispatcher is None:
        return
    repo = GitRepo(project.repo_path)
    project_json = state.project_json(project, None, with_access=False)
    if len(updates) <= PUSH_EVENT_HOOKS_LIMIT:
        for update in updates:
            ref = update[2]
            protected = ref == f"refs/heads/{project.default_branch}"
            built = push_events.push_payload(
                repo, project_json, user, update, ref_protected=protected
            )
            if built is None:
                continue
            kind, payload = built
            flag = "push_events" if kind == "push" else "tag_push_events"
            branch = ref.removeprefix("refs/heads/") if kind == "push" else None
            dispatcher.project_event(project, payload, flag, branch)
            dispatcher.system_event(payload, flag)
    dispatcher.system_event(
        push_events.build_repository_update(project_json, user, updates),
        "repository_update_events",
    )
