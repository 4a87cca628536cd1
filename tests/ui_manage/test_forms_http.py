"""The management forms' error paths over HTTP (no browser): bad or missing fields answer
the form again with the API's message next to the field and a 4xx, never a 500; nothing is
changed; who may not see the controls is refused."""

from __future__ import annotations

import re

from tests.ui_manage.conftest import UiWorld


def _error_of(html: str, field: str) -> str:
    found = re.search(rf'<p id="{field}-error" class="field-error" role="alert">([^<]*)</p>', html)
    assert found, f"no inline error for {field}"
    return found.group(1)


def test_new_dataset_errors_are_inline_and_keep_the_input(ui_world: UiWorld) -> None:
    client, csrf = ui_world.form_client("maintainer")
    base = {"csrf_token": csrf, "namespace": "imaging", "description": "kept text"}

    answer = client.post("/-/new-dataset", data={**base, "name": " ", "tags": "ct"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Name is required" in _error_of(html, "name")
    assert "kept text" in html and 'value="ct"' in html

    answer = client.post("/-/new-dataset", data={**base, "name": "Open", "visibility": "public"})
    assert answer.status_code == 422
    assert "the highest this namespace allows is &#39;internal&#39;" in _error_of(
        answer.get_data(as_text=True), "visibility"
    )

    answer = client.post("/-/new-dataset", data={**base, "name": "Odd", "visibility": "secret"})
    assert answer.status_code == 400
    assert "visibility must be one of" in _error_of(answer.get_data(as_text=True), "visibility")

    answer = client.post("/-/new-dataset", data={**base, "name": "seed", "visibility": "private"})
    assert answer.status_code == 409
    assert "already exists" in _error_of(answer.get_data(as_text=True), "name")

    answer = client.post("/-/new-dataset", data={**base, "name": "x", "namespace": "vault"})
    assert 400 <= answer.status_code < 500
    _error_of(answer.get_data(as_text=True), "namespace")

    answer = client.post("/-/new-dataset", data={**base, "name": "x" * 300})
    assert answer.status_code == 400
    assert "longer than 255" in _error_of(answer.get_data(as_text=True), "name")


def test_file_and_revert_forms_refuse_bad_fields(ui_world: UiWorld) -> None:
    client, csrf = ui_world.form_client("maintainer")
    pid = ui_world.seed_id
    answer = client.post(
        f"/-/datasets/{pid}/files/move", data={"csrf_token": csrf, "path": "README.md", "to": ""}
    )
    assert answer.status_code == 400
    _error_of(answer.get_data(as_text=True), "to")

    answer = client.post(
        f"/-/datasets/{pid}/files/delete",
        data={"csrf_token": csrf, "path": "README.md", "target": "new", "new_branch": ""},
    )
    assert answer.status_code == 400
    _error_of(answer.get_data(as_text=True), "new_branch")

    # No storage site yet: the API's 409, shown on the form.
    answer = client.post(
        f"/-/datasets/{pid}/files/delete", data={"csrf_token": csrf, "path": "data.bin"}
    )
    assert answer.status_code == 409
    assert "select a storage site first" in answer.get_data(as_text=True)

    answer = client.post(f"/-/datasets/{pid}/revert", data={"csrf_token": csrf, "sha": "nope!"})
    assert answer.status_code == 400
    assert 'class="notice error"' in answer.get_data(as_text=True)

    answer = client.get(f"/-/datasets/{pid}/files/delete?path=../etc")
    assert answer.status_code == 400
    answer = client.get(f"/-/datasets/{pid}/history?page=0")
    assert answer.status_code == 400


def test_settings_errors_and_typed_delete(ui_world: UiWorld) -> None:
    client, csrf = ui_world.form_client("maintainer")
    pid = ui_world.seed_id
    answer = client.post(
        f"/-/datasets/{pid}/settings",
        data={"csrf_token": csrf, "name": "", "visibility": "internal", "tags": ""},
    )
    assert answer.status_code == 400
    assert "name must not be empty" in _error_of(answer.get_data(as_text=True), "name")

    # Deleting is for Owners (GitLab's rule): a Maintainer is refused before anything else.
    answer = client.post(
        f"/-/datasets/{pid}/delete", data={"csrf_token": csrf, "confirm": "imaging/seed"}
    )
    assert answer.status_code == 403
    assert "Owner role" in answer.get_data(as_text=True)
    client, csrf = ui_world.form_client("admin")
    answer = client.post(f"/-/datasets/{pid}/delete", data={"csrf_token": csrf, "confirm": "seed"})
    assert answer.status_code == 400
    assert "imaging/seed exactly" in _error_of(answer.get_data(as_text=True), "confirm")
    assert ui_world.manage.call("maintainer", "GET", f"/api/v1/datasets/{pid}").status_code == 200


def test_who_may_not_is_refused(ui_world: UiWorld) -> None:
    pid = ui_world.seed_id
    client, csrf = ui_world.form_client("reporter")
    assert client.get(f"/-/datasets/{pid}/settings").status_code == 403
    assert client.get(f"/-/datasets/{pid}/files/delete?path=a").status_code == 403
    assert client.get(f"/-/datasets/{pid}/storage-site?name=moto").status_code == 403
    answer = client.post(f"/-/datasets/{pid}/delete", data={"csrf_token": csrf, "confirm": ""})
    assert answer.status_code == 403
    page = client.get("/datasets/imaging/seed").get_data(as_text=True)
    assert "Settings" not in page and "Apply" not in page

    client, _ = ui_world.form_client("nonmember")
    vault = ui_world.manage.create("admin", name="hidden", namespace="vault")
    assert vault.status_code == 201, vault.get_json()
    hidden = vault.get_json()["id"]
    for url in (f"/-/datasets/{hidden}/settings", f"/-/datasets/{hidden}/history"):
        answer = client.get(url)
        assert answer.status_code == 404
        assert "Page not found" in answer.get_data(as_text=True)

    client.delete_cookie("tokenGitLab")
    answer = client.get("/-/new-dataset")
    assert answer.status_code == 401


def test_upload_files_is_offered_to_those_who_may_write(ui_world: UiWorld) -> None:
    """Developers and more see "Upload Files" once a site is applied; a Reporter (whom GitLab
    would refuse the commit) does not, nor does anyone on an archived dataset."""
    made = ui_world.manage.create("maintainer", name="offered", namespace="imaging")
    assert made.status_code == 201, made.get_json()
    pid = made.get_json()["id"]
    chosen = ui_world.manage.call(
        "maintainer", "POST", f"/api/v1/datasets/{pid}/storage-site", {"name": "moto"}
    )
    assert chosen.status_code == 201, chosen.get_json()
    seen = {}
    for who in ("reporter", "developer", "maintainer"):
        client, _ = ui_world.form_client(who)
        seen[who] = "Upload Files" in client.get("/datasets/imaging/offered").get_data(as_text=True)
    assert seen == {"reporter": False, "developer": True, "maintainer": True}


def test_settings_offer_no_visibility_above_the_namespace(ui_world: UiWorld) -> None:
    made = ui_world.manage.create("admin", name="quiet", namespace="vault")
    assert made.status_code == 201, made.get_json()
    client, _ = ui_world.form_client("admin")
    html = client.get(f"/-/datasets/{made.get_json()['id']}/settings").get_data(as_text=True)
    radios = dict(re.findall(r'<input type="radio" name="visibility" value="(\w+)"([^>]*)>', html))
    assert "checked" in radios["private"]
    assert "disabled" in radios["internal"] and "disabled" in radios["public"], radios
    assert "vault allows at most private" in html
    seed = client.get(f"/-/datasets/{ui_world.seed_id}/settings").get_data(as_text=True)
    internal = dict(
        re.findall(r'<input type="radio" name="visibility" value="(\w+)"([^>]*)>', seed)
    )
    assert "disabled" not in internal["internal"] and "disabled" in internal["public"]
