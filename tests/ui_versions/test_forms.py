"""The versions forms over HTTP (Flask's test client on the real app, the GitLab sandbox and
moto S3): bad input is the versions page with the error inline and a 4xx, never a 500; a
Reporter's POST is refused with GitLab's reason; a cross-site post is refused."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from tests.ui_versions.conftest import BACKEND
from tests.versions.conftest import FILES, VersionsWorld
from webhook_service.csrf import token_for

pytestmark = BACKEND
HOST = "localhost"


def _client(world: VersionsWorld, who: str) -> tuple[FlaskClient, str]:
    client = world.app.test_client()
    client.set_cookie("tokenGitLab", world.tokens[who], domain=HOST)
    return client, token_for(world.tokens[who], world.app.config["SECRET_KEY"])


def _post(world: VersionsWorld, who: str, action: str, **fields: str) -> Any:
    client, csrf = _client(world, who)
    return client.post(f"/-/datasets/{world.pid}/{action}", data={"csrf_token": csrf, **fields})


def _alert(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]+)<', page)
    assert found, page[:2000]
    return found.group(1)


def test_bad_version_name_is_an_inline_400(world: VersionsWorld) -> None:
    answer = _post(world, "mia", "versions", name="v 1/..", message="notes kept")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "version name" in _alert(page)
    assert "Create version" in page and "notes kept" in page  # the form keeps what was typed


def test_unknown_ref_is_an_inline_400(world: VersionsWorld) -> None:
    answer = _post(world, "mia", "versions", name="v9.0.0", ref="no-such-branch")
    assert answer.status_code == 400
    assert "no-such-branch" in _alert(answer.get_data(as_text=True))
    listed = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "mia").get_json()
    assert "v9.0.0" not in str(listed)


def test_unknown_compare_ref_is_an_inline_404(world: VersionsWorld) -> None:
    client, _ = _client(world, "mia")
    path = world.project().path_with_namespace
    answer = client.get(f"/datasets/{path}/-/compare?from=main&to=v404.0.0")
    assert answer.status_code == 404
    assert "v404.0.0" in _alert(answer.get_data(as_text=True))
    bad = client.get(f"/datasets/{path}/-/compare?from=..&to=main")
    assert bad.status_code == 400, bad.get_data(as_text=True)[:500]


def test_restore_of_a_missing_version_and_a_bad_branch(world: VersionsWorld) -> None:
    missing = _post(world, "mia", "restore", version="v404.0.0", confirmed="1")
    assert missing.status_code == 404
    assert "v404.0.0" in _alert(missing.get_data(as_text=True))
    bad = _post(world, "mia", "restore", version="v0.0.1", branch="a..b")
    assert bad.status_code == 400
    assert "a..b" in _alert(bad.get_data(as_text=True)) or "ref" in _alert(
        bad.get_data(as_text=True)
    )


def test_reporter_post_is_refused_with_gitlabs_reason(world: VersionsWorld) -> None:
    answer = _post(world, "rep", "versions", name="v7.0.0")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 403, page[:1000]
    assert "Maintainer" in _alert(page) or "GitLab" in _alert(page)
    assert 'id="create-title"' not in page  # still no control for them
    restore = _post(world, "rep", "restore", version="v7.0.0", confirmed="1")
    assert restore.status_code in (403, 404)


def test_outsider_gets_the_one_404(world: VersionsWorld) -> None:
    answer = _post(world, "out", "versions", name="v7.0.0")
    assert answer.status_code == 404


def test_cross_site_post_is_refused(world: VersionsWorld) -> None:
    client, csrf = _client(world, "mia")
    answer = client.post(
        f"/-/datasets/{world.pid}/versions",
        data={"csrf_token": csrf, "name": "v6.6.6"},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403
    assert "refused" in answer.get_data(as_text=True)
    no_token = client.post(f"/-/datasets/{world.pid}/versions", data={"name": "v6.6.6"})
    assert no_token.status_code == 403
    listed = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "mia").get_json()
    assert "v6.6.6" not in str(listed)


def test_delete_needs_the_confirmation(world: VersionsWorld) -> None:
    made = _post(world, "mia", "versions", name="v0.0.9", message="to delete")
    assert made.status_code == 303, made.get_data(as_text=True)[:1000]
    asked = _post(world, "mia", "versions/delete", name="v0.0.9")
    assert asked.status_code == 200
    assert "Delete version v0.0.9?" in asked.get_data(as_text=True)
    listed = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "mia").get_json()
    assert "v0.0.9" in str(listed)
    gone = _post(world, "mia", "versions/delete", name="v0.0.9", confirmed="1")
    assert gone.status_code == 303
    listed = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "mia").get_json()
    assert "v0.0.9" not in str(listed)


def test_restore_on_a_new_branch_opens_a_merge_request(world: VersionsWorld) -> None:
    made = _post(world, "mia", "versions", name="v0.0.2", message="before the change")
    assert made.status_code == 303, made.get_data(as_text=True)[:1000]
    changed = world.upload("mia", {"a.png": b"changed" * 10}, message="Change a.png")
    assert changed.status_code == 201, changed.get_json()
    fields = {"version": "v0.0.2", "new_branch": "restore-v002", "merge_request": "true"}
    asked = _post(world, "mia", "restore", **fields)
    assert asked.status_code == 200
    text = asked.get_data(as_text=True)
    assert "One new commit on branch <strong>restore-v002</strong>" in text
    assert "with a merge request back into main" in text
    done = _post(world, "mia", "restore", **fields, confirmed="1")
    page = done.get_data(as_text=True)
    assert done.status_code == 201, page[:2000]
    assert "Restored version v0.0.2 on restore-v002." in page
    mrs = world.project().mergerequests.list(source_branch="restore-v002", get_all=True)
    assert len(mrs) == 1 and f"!{mrs[0].iid}</a>" in page
    restored = world.call(
        "GET", f"/api/v1/datasets/{world.pid}/files/a.png?ref=restore-v002", "mia"
    )
    assert restored.data == FILES["a.png"]
