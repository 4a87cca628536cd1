"""The versions UI tests' world: the versions tests' world (`tests/versions/conftest.py`: the
GitLab sandbox, moto S3 as the storage site, dshub served on a loopback port, group `lab` with
mia Maintainer, dev Developer, rep Reporter, and the dataset `lab/cells`), on the SQLite
index only, plus real PNG images uploaded through the API so thumbnails can be compared."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.versions.conftest import VersionsWorld, world  # noqa: F401 (the fixture)

# Every test module of this package runs on one backend: the browser is the slow part.
BACKEND = pytest.mark.parametrize("world", ["sqlite"], indirect=True)


def png(color: tuple[int, int, int], size: int = 64) -> bytes:
    """A real PNG of one colour with a diagonal line (so thumbnails are decodable)."""
    image = Image.new("RGB", (size, size), color)
    for i in range(size):
        image.putpixel((i, i), (0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


IMAGES = {"img/one.png": png((200, 30, 30)), "img/two.png": png((30, 160, 40))}


def upload_images(into: VersionsWorld, files: dict[str, bytes], message: str) -> None:
    """Upload `files` (paths with one folder) as mia through the API, into their folder."""
    by_folder: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder, {})[name] = data
    for folder, named in by_folder.items():
        done = into.upload("mia", named, folder=folder, message=message)
        assert done.status_code == 201, done.get_json()


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """The git-ignored folder screenshots go to."""
    folder = Path(__file__).resolve().parents[2] / "artifacts" / "ui-versions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
