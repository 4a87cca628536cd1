"""Image previews: Pillow thumbnails of JPEG, PNG, WebP and TIFF files, cached on disk.

Thumbnails exist in a few fixed sizes (`PREVIEW_SIZES`); a requested size is rounded up to
the next one (`preview_size`), so one image is decoded at most once per fixed size however
many sizes clients ask for (per-size caching let one image be decoded a thousand times).
A thumbnail is a pure function of the object's bytes (named by its hash) and its fixed size,
so it is cached under `<data dir>/previews/` by (hash, size) forever; concurrent misses for
one thumbnail in a process render it once. Decompression
bombs are refused before any pixel is decoded (the header's dimensions against
`MAX_PIXELS`, and Pillow's own `DecompressionBombError`); inputs larger than `MAX_INPUT_BYTES`
are not read at all.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from indexer.errors import DshubError, InvalidInput

PREVIEW_TYPES = {"image/jpeg", "image/png", "image/webp", "image/tiff"}
_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")
PREVIEW_SIZES = (64, 128, 256, 512, 1024)
MIN_SIZE, MAX_SIZE = 16, PREVIEW_SIZES[-1]  # what `?preview=` accepts; above MAX_SIZE is a 400
MAX_PIXELS = 64_000_000
MAX_INPUT_BYTES = 128 * 1024 * 1024
_KEY = re.compile(r"[0-9a-z-]{8,100}")


class NotPreviewable(DshubError):
    """The file is not an image dshub can preview."""

    status = 415
    code = "not_previewable"
    exit_code = 2


class UnsafeImage(DshubError):
    """The image is too large to decode safely, or its data is corrupt."""

    status = 422
    code = "unsafe_image"
    exit_code = 2


@dataclass(frozen=True)
class Preview:
    """A cached thumbnail: where it is, its media type, and whether it came from the cache."""

    path: Path
    media_type: str
    cached: bool


def preview_size(requested: int) -> int:
    """The fixed size a thumbnail of `requested` pixels is rendered at: the smallest of
    `PREVIEW_SIZES` at least as large (`requested` is at most `MAX_SIZE`)."""
    for size in PREVIEW_SIZES:
        if requested <= size:
            return size
    raise InvalidInput(f"preview must be a size from {MIN_SIZE} to {MAX_SIZE} pixels")


def check_previewable(media_type: str, path: str) -> None:
    """Raise `NotPreviewable` (415) unless the media type is one Pillow previews here."""
    if media_type not in PREVIEW_TYPES:
        raise NotPreviewable(
            f"{path} is {media_type}; previews exist for JPEG, PNG, WebP and TIFF images"
        )


class PreviewCache:
    """Thumbnails on disk under `directory`, keyed by (content hash, size)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._guard = threading.Lock()
        self._rendering: dict[tuple[str, int], threading.Lock] = {}

    def _paths(self, key: str, size: int) -> list[Path]:
        if not _KEY.fullmatch(key):
            raise InvalidInput("preview key must be a content hash")
        base = self.directory / key[:2] / f"{key}-{size}"
        return [base.with_suffix(".jpg"), base.with_suffix(".png")]

    def get(
        self, key: str, size: int, path: str, size_bytes: int | None, read: Callable[[], bytes]
    ) -> Preview:
        """The thumbnail of `path` (content hash `key`), made from `read()` on a cache miss."""
        found = self._cached(key, size)
        if found is not None:
            return found
        with self._guard:
            lock = self._rendering.setdefault((key, size), threading.Lock())
        try:
            with lock:  # a concurrent miss waits for the first render, then finds it cached
                return self._cached(key, size) or self._render(key, size, path, size_bytes, read)
        finally:
            with self._guard:
                if not lock.locked():
                    self._rendering.pop((key, size), None)

    def _cached(self, key: str, size: int) -> Preview | None:
        for candidate in self._paths(key, size):
            if candidate.is_file():
                return Preview(candidate, _type_of(candidate), True)
        return None

    def _render(
        self, key: str, size: int, path: str, size_bytes: int | None, read: Callable[[], bytes]
    ) -> Preview:
        if size_bytes is not None and size_bytes > MAX_INPUT_BYTES:
            raise UnsafeImage(
                f"{path} is {size_bytes} bytes; previews are made of images up to "
                f"{MAX_INPUT_BYTES} bytes"
            )
        data, media = render(read(), size, path)
        target = self._paths(key, size)[0 if media == "image/jpeg" else 1]
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
        return Preview(target, media, False)


def render(data: bytes, size: int, path: str) -> tuple[bytes, str]:
    """A thumbnail fitting in `size` x `size` (JPEG, or PNG when the image has transparency)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=_FORMATS)
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise UnsafeImage(
                    f"{path} is {width}x{height} pixels; previews are made of images up to "
                    f"{MAX_PIXELS} pixels (decompression bomb guard)"
                )
            opened.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((size, size))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnsafeImage(f"{path} is too large to decode safely (decompression bomb)") from None
    except UnidentifiedImageError:
        raise NotPreviewable(f"{path} is not a JPEG, PNG, WebP or TIFF image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsafeImage(f"{path}: image data is corrupt ({type(exc).__name__})") from None
    out = io.BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image.convert("RGBA").save(out, "PNG", optimize=True)
        return out.getvalue(), "image/png"
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue(), "image/jpeg"


def _type_of(path: Path) -> str:
    return "image/jpeg" if path.suffix == ".jpg" else "image/png"
