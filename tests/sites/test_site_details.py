"""What a site's details tell someone who does not administer sites: no directory of the
server, and no count of datasets they may not read."""

from __future__ import annotations

from pathlib import Path

from indexer.store import Dataset, open_index
from tests.sites.conftest import SiteEnv
from webhook_service.app_settings import services as app_services
from webhook_service.app_settings import settings_of


def _index(env: SiteEnv, project_id: int, visibility: str, site: str) -> None:
    with open_index(settings_of(env.app).index_url) as store:
        store.upsert_dataset(
            Dataset(
                project_id=project_id,
                name=f"d{project_id}",
                path_with_namespace=f"lab/d{project_id}",
                namespace="lab",
                visibility=visibility,
                default_branch="main",
                storage_site=site,
            )
        )


def test_site_details_hide_the_path_and_count_only_readable_datasets(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    root = tmp_path / "secret-server-dir"
    root.mkdir()
    body = {"name": "disk", "kind": "local", "path": str(root)}
    assert site_env.call("POST", "/api/v1/storage-sites", "admin", json=body).status_code == 201
    private = site_env.admin.projects.create({"name": "hidden", "visibility": "private"})
    public = site_env.admin.projects.create({"name": "shown", "visibility": "public"})
    _index(site_env, private.id, "private", "disk")
    _index(site_env, public.id, "public", "disk")
    app_services(site_env.app).sites.select(private.id, "disk", None)  # chosen, too

    for who in ("admin", "member"):  # a GitLab admin, a member of the admin group
        shown = site_env.call("GET", "/api/v1/storage-sites/disk", who).get_json()
        assert shown["path"] == str(root) and shown["datasets"] == 2, (who, shown)
    other = site_env.call("GET", "/api/v1/storage-sites/disk", "other")
    assert other.status_code == 200
    assert other.get_json()["datasets"] == 1  # the public one; the private one is not told
    assert other.get_json()["path"] is None
    assert str(root) not in other.get_data(as_text=True)
    listed = site_env.call("GET", "/api/v1/storage-sites", "other").get_data(as_text=True)
    assert "secret-server-dir" not in listed
    listed = site_env.call("GET", "/api/v1/storage-sites", "admin").get_json()
    assert listed["items"][0]["path"] == str(root)
