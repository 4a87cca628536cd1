"""Index a tag whose tracked directory has N entries: `.venv/bin/python -m bench.index_manifest`.

Options: `--entries 100000` (default), `--backend sqlite|postgres|both` (default both).

Each phase runs in its own child process so its peak RSS (ru_maxrss) is its own:

- baseline: parse the `.dir` manifest JSON alone with `json.load` (what a naive indexer does);
- streamed parse alone (`indexer.data.pointers.iter_manifest`);
- index: parse the `.dvc` pointer, stream the manifest into the store (`put_manifest`) and
  replace the tag's files from the stored manifest (`replace_ref_files(files_of_out(...))`),
  i.e. everything the sync job does after fetching the bytes.

Prints entries/s and peak RSS per phase and the ratio index rate / baseline parse rate.
Targets: >= 20,000 entries/s, RSS <= 300 MB. PostgreSQL: DSHUB_TEST_POSTGRES_URL, the server
on 127.0.0.1:5432, or a private one started like the tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIR_MD5 = "15de2dcc4f87e5ba75514d2ca6352ebe"
TARGET_RATE = 20_000
TARGET_RSS_MB = 300


def write_manifest(path: Path, entries: int) -> None:
    """A `.dir` manifest in DVC's exact format (sorted by relpath, default separators).

    Written entry by entry, already in relpath order, so this process stays small: Linux
    keeps a process's peak RSS across fork and exec, and the phases' children would
    inherit it.
    """
    with path.open("w") as out:
        out.write("[")
        first = True
        for cls in range(50):
            for i in range(cls, entries, 50):
                entry = {"md5": f"{i:032x}", "relpath": f"class_{cls:02d}/scan_{i:07d}.tif"}
                out.write(("" if first else ", ") + json.dumps(entry))
                first = False
        out.write("]")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, manifest: Path, url: str) -> dict[str, float]:
    """Run one phase in this process and return its figures."""
    if mode != "json":  # the baseline does not pay for importing DVC
        from indexer.data.pointers import iter_manifest, parse_dvc_file
        from indexer.data.tracked_files import files_of_out
        from indexer.store import Dataset, RefInfo, open_index
    imports_mb = _peak_mb()
    count = 0
    start = time.perf_counter()
    if mode == "json":
        with manifest.open("rb") as stream:
            count = len(json.load(stream))
    elif mode == "stream":
        with manifest.open("rb") as stream:
            count = sum(1 for _ in iter_manifest(stream, manifest.name))
    else:
        store = open_index(url)
        store.upsert_dataset(
            Dataset(1, "Bench", "bench/big", "bench", "public", default_branch="main")
        )
        pointer = f"outs:\n- md5: {DIR_MD5}.dir\n  nfiles: 1\n  hash: md5\n  path: scans\n"
        start = time.perf_counter()
        (out,) = parse_dvc_file(pointer, "scans.dvc")
        with manifest.open("rb") as stream:
            store.put_manifest(out.md5, iter_manifest(stream, out.oid))
        ref = store.replace_ref_files(
            1, RefInfo("v1", "tag", "a" * 40), files_of_out(out, store.iter_manifest(out.md5))
        )
        count = ref.file_count
        store.close()
    elapsed = time.perf_counter() - start
    return {
        "entries": count,
        "seconds": elapsed,
        "rate": count / elapsed,
        "peak_mb": _peak_mb(),
        "imports_mb": imports_mb,
    }


def run_child(mode: str, manifest: Path, url: str = "") -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.index_manifest",
            "--child",
            mode,
            "--manifest",
            str(manifest),
            "--url",
            url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.manifest, args.url)))
        return

    print(f"machine: {platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="dshub-bench-manifest-") as tmp:
        work = Path(tmp)
        manifest = work / "manifest.dir"
        write_manifest(manifest, args.entries)
        size_mb = manifest.stat().st_size / 1e6
        print(f"manifest: {args.entries:,} entries, {size_mb:.1f} MB")
        baseline = run_child("json", manifest)
        streamed = run_child("stream", manifest)
        rows = [
            ("parse alone: json.load (baseline)", baseline),
            ("parse alone: iter_manifest (streamed)", streamed),
        ]
        backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
        for backend in backends:
            with contextlib.ExitStack() as stack:
                if backend == "sqlite":
                    url = f"sqlite:///{work}/index.sqlite3"
                else:
                    from bench.index_manifest.postgres import postgres_database

                    url = stack.enter_context(postgres_database(work))
                rows.append((f"index tag ({backend})", run_child("index", manifest, url)))
        print(
            f"{'phase':40} {'entries/s':>10} {'seconds':>8} {'peak RSS':>9} "
            f"{'(imports)':>10} {'vs baseline':>11}"
        )
        for name, figures in rows:
            ratio = figures["rate"] / baseline["rate"]
            print(
                f"{name:40} {figures['rate']:>10,.0f} {figures['seconds']:>8.2f} "
                f"{figures['peak_mb']:>7.0f}MB {figures['imports_mb']:>8.0f}MB {ratio:>10.3f}x"
            )
        for name, figures in rows[2:]:
            ok_rate = figures["rate"] >= TARGET_RATE
            ok_rss = figures["peak_mb"] <= TARGET_RSS_MB
            print(
                f"{name}: target >= {TARGET_RATE:,} entries/s {'met' if ok_rate else 'MISSED'}, "
                f"RSS <= {TARGET_RSS_MB} MB {'met' if ok_rss else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
