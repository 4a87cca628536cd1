"""A stand-in for GitLab (REST API v4 subset, git smart HTTP, webhooks) for tests and the demo.

Test and demo infrastructure only: nothing under `webhook_service/`, `indexer/` or `dshub/`
may import it. Start it in-process with `tests.gitlab_sandbox.server.Sandbox` (or the
`gitlab_sandbox` pytest fixture) or as `python -m tests.gitlab_sandbox --port P --data-dir D`.
"""
