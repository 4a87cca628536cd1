"""Reading `.dvc` pointer files (DVC 2 and 3) into the outputs whose bytes live in storage.

Well-formedness is DVC's own schema (`dvc.schema.COMPILED_SINGLE_STAGE_SCHEMA`, the one
`dvc` itself validates `.dvc` files with) plus what storage needs: every cached output has a
path and an md5. YAML is parsed with PyYAML's C loader because DVC's ruamel parser is too
slow for ten thousand pointers. (`indexer/pointers.py` is the service's pointer parser; the
two should converge.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

_MD5 = re.compile(r"^[0-9a-f]{32}(?:\.dir)?$")


class PointerFormatError(ValueError):
    """A pointer file is not well-formed; the message names the file and the problem."""


@dataclass(frozen=True)
class TrackedOutput:
    """One output of a pointer file whose bytes are kept in the dataset's storage."""

    pointer: str  # the .dvc file, repository-relative, '/'-separated
    path: str  # the tracked file or directory, repository-relative
    hash_name: str  # "md5" (DVC 3) or "md5-dos2unix" (DVC 2 legacy layout)
    oid: str  # md5, with ".dir" for a directory manifest
    size: int | None
    nfiles: int | None

    @property
    def is_dir(self) -> bool:
        """True when the output is a tracked directory (its oid names a `.dir` manifest)."""
        return self.oid.endswith(".dir")


def _loader() -> type[yaml.SafeLoader]:
    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


def parse_pointer(text: str, pointer: str) -> list[TrackedOutput]:
    """Parse the `.dvc` file `pointer` into its stored outputs, or raise `PointerFormatError`.

    Imported data (`dvc import`) and `cache: false` outputs are valid but yield nothing,
    because their bytes are not in this dataset's storage.
    """
    from dvc.schema import COMPILED_SINGLE_STAGE_SCHEMA
    from voluptuous import Invalid

    try:
        data: Any = yaml.load(text, Loader=_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PointerFormatError(f"{pointer}: not valid YAML{where}") from exc
    if not isinstance(data, dict):
        raise PointerFormatError(f"{pointer}: must be a YAML mapping with an `outs` list")
    try:
        COMPILED_SINGLE_STAGE_SCHEMA(data)
    except Invalid as exc:
        raise PointerFormatError(f"{pointer}: {exc}") from exc
    outs = data.get("outs")
    if not outs:
        raise PointerFormatError(f"{pointer}: has no `outs`")
    is_import = any(isinstance(dep, dict) and "repo" in dep for dep in data.get("deps") or [])
    base = PurePosixPath(pointer).parent
    result: list[TrackedOutput] = []
    for index, out in enumerate(outs):
        tracked = _output(out, pointer, index, base)
        if tracked is not None and not is_import:
            result.append(tracked)
    return result


def _output(
    out: dict[str, Any], pointer: str, index: int, base: PurePosixPath
) -> TrackedOutput | None:
    where = f"{pointer}: outs[{index}]"
    path = out.get("path")
    if not isinstance(path, str) or not path:
        raise PointerFormatError(f"{where} has no path")
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise PointerFormatError(f"{where} path {path!r} leaves the repository")
    if out.get("files") is not None:
        raise PointerFormatError(
            f"{where} uses cloud versioning (`files:`), which dshub does not support"
        )
    if out.get("remote"):
        raise PointerFormatError(
            f"{where} names its own remote {out['remote']!r}; a dataset keeps all data in its own storage"
        )
    if out.get("cache") is False:
        return None
    md5 = out.get("md5")
    if not isinstance(md5, str) or not _MD5.match(md5):
        raise PointerFormatError(
            f"{where} ({path}) has no valid md5; run `dvc commit` (or `dvc add`) and commit the pointer"
        )
    hash_field = out.get("hash")
    if hash_field not in (None, "md5"):
        raise PointerFormatError(f"{where} has unknown hash {hash_field!r}")
    size, nfiles = out.get("size"), out.get("nfiles")
    return TrackedOutput(
        pointer=pointer,
        path=str(base / relative) if str(base) != "." else str(relative),
        hash_name="md5" if hash_field == "md5" else "md5-dos2unix",
        oid=md5,
        size=size if isinstance(size, int) else None,
        nfiles=nfiles if isinstance(nfiles, int) else None,
    )
