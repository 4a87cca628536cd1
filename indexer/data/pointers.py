"""DVC pointers: `.dvc` files, `dvc.lock` stage outputs and `.dir` manifests, parsed from text.

The indexer reads pointer files through GitLab's API, so there is no checkout and no
`dvc.repo.Repo`: `dvc.dvcfile.load_file` and `dvc.output.Output` both need a repo object (and
a filesystem to stat), so we parse with DVC's own YAML loader (`dvc.utils.serialize.parse_yaml`)
and validate with DVC's own schemas (`dvc.schema.COMPILED_SINGLE_STAGE_SCHEMA` /
`COMPILED_LOCKFILE_SCHEMA`), then apply DVC's rules on top (`hash` absent → legacy
`md5-dos2unix` and the legacy remote layout; `deps[].repo` → an import whose data is not ours).
Hashes come back as `dvc_data.hashfile.hash_info.HashInfo`.

`.dir` manifests are streamed (`iter_manifest`) instead of going through
`dvc_data.hashfile.tree.Tree.from_list`, which needs the whole list plus a trie in memory and
validates nothing about paths; a 100,000-entry manifest is parsed entry by entry with a small
constant buffer.
"""

from __future__ import annotations

import codecs
import functools
import json
import mimetypes
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from dvc.schema import COMPILED_LOCKFILE_SCHEMA, COMPILED_SINGLE_STAGE_SCHEMA
from dvc.utils.serialize import parse_yaml
from dvc.utils.serialize._yaml import YAMLFileCorruptedError
from dvc_data.hashfile.hash_info import HashInfo
from voluptuous import Invalid

from indexer.errors import DshubError

LEGACY_HASH = "md5-dos2unix"
"""DVC's name for the 2.x hash (CRLF→LF before md5 for text files); its objects use the legacy layout."""

HASH_NAMES = ("md5", LEGACY_HASH)
_MD5 = re.compile(r"[0-9a-f]{32}")
_MANIFEST_CHUNK = 64 * 1024
_MAX_ENTRY = 1024 * 1024  # an entry this long is not a manifest entry
_WS = re.compile(r"[ \t\r\n]*")


class PointerError(DshubError):
    """A pointer file or manifest that cannot be used; the message names the file and the problem."""

    status = 422
    code = "invalid_pointer"
    exit_code = 2


