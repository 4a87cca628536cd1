"""Upload, replace, move and delete through the API; then git clone + dvc pull gives exactly
the expected bytes, `git status` is clean, and a tracked directory's pointer is what
`dvc add` writes for the same change."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.download.world import image
from tests.uploads.conftest import UploadWorld


def _images(prefix: str, count: int, seed: int = 0) -> dict[str, bytes]:
    return {
        f"{prefix}{i:02d}.png": image("PNG", (16 + i % 5, 12), seed=seed + i) for i in range(count)
    }


def _workspace_files(root: Path, top: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in (root / top).rglob("*")
        if p.is_file() and p.name != ".gitignore" and not p.name.endswith(".dvc")
    }


def test_upload_replace_move_delete_then_clone_and_pull(upload_world: UploadWorld) -> None:
    world = upload_world
    clone = world.clone("fresh")
    assert clone.dvc("remote", "list").split()[:1] == ["dshub"]

    loose = _images("img", 50)
    answer = world.upload("mia", loose, folder="loose", message="Fifty loose images", confirm=True)
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["index"] == "synced" and len(body["files"]) == 50
    assert {f["action"] for f in body["files"]} == {"created"}
    assert body["files"][0]["tracked_by"] == "loose/img00.png.dvc"
    tracked = _images("cell", 50, seed=100)
    answer = world.upload("mia", tracked, folder="tracked", layout="directory")
    assert answer.status_code == 201, answer.get_json()
    assert {f["tracked_by"] for f in answer.get_json()["files"]} == {"tracked.dvc"}
    commits = world.admin.projects.get(world.pid).commits.list(get_all=True)
    assert (
        commits[0].title == "Upload 50 files to tracked"
        and commits[1].title == "Fifty loose images"
    )
    assert commits[0].author_name == "mia"

    # The index shows the change at once (the ref was re-synced before the answer).
    tree = world.call("GET", f"/api/v1/datasets/{world.pid}/tree?path=loose", "mia").get_json()
    assert len([item for item in tree["items"] if item["name"].endswith(".png")]) == 50

    # A file joining the tracked directory: the pointer equals what `dvc add` writes in a
    # clone without the data, for the same change.
    joiner = image("PNG", (30, 30), seed=777)
    reference = world.clone("reference")
    reference.write("tracked/joined.png", joiner)
    reference.dvc("add", "-q", "tracked/joined.png")
    answer = world.upload("mia", {"joined.png": joiner}, folder="tracked")
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["files"][0]["action"] == "created"
    assert world.pointer("tracked.dvc") == (reference.path / "tracked.dvc").read_bytes()

    # Replacing an entry: DVC does not know the old size, so it drops `size`; so do we.
    replaced_entry = image("PNG", (31, 31), seed=778)
    reference = world.clone("reference2")
    reference.write("tracked/cell03.png", replaced_entry)
    reference.dvc("add", "-q", "tracked/cell03.png")
    answer = world.upload("mia", {"cell03.png": replaced_entry}, folder="tracked")
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["files"][0]["action"] == "replaced"
    assert world.pointer("tracked.dvc") == (reference.path / "tracked.dvc").read_bytes()
    assert b"size:" not in world.pointer("tracked.dvc")

    # Replace a loose file, move one, delete one (loose and an entry of the directory).
    new_bytes = image("PNG", (40, 20), seed=999)
    answer = world.upload("mia", {"img07.png": new_bytes}, folder="loose")
    assert answer.status_code == 201 and answer.get_json()["files"][0]["action"] == "replaced"
    moved = world.call(
        "POST",
        f"/api/v1/datasets/{world.pid}/files/move",
        "mia",
        json={"from": "loose/img08.png", "to": "elsewhere/renamed.png"},
    )
    assert moved.status_code == 201, moved.get_json()
    deleted = world.call("DELETE", f"/api/v1/datasets/{world.pid}/files/loose/img09.png", "mia")
    assert deleted.status_code == 201, deleted.get_json()
    many = world.call(
        "DELETE",
        f"/api/v1/datasets/{world.pid}/files",
        "mia",
        json={"paths": ["tracked/cell10.png", "tracked/cell11.png"]},
    )
    assert many.status_code == 201, many.get_json()
    assert [f["action"] for f in many.get_json()["files"]] == ["deleted", "deleted"]

    expected = {f"loose/{name}": data for name, data in loose.items()}
    expected["loose/img07.png"] = new_bytes
    expected["elsewhere/renamed.png"] = expected.pop("loose/img08.png")
    del expected["loose/img09.png"]
    expected.update({f"tracked/{name}": data for name, data in tracked.items()})
    expected["tracked/joined.png"] = joiner
    expected["tracked/cell03.png"] = replaced_entry
    del expected["tracked/cell10.png"], expected["tracked/cell11.png"]

    final = world.clone("final")
    final.dvc("pull", "-q")
    pulled: dict[str, bytes] = {}
    for top in ("loose", "tracked", "elsewhere"):
        pulled.update(_workspace_files(final.path, top))
    assert {k: hashlib.md5(v).hexdigest() for k, v in pulled.items()} == {
        k: hashlib.md5(v).hexdigest() for k, v in expected.items()
    }
    assert final.git("status", "--porcelain") == ""
    assert final.dvc("status", "-q") == ""
    gitignore = (final.path / "loose" / ".gitignore").read_text()
    assert "/img09.png\n" not in gitignore and "/img08.png\n" not in gitignore
    assert (final.path / "elsewhere" / ".gitignore").read_text() == "/renamed.png\n"
    assert (final.path / ".gitignore").read_text() == "/tracked\n"


def test_the_same_bytes_again_are_a_no_op_that_says_so(upload_world: UploadWorld) -> None:
    world = upload_world
    files = _images("x", 3)
    assert world.upload("mia", files, folder="f").status_code == 201
    head = world.admin.projects.get(world.pid).branches.get("main").commit["id"]
    again = world.upload("mia", files, folder="f")
    assert again.status_code == 200, again.get_json()
    body = again.get_json()
    assert body["unchanged"] is True and body["commit"] is None
    assert {f["action"] for f in body["files"]} == {"unchanged"}
    assert world.admin.projects.get(world.pid).branches.get("main").commit["id"] == head
