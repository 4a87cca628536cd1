"""Where the team's shared reference material is: `../shared` beside the repository.

CI clones the repository into another folder with a copy of shared/ beside it, so the path
is always relative to the repository root (override with DSHUB_SHARED_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DSHUB_SHARED_DIR") or ROOT.parent / "shared")
WEBHOOK_FIXTURES = SHARED / "fixtures" / "gitlab-webhooks"
GITLAB_API_SCHEMAS = SHARED / "schemas" / "gitlab-api"
GITLAB_CI_SCHEMA = SHARED / "schemas" / "gitlab-ci.newer.json"