@dataclass(frozen=True, slots=True)
class PointerOut:
    """One output a pointer tracks: a file, or a directory whose entries are in a `.dir` manifest.

    `path` is repository-relative (`/`-separated, normalised); `md5` is the bare 32-hex digest
    (no `.dir` suffix). `imported` outputs come from `dvc import`: their data lives in another
    repository's storage (`import_url`), so they are listed but never resolved in our site.
    """

    path: str
    md5: str
    hash_name: str
    is_dir: bool
    size: int | None
    nfiles: int | None
    pointer_path: str
    imported: bool = False
    import_url: str | None = None
    remote: str | None = None
    cloud_versioned: bool = False

    @property
    def oid(self) -> str:
        """The object id DVC stores this output under (`<md5>.dir` for a directory)."""
        return f"{self.md5}.dir" if self.is_dir else self.md5

    @property
    def hash_info(self) -> HashInfo:
        """DVC's own view of this output's hash."""
        return HashInfo(self.hash_name, self.oid)

    @property
    def stored_elsewhere(self) -> str | None:
        """Why this output's bytes are not in the dataset's own storage site, or None if they are.

        DVC keeps an import's data in the source repository's remote, and an output with its
        own `remote:` (valid DVC 3) in that remote; neither is ever looked up in our site.
        """
        if self.imported:
            return f"imported from {self.import_url}" if self.import_url else "imported"
        if self.remote:
            return f"kept in its own DVC remote {self.remote!r}, not in the dataset's storage site"
        return None

    @property
    def legacy(self) -> bool:
        """True for DVC 2.x outputs (no `hash:` field): legacy hash and remote layout."""
        return self.hash_name == LEGACY_HASH


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file of a tracked directory: `relpath` relative to the directory, and its md5."""

    relpath: str
    md5: str


def is_pointer_path(path: str) -> bool:
    """True for repository paths the indexer reads as pointers (`*.dvc` files and `dvc.lock`)."""
    name = posixpath.basename(path)
    return (name.endswith(".dvc") and name != ".dvc") or name == "dvc.lock"


def parse_pointer(text: str | bytes, pointer_path: str) -> list[PointerOut]:
    """Parse a pointer file by its name: `dvc.lock` stage outputs, else a `.dvc` file.

    Raises `PointerError` (naming `pointer_path`) for anything that is not a usable pointer.
    """
    if posixpath.basename(pointer_path) == "dvc.lock":
        return parse_dvc_lock(text, pointer_path)
    return parse_dvc_file(text, pointer_path)


def parse_dvc_file(text: str | bytes, pointer_path: str) -> list[PointerOut]:
    """Parse a DVC 2 or 3 `.dvc` file into its outputs, by DVC's rules.

    Output paths are relative to `wdir`, itself relative to the pointer's folder; `cache: false`
    outputs are in no remote (git holds them, if anything), so they are not returned.
    """
    data = _load(text, pointer_path, COMPILED_SINGLE_STAGE_SCHEMA)
    base = _join(posixpath.dirname(pointer_path), data.get("wdir") or ".", pointer_path, "wdir")
    import_url = _import_url(data.get("deps"))
    outs = data.get("outs") or []
    if not outs:
        raise PointerError(f"{pointer_path}: no `outs` to track")
    parsed = (_out(out, base, pointer_path, index, import_url) for index, out in enumerate(outs))
    return [out for out in parsed if out is not None]


def parse_dvc_lock(text: str | bytes, lock_path: str) -> list[PointerOut]:
    """Parse the stage outputs recorded in a `dvc.lock` (schema 2.0); may be empty."""
    data = _load(text, lock_path, COMPILED_LOCKFILE_SCHEMA)
    base = posixpath.dirname(lock_path)
    result: list[PointerOut] = []
    for stage in (data.get("stages") or {}).values():
        for index, out in enumerate(stage.get("outs") or []):
            parsed = _out(out, base, lock_path, index, None)
            if parsed is not None:
                result.append(parsed)
    return result


def iter_manifest(
    stream: IO[bytes], manifest_name: str, *, chunk_size: int = _MANIFEST_CHUNK
) -> Iterator[ManifestEntry]:
    """Stream the entries of a `.dir` manifest (JSON list of `{md5, relpath}`) from `stream`.

    Memory stays bounded by one chunk plus one entry whatever the manifest's length. Raises
    `PointerError` naming `manifest_name` on malformed JSON, a bad md5 or an unsafe relpath.
    """
    reader = _ChunkReader(stream, manifest_name, chunk_size)
    decoder = json.JSONDecoder()
    reader.expect_char("[", "a manifest must be a JSON list")
    if reader.peek() == "]":
        reader.pos += 1
    else:
        index = 0
        while True:
            reader.peek()
            while True:
                try:
                    obj, end = decoder.raw_decode(reader.buffer, reader.pos)
                    break
                except json.JSONDecodeError as exc:
                    if len(reader.buffer) - reader.pos > _MAX_ENTRY or not reader.more():
                        raise PointerError(
                            f"{manifest_name}: invalid JSON at entry {index} ({exc.msg})"
                        ) from None
            reader.pos = end
            yield _manifest_entry(obj, manifest_name, index)
            index += 1
            char = reader.peek()
            reader.pos += 1
            if char == "]":
                break
            if char != ",":
                raise PointerError(f"{manifest_name}: expected `,` or `]` after entry {index - 1}")
    reader.expect_end()


class _ChunkReader:
    """A text window over a byte stream, refilled on demand (incremental UTF-8 decoding)."""

    def __init__(self, stream: IO[bytes], name: str, chunk_size: int) -> None:
        self.stream, self.name, self.chunk_size = stream, name, chunk_size
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buffer, self.pos, self.eof = "", 0, False

    def more(self) -> bool:
        """Append the next chunk; False at end of stream."""
        while not self.eof:
            raw = self.stream.read(self.chunk_size)
            self.eof = not raw
            try:
                text = self.decoder.decode(raw, final=self.eof)
            except UnicodeDecodeError as exc:
                raise PointerError(f"{self.name}: not UTF-8 ({exc.reason})") from None
            if text:
                self.buffer = self.buffer[self.pos :] + text
                self.pos = 0
                return True
        return False

    def peek(self) -> str:
        """The next non-whitespace character (not consumed); error at end of stream."""
        while True:
            self.pos = _WS.match(self.buffer, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.more():
                raise PointerError(f"{self.name}: truncated manifest (unexpected end)")

    def expect_char(self, char: str, problem: str) -> None:
        if self.peek() != char:
            raise PointerError(f"{self.name}: {problem}")
        self.pos += 1

    def expect_end(self) -> None:
        while True:
            if self.buffer[self.pos :].strip(" \t\r\n"):
                raise PointerError(f"{self.name}: data after the end of the manifest")
            self.pos = len(self.buffer)
            if not self.more():
                return


def object_key(prefix: str, md5: str, hash_name: str, is_dir: bool) -> str:
    """The storage key of an object: `<prefix>/files/md5/xx/yyyy` (DVC 3) or `<prefix>/xx/yyyy`.

    Legacy (`md5-dos2unix`) objects, including entries of legacy directories, use the 2.x
    layout at the remote root. Directory manifests get the `.dir` suffix.
    """
    if hash_name not in HASH_NAMES:
        raise PointerError(f"unknown hash {hash_name!r} (expected md5 or {LEGACY_HASH})")
    if not _MD5.fullmatch(md5):
        raise PointerError(f"invalid md5 {md5!r} (expected 32 lowercase hex digits)")
    parts = [prefix.strip("/")] if prefix.strip("/") else []
    if hash_name == "md5":
        parts += ["files", "md5"]
    parts += [md5[:2], md5[2:] + (".dir" if is_dir else "")]
    return "/".join(parts)


_EXTRA_TYPES = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".jp2": "image/jp2",
    ".dng": "image/x-adobe-dng",
    ".exr": "image/x-exr",
    ".nii": "application/x-nifti",
    ".nii.gz": "application/x-nifti+gzip",
    ".nrrd": "application/x-nrrd",
    ".mha": "application/x-metaimage",
    ".mhd": "application/x-metaimage",
    ".dcm": "application/dicom",
    ".npy": "application/x-npy",
    ".npz": "application/x-npz",
    ".parquet": "application/vnd.apache.parquet",
    ".h5": "application/x-hdf5",
    ".hdf5": "application/x-hdf5",
    ".pt": "application/x-pytorch",
    ".pth": "application/x-pytorch",
    ".ckpt": "application/octet-stream",
    ".onnx": "application/x-onnx",
    ".safetensors": "application/x-safetensors",
    ".pkl": "application/x-pickle",
    ".tfrecord": "application/x-tfrecord",
    ".jsonl": "application/jsonl",
    ".csv": "text/csv",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".md": "text/markdown",
}
# Only Python's built-in table: /etc/mime.types differs between machines.
_MIMETYPES = mimetypes.MimeTypes(filenames=())
DEFAULT_MEDIA_TYPE = "application/octet-stream"


def media_type(path: str) -> str:
    """The media type for a file path, from its extension (case-insensitive); octet-stream if unknown."""
    name = posixpath.basename(path).lower()
    for suffix in _MULTI_SUFFIXES:
        if name.endswith(suffix):
            return _EXTRA_TYPES[suffix]
    dot = name.rfind(".")
    ext = name[dot:] if dot > 0 else ""
    if ext in _MIMETYPES.encodings_map:  # archive.tar.gz: the type is under the encoding
        guessed, _ = _MIMETYPES.guess_type(name, strict=False)
        return guessed or DEFAULT_MEDIA_TYPE
    return _type_of_extension(ext)


_MULTI_SUFFIXES = tuple(s for s in _EXTRA_TYPES if s.count(".") > 1)


@functools.lru_cache(maxsize=1024)
def _type_of_extension(ext: str) -> str:
    if not ext:
        return DEFAULT_MEDIA_TYPE
    if ext in _EXTRA_TYPES:
        return _EXTRA_TYPES[ext]
    guessed, _ = _MIMETYPES.guess_type("x" + ext, strict=False)
    return guessed or DEFAULT_MEDIA_TYPE


# ------------------------------------------------------------------------------ internals


def _load(text: str | bytes, path: str, schema: Any) -> dict[str, Any]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PointerError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        data = parse_yaml(text, path)
    except YAMLFileCorruptedError as exc:
        cause = exc.__cause__
        detail = str(cause).splitlines()[0] if cause else "corrupted"
        raise PointerError(f"{path}: invalid YAML ({detail})") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise PointerError(f"{path}: invalid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise PointerError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    try:
        validated: dict[str, Any] = schema(data)
    except Invalid as exc:
        raise PointerError(f"{path}: does not match DVC's schema ({exc})") from None
    except (TypeError, ValueError) as exc:
        raise PointerError(f"{path}: does not match DVC's schema ({exc})") from None
    return validated


def _import_url(deps: Any) -> str | None:
    for dep in deps or []:
        repo = dep.get("repo") if isinstance(dep, dict) else None
        if isinstance(repo, dict):
            return str(repo.get("url") or "")
    return None


def _out(
    out: dict[str, Any], base: str, pointer_path: str, index: int, import_url: str | None
) -> PointerOut | None:
    where = f"{pointer_path}: outs[{index}]"
    raw_path = out.get("path")
    if not isinstance(raw_path, str) or not raw_path:
        raise PointerError(f"{where}: missing `path`")
    path = _join(base, raw_path, pointer_path, "path")
    if out.get("cache") is False:
        return None
    md5_value = out.get("md5")
    if not md5_value:
        raise PointerError(
            f"{where} ({raw_path}): missing md5; run `dvc commit` (or `dvc add`) and commit "
            "the pointer"
        )
    hash_name = out.get("hash") or LEGACY_HASH
    if hash_name not in HASH_NAMES:
        raise PointerError(f"{where} ({raw_path}): unknown hash {hash_name!r}")
    md5 = str(md5_value)
    is_dir = md5.endswith(".dir")
    digest = md5[:-4] if is_dir else md5
    if not _MD5.fullmatch(digest):
        raise PointerError(f"{where} ({raw_path}): invalid md5 {md5!r}")
    size, nfiles = out.get("size"), out.get("nfiles")
    if (size is not None and size < 0) or (nfiles is not None and nfiles < 0):
        raise PointerError(f"{where} ({raw_path}): negative size or nfiles")
    remote = out.get("remote")
    return PointerOut(
        path=path,
        md5=digest,
        hash_name=hash_name,
        is_dir=is_dir,
        size=size,
        nfiles=nfiles,
        pointer_path=pointer_path,
        imported=import_url is not None,
        import_url=import_url or None,
        remote=str(remote) if remote else None,
        cloud_versioned=out.get("files") is not None,
    )


def _join(base: str, rel: str, pointer_path: str, what: str) -> str:
    """Join a pointer-relative path onto its directory, refusing absolute and `..` paths."""
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", rel) or "\x00" in rel:
        raise PointerError(f"{pointer_path}: absolute {what} {rel!r} is not allowed")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise PointerError(f"{pointer_path}: {what} {rel!r} leaves the pointer's directory (`..`)")
    joined = posixpath.normpath(posixpath.join(base, *parts)) if base else posixpath.normpath(rel)
    return "" if joined == "." else joined


def _manifest_entry(obj: Any, manifest_name: str, index: int) -> ManifestEntry:
    where = f"{manifest_name}: entry {index}"
    if not isinstance(obj, dict):
        raise PointerError(f"{where}: expected an object with md5 and relpath")
    relpath, md5 = obj.get("relpath"), obj.get("md5")
    if not isinstance(relpath, str) or not relpath:
        raise PointerError(f"{where}: missing relpath")
    if not isinstance(md5, str) or not _MD5.fullmatch(md5.lower()):
        raise PointerError(f"{where} ({relpath}): missing or invalid md5")
    if relpath.startswith("/") or "\x00" in relpath or ".." in relpath.split("/"):
        raise PointerError(f"{where}: unsafe relpath {relpath!r}")
    return ManifestEntry(relpath=relpath, md5=md5.lower())
