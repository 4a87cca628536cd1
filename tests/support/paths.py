"""Where the repository's copies of GitLab's reference data are (see tests/fixtures/gitlab/SOURCE.md).

Everything the tests and benchmarks read lives inside the repository, so a lone clone runs.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GITLAB_FIXTURES = ROOT / "tests" / "fixtures" / "gitlab"
WEBHOOK_FIXTURES = GITLAB_FIXTURES / "webhooks"
GITLAB_API_SCHEMAS = GITLAB_FIXTURES / "api-schemas"
GITLAB_CI_SCHEMA = GITLAB_FIXTURES / "gitlab-ci.schema.json"
