"""Every documented GitLab payload, the header it arrives with, and the jobs it must cause."""

from __future__ import annotations

from indexer.ingest.routing import (
    JobRequest,
    invalidate_permissions_job,
    reconcile_job,
    remove_project_job,
    sync_merge_request_job,
    sync_project_job,
    sync_ref_job,
)

PUSH_BEFORE = "95790bf891e76fee5e1747ab589903a6a1f80f22"
PUSH_AFTER = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
TAG_AFTER = "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"
SYSTEM = "System Hook"

# file -> (X-Gitlab-Event, expected jobs; None means "acknowledged and ignored")
TABLE: dict[str, tuple[str, list[JobRequest] | None]] = {
    "push.json": ("Push Hook", [sync_ref_job(15, "refs/heads/master", PUSH_BEFORE, PUSH_AFTER)]),
    "tag_push.json": ("Tag Push Hook", [sync_ref_job(1, "refs/tags/v1.0.0", None, TAG_AFTER)]),
    "merge_request.json": ("Merge Request Hook", [sync_merge_request_job(14, 1)]),
    "issue.json": ("Issue Hook", None),
    "note_commit.json": ("Note Hook", None),
    "note_merge_request.json": ("Note Hook", None),
    "note_issue.json": ("Note Hook", None),
    "note_snippet.json": ("Note Hook", None),
    "wiki_page.json": ("Wiki Page Hook", None),
    "pipeline.json": ("Pipeline Hook", None),
    "job.json": ("Job Hook", None),
    "deployment.json": ("Deployment Hook", None),
    "group_member_user_add_to_group.json": (
        "Member Hook",
        [invalidate_permissions_job(user_id=64, group_id=100)],
    ),
    "group_member_user_update_for_group.json": (
        "Member Hook",
        [invalidate_permissions_job(user_id=64, group_id=100)],
    ),
    "group_member_user_remove_from_group.json": (
        "Member Hook",
        [invalidate_permissions_job(user_id=64, group_id=100)],
    ),
    "group_member_user_access_request_to_group.json": ("Member Hook", None),
    "group_member_user_access_request_denied_for_group.json": ("Member Hook", None),
    "group_project_create.json": (
        "Project Hook",
        [sync_project_job(22), invalidate_permissions_job(project_id=22)],
    ),
    "group_project_destroy.json": ("Project Hook", [remove_project_job(22)]),
    "subgroup_create.json": ("Subgroup Hook", None),
    "subgroup_destroy.json": (
        "Subgroup Hook",
        [invalidate_permissions_job(group_id=10), reconcile_job()],
    ),
    "feature_flag.json": ("Feature Flag Hook", None),
    "release.json": ("Release Hook", [sync_ref_job(2, "refs/tags/v1.1", None, None)]),
    "milestone.json": ("Milestone Hook", None),
    "emoji.json": ("Emoji Hook", None),
    "access_token_project.json": ("Resource Access Token Hook", None),
    "access_token_group.json": ("Resource Access Token Hook", None),
    "vulnerability.json": ("Vulnerability Hook", None),
    "system_project_create.json": (
        SYSTEM,
        [sync_project_job(74), invalidate_permissions_job(project_id=74)],
    ),
    "system_project_destroy.json": (SYSTEM, [remove_project_job(73)]),
    "system_project_rename.json": (SYSTEM, [sync_project_job(73)]),
    "system_project_transfer.json": (
        SYSTEM,
        [sync_project_job(73), invalidate_permissions_job(project_id=73)],
    ),
    "system_project_update.json": (
        SYSTEM,
        [sync_project_job(74), invalidate_permissions_job(project_id=74)],
    ),
    "system_user_access_request_revoked_for_group.json": (SYSTEM, None),
    "system_user_access_request_revoked_for_project.json": (SYSTEM, None),
    "system_user_access_request_to_group.json": (SYSTEM, None),
    "system_user_access_request_to_project.json": (SYSTEM, None),
    "system_user_add_to_team.json": (
        SYSTEM,
        [invalidate_permissions_job(project_id=74, user_id=41)],
    ),
    "system_user_remove_from_team.json": (
        SYSTEM,
        [invalidate_permissions_job(project_id=74, user_id=41)],
    ),
    "system_user_update_for_team.json": (
        SYSTEM,
        [invalidate_permissions_job(project_id=74, user_id=41)],
    ),
    "system_user_create.json": (SYSTEM, None),
    "system_user_destroy.json": (SYSTEM, [invalidate_permissions_job(user_id=41)]),
    "system_user_failed_login.json": (SYSTEM, None),
    "system_user_rename.json": (SYSTEM, None),
    "system_key_create.json": (SYSTEM, None),
    "system_key_destroy.json": (SYSTEM, None),
    "system_group_create.json": (SYSTEM, None),
    "system_group_destroy.json": (
        SYSTEM,
        [invalidate_permissions_job(group_id=78), reconcile_job()],
    ),
    "system_group_rename.json": (
        SYSTEM,
        [invalidate_permissions_job(group_id=64), reconcile_job()],
    ),
    "system_user_add_to_group.json": (
        SYSTEM,
        [invalidate_permissions_job(user_id=41, group_id=78)],
    ),
    "system_user_remove_from_group.json": (
        SYSTEM,
        [invalidate_permissions_job(user_id=41, group_id=78)],
    ),
    "system_user_update_for_group.json": (
        SYSTEM,
        [invalidate_permissions_job(user_id=41, group_id=78)],
    ),
    "system_push.json": (SYSTEM, [sync_ref_job(15, "refs/heads/master", PUSH_BEFORE, PUSH_AFTER)]),
    "system_tag_push.json": (SYSTEM, [sync_ref_job(1, "refs/tags/v1.0.0", None, TAG_AFTER)]),
    "system_merge_request.json": (SYSTEM, [sync_merge_request_job(14, 1)]),
    "system_repository_update.json": (
        SYSTEM,
        [
            sync_ref_job(
                1,
                "refs/heads/master",
                "8205ea8d81ce0c6b90fbe8280d118cc9fdad6130",
                "4045ea7a3df38697b3730a20fb73c8bed8a3e69e",
            )
        ],
    ),
    "system_gitlab_subscription_member_approval_enqueue.json": (SYSTEM, None),
    "system_gitlab_subscription_member_approvals_approve.json": (SYSTEM, None),
    "system_gitlab_subscription_member_approvals_deny.json": (SYSTEM, None),
}
