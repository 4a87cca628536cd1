"""DVC remote object keys and the content check an uploaded object must pass.

A DVC remote stores each object under its id: `files/md5/<2 hex>/<30 hex>` (DVC 3, the
plain md5 of the bytes) or `<2 hex>/<30 hex>` (DVC 2's layout, which DVC 3 still uses for
pointers without `hash:`; the id is `md5-dos2unix`: text files hashed after CRLF→LF), with a
`.dir` suffix for a directory manifest, whose id is the same hash of the manifest's bytes.
Only exactly that shape, lowercase, is a key; anything else never reaches a storage site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_KEY = re.compile(r"(files/md5/)?([0-9a-f]{2})/([0-9a-f]{30})(\.dir)?")


@dataclass(frozen=True)
class ObjectKey:
    """A valid remote key: `key` as stored, the object id `md5`, and how it is hashed."""

    key: str
    md5: str
    is_dir: bool
    legacy: bool

    @property
    def hash_name(self) -> str:
        """dvc-data's name of the hash the id is (`md5`, or `md5-dos2unix` for DVC 2)."""
        return "md5-dos2unix" if self.legacy else "md5"

    @property
    def oid(self) -> str:
        """The id DVC writes in pointers (`<md5>` or `<md5>.dir`)."""
        return self.md5 + (".dir" if self.is_dir else "")


def parse_object_key(key: str) -> ObjectKey | None:
    """The object a remote key names, or None when `key` is not exactly a DVC object key."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    layout, head, tail, suffix = match.groups()
    return ObjectKey(key, head + tail, suffix is not None, layout is None)


def content_id(path: Path, hash_name: str) -> str:
    """The id DVC gives the file at `path` under `hash_name` (dvc-data's own hashing, so the
    DVC 2 text rule — chunked CRLF→LF on blocks that look like text — is exactly DVC's)."""
    from dvc_data.hashfile.hash import file_md5

    return str(file_md5(str(path), name=hash_name))
