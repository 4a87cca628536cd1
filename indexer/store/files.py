"""Turning parsed pointers into the file records a ref holds (what the sync jobs store).

Bad data is indexed as far as possible and marked: an unreadable pointer or a manifest that
is missing from storage becomes one record with `status="error"` and a note, so the ref still
lists everything else and the UI can say what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from indexer.pointers import ManifestEntry, PointerOut, media_type
from indexer.store.base import IndexedFile, ManifestRow


def files_for_out(
    out: PointerOut, entries: Iterable[ManifestEntry | ManifestRow] | None = None
) -> Iterator[IndexedFile]:
    """The files one pointer output contributes; pass a directory's manifest `entries` (streamed).

    A directory without entries (manifest not readable) yields one `error` record for the
    directory; an imported output yields one `imported` record (its data is not ours).
    """
    if out.imported:
        yield IndexedFile(
            path=out.path,
            md5=out.md5,
            hash_name=out.hash_name,
            size=out.size,
            media_type="inode/directory" if out.is_dir else media_type(out.path),
            pointer_path=out.pointer_path,
            in_directory=False,
            status="imported",
            note=f"imported from {out.import_url}" if out.import_url else "imported",
        )
        return
    if not out.is_dir:
        yield IndexedFile(
            path=out.path,
            md5=out.md5,
            hash_name=out.hash_name,
            size=out.size,
            media_type=media_type(out.path),
            pointer_path=out.pointer_path,
        )
        return
    if entries is None:
        yield error_file(out.pointer_path, f"manifest {out.oid} is not readable", path=out.path)
        return
    prefix = f"{out.path}/" if out.path else ""
    for entry in entries:
        yield IndexedFile(
            path=prefix + entry.relpath,
            md5=entry.md5,
            hash_name=out.hash_name,  # entries inherit their directory's hash and layout
            size=None,
            media_type=media_type(entry.relpath),
            pointer_path=out.pointer_path,
            in_directory=True,
        )


def error_file(pointer_path: str, message: str, *, path: str | None = None) -> IndexedFile:
    """A record marking a pointer (or its directory) that could not be indexed, with why."""
    return IndexedFile(
        path=path or pointer_path,
        md5="",
        hash_name="",
        size=None,
        media_type="application/octet-stream",
        pointer_path=pointer_path,
        status="error",
        note=message,
    )
