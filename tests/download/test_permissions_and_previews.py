"""Who may browse, download and preview what; and the previews themselves."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from tests.download.world import SEED_PATH, World
from tests.receiver.serving import Gunicorn

CALLERS = ("anonymous", "outsider", "guest", "reporter", "admin")
READS_PRIVATE = {"reporter", "admin"}


def _auth(world: World, caller: str) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    # Each way of presenting a token works the same: cookie, PRIVATE-TOKEN, Bearer.
    token = world.tokens[caller]
    return {
        "outsider": {"Authorization": f"Bearer {token}"},
        "guest": {"Cookie": f"tokenGitLab={token}"},
    }.get(caller, {"PRIVATE-TOKEN": token})


def _requests(world: World, dataset: str) -> dict[str, tuple[str, dict[str, str]]]:
    project = world.cats if dataset == "private" else world.dogs
    path = SEED_PATH if dataset == "private" else "pics/photo.jpg"
    base = f"/api/v1/datasets/{project.id}"
    return {
        "tree": (f"{base}/tree", {"ref": "v0.1.0" if dataset == "private" else "v1"}),
        "download": (f"{base}/files/{path}", {}),
        "preview": (f"{base}/files/{path}", {"preview": "64"}),
    }


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("dataset", ["public", "private"])
def test_permission_matrix_for_tree_download_and_preview(
    world: World, server: Gunicorn, caller: str, dataset: str
) -> None:
    allowed = dataset == "public" or caller in READS_PRIVATE
    project = world.cats if dataset == "private" else world.dogs
    nonexistent = requests.get(
        f"{server.url}/api/v1/datasets/999999/tree", headers=_auth(world, caller), timeout=30
    )
    for action, (path, params) in _requests(world, dataset).items():
        answer = requests.get(
            server.url + path, params=params, headers=_auth(world, caller), timeout=30
        )
        if allowed:
            assert answer.status_code == 200, (action, answer.text)
        else:
            assert answer.status_code == 404, (action, answer.text)
            # Identical to a dataset that does not exist (apart from the id).
            assert answer.json()["error"]["code"] == nonexistent.json()["error"]["code"]
            assert answer.json()["error"]["message"] == f"dataset {project.id} not found"
            assert nonexistent.json()["error"]["message"] == "dataset 999999 not found"


def test_a_token_gitlab_refuses_is_401(world: World, server: Gunicorn) -> None:
    answer = requests.get(
        f"{server.url}/api/v1/datasets/{world.dogs.id}/files/pics/photo.jpg",
        headers={"PRIVATE-TOKEN": "glpat-nonsense"},
        timeout=30,
    )
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("path", "size", "expected"),
    [
        ("pics/photo.jpg", 256, ((256, 192), "image/jpeg")),
        ("pics/alpha.png", 128, ((128, 85), "image/png")),
        # Sizes between the fixed ones are rounded up: 100 -> 128, 200 -> 256.
        ("pics/pic.webp", 100, ((128, 128), "image/jpeg")),
        ("pics/scan.tiff", 200, ((256, 192), "image/jpeg")),
    ],
)
def test_previews_are_thumbnails_of_the_requested_size(
    world: World, server: Gunicorn, path: str, size: int, expected: tuple[tuple[int, int], str]
) -> None:
    url = f"{server.url}/api/v1/datasets/{world.dogs.id}/files/{path}"
    first = requests.get(url, params={"ref": "v1", "preview": str(size)}, timeout=30)
    assert first.status_code == 200, first.text
    assert first.headers["Content-Type"] == expected[1]
    assert Image.open(io.BytesIO(first.content)).size == expected[0]
    again = requests.get(url, params={"ref": "v1", "preview": str(size)}, timeout=30)
    assert first.headers["X-Dshub-Preview-Cache"] == "miss"
    assert again.headers["X-Dshub-Preview-Cache"] == "hit"
    assert again.content == first.content
    assert first.headers["X-Dshub-Preview-Size"] == str(max(expected[0]))


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("pics/bomb.png", 422, "decompression bomb"),
        ("pics/notes.txt", 415, "previews exist for JPEG, PNG, WebP and TIFF"),
        ("pics/fake.png", 415, "is not a JPEG, PNG, WebP or TIFF image"),
        ("pics/victim.bin", 415, "application/octet-stream"),
    ],
)
def test_bombs_and_non_images_get_a_clear_refusal(
    world: World, server: Gunicorn, path: str, status: int, words: str
) -> None:
    answer = requests.get(
        f"{server.url}/api/v1/datasets/{world.dogs.id}/files/{path}",
        params={"ref": "v1", "preview": "64"},
        timeout=30,
    )
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]


@pytest.mark.parametrize("size", ["0", "5000", "abc", "-1", ""])
def test_a_preview_size_out_of_range_is_400(world: World, server: Gunicorn, size: str) -> None:
    answer = requests.get(
        f"{server.url}/api/v1/datasets/{world.dogs.id}/files/pics/photo.jpg",
        params={"preview": size},
        timeout=30,
    )
    assert answer.status_code == 400


def test_the_tree_merges_git_and_dvc_entries_into_one_folder_view(
    world: World, server: Gunicorn
) -> None:
    admin = {"PRIVATE-TOKEN": world.tokens["admin"]}
    base = f"{server.url}/api/v1/datasets/{world.cats.id}/tree"
    root = requests.get(base, params={"ref": "v0.3.0"}, headers=admin, timeout=30).json()
    by_name = {item["name"]: item for item in root["items"]}
    assert {"README.md", "docs", "images", "model.bin", "legacy", "dataset"} <= set(by_name)
    # Pointers show as their data (the `.dvc` directory is git content and stays).
    assert not any(name.endswith(".dvc") for name in by_name if name != ".dvc")
    assert by_name["images"]["type"] == "dir" and by_name["images"]["source"] == "dvc"
    assert by_name["docs"]["type"] == "dir" and by_name["docs"]["source"] == "git"
    model = by_name["model.bin"]
    assert (model["type"], model["size"], model["hash_name"]) == ("file", 2_500_000, "md5")
    assert model["download_url"] == f"/api/v1/datasets/{world.cats.id}/files/model.bin?ref=v0.3.0"
    assert by_name["README.md"]["hash_name"] == "git-sha1" and by_name["README.md"]["blob_id"]

    images = requests.get(
        base, params={"ref": "v0.1.0", "path": "images"}, headers=admin, timeout=30
    ).json()
    assert [(i["name"], i["type"]) for i in images["items"]] == [
        ("cat0.png", "file"),
        ("cat1.png", "file"),
        ("sub", "dir"),
    ]
    cat0 = images["items"][0]
    assert cat0["preview_url"] == f"{cat0['download_url']}&preview=256"
    downloaded = requests.get(server.url + cat0["download_url"], headers=admin, timeout=30)
    assert downloaded.content == world.files["images/cat0.png"]


def test_the_tree_of_an_unindexed_branch_is_read_live(world: World, server: Gunicorn) -> None:
    admin = {"PRIVATE-TOKEN": world.tokens["admin"]}
    base = f"{server.url}/api/v1/datasets/{world.cats.id}/tree"
    for path, names in (
        ("", {"feature", "images", "model.bin", "legacy", "README.md"}),
        ("images", {"cat0.png", "cat1.png", "sub"}),
        ("images/sub", {"x.jpg"}),
        ("feature", {"new.bin"}),
    ):
        answer = requests.get(
            base, params={"ref": "feature", "path": path}, headers=admin, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert names <= {item["name"] for item in answer.json()["items"]}, path


def test_the_tree_pages_and_refuses_what_is_not_a_folder(world: World, server: Gunicorn) -> None:
    base = f"{server.url}/api/v1/datasets/{world.dogs.id}/tree"
    first = requests.get(base, params={"path": "pics", "per_page": "3"}, timeout=30).json()
    second = requests.get(
        base, params={"path": "pics", "per_page": "3", "page": "2"}, timeout=30
    ).json()
    assert first["next_page"] == 2 and len(first["items"]) == 3
    assert not {i["name"] for i in first["items"]} & {i["name"] for i in second["items"]}
    everything = requests.get(base, params={"path": "pics", "per_page": "100"}, timeout=30).json()
    assert everything["next_page"] is None
    assert [i["name"] for i in everything["items"]][:6] == [
        i["name"] for i in first["items"] + second["items"]
    ]
    assert requests.get(base, params={"path": "nope"}, timeout=30).status_code == 404
    assert requests.get(base, params={"path": "../x"}, timeout=30).status_code == 400
    assert requests.get(base, params={"per_page": "0"}, timeout=30).status_code == 400
