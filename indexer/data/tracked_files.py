"""What a pointer tracks, as the index's file records, and the manifests of tracked directories.

The one place that turns a parsed pointer output (`indexer.data.pointers.PointerOut`) into
`IndexedFile` records and reads a tracked directory's `.dir` manifest from storage into the
index. The sync jobs (which store the records) and the resolver (which answers a live read
of a ref the index does not hold) both use it, so both give the same answer.

Bad data is indexed as far as possible and marked: an unreadable manifest becomes one record
with `status="error"` and a note, an output whose bytes live elsewhere (an import, a
per-output `remote:`) one record with that reason, so the ref still lists everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from indexer.data.pointers import ManifestEntry, PointerOut, iter_manifest, media_type, object_key
from indexer.data.storage import ObjectMissing, ObjectStore, iter_stream
from indexer.store.base import IndexedFile, IndexStore, ManifestRow

IMPORTED = "imported"
ELSEWHERE = "elsewhere"
"""Record statuses of outputs whose bytes are not in the dataset's storage site."""


def file_of(
    out: PointerOut, path: str | None = None, md5: str | None = None, *, in_directory: bool = False
) -> IndexedFile:
    """The record of one file `out` tracks: the output itself, or an entry of its directory."""
    path = out.path if path is None else path
    elsewhere = out.stored_elsewhere
    return IndexedFile(
        path=path,
        md5=out.md5 if md5 is None else md5,
        hash_name=out.hash_name,  # entries inherit their directory's hash and layout
        size=None if in_directory or out.is_dir else out.size,
        media_type=media_type(path),
        pointer_path=out.pointer_path,
        in_directory=in_directory,
        status="ok" if elsewhere is None else (IMPORTED if out.imported else ELSEWHERE),
        note=elsewhere,
    )


def files_of_out(
    out: PointerOut, entries: Iterable[ManifestEntry | ManifestRow] | None = None
) -> Iterator[IndexedFile]:
    """The files one output contributes; pass a directory's manifest `entries` (streamed).

    A directory without entries (manifest not readable) yields one `error` record for the
    directory; an output stored elsewhere yields one record saying where (its data is not ours).
    """
    if out.stored_elsewhere is not None or not out.is_dir:
        yield file_of(out)
        return
    if entries is None:
        yield replace(file_of(out), status="error", note="manifest unavailable")
        return
    prefix = f"{out.path}/" if out.path else ""
    for entry in entries:
        yield file_of(out, prefix + entry.relpath, entry.md5, in_directory=True)


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


def load_manifest(
    store: IndexStore, objects: ObjectStore | None, out: PointerOut, site_name: str | None
) -> Iterator[ManifestRow]:
    """A tracked directory's entries: kept in the index once, read from storage if not yet.

    Raises `ObjectMissing` naming the pointer and the site when the `.dir` object is absent
    (or there is no site to read it from),
    and `PointerError` when it is not a valid manifest.
    """
    if not store.has_manifest(out.md5):
        key = object_key("", out.md5, out.hash_name, is_dir=True)
        if objects is None:
            raise ObjectMissing(
                f"{out.pointer_path}: manifest {out.md5}.dir of {out.path} cannot be read: the "
                "dataset has no known storage site"
            )
        try:
            stream = iter_stream(objects.read(key))
            entries = iter_manifest(stream, f"{out.md5}.dir")
            store.put_manifest(out.md5, (ManifestRow(e.relpath, e.md5) for e in entries))
        except ObjectMissing:
            raise ObjectMissing(
                f"{out.pointer_path}: manifest {out.md5}.dir of {out.path} is missing from "
                f"storage site {site_name!r}"
            ) from None
    return store.iter_manifest(out.md5)
