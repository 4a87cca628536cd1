"""Run one fuzz target under atheris: `python -m tests.fuzz.atheris_main TARGET [libFuzzer flags]`.

The modules under test are imported with atheris's instrumentation (coverage-guided), the
corpus starts from the target's seeds, and libFuzzer's flags bound the run (`-runs=N`,
`-max_total_time=S`). A broken promise or an unexpected exception stops the run with
atheris's report and a non-zero exit; the last line is always `fuzz: <target> <runs> runs`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["indexer", "webhook_service.api_files"]):
    from tests.fuzz.targets import SEEDS, TARGETS, run_one

RUNS = [0]
KNOWN: dict[str, int] = {}


def report() -> None:
    """The last lines of every run: known defects met, then the count of inputs tried."""
    for defect, count in sorted(KNOWN.items()):
        print(f"fuzz: KNOWN DEFECT (fixed elsewhere: {defect}): {count} inputs", flush=True)
    print(f"fuzz: {sys.argv[1]} {RUNS[0]} runs", flush=True)


def main() -> None:
    name, flags = sys.argv[1], sys.argv[2:]
    # libFuzzer leaves with _exit after `-runs`: report from inside on the last run as well.
    flags_runs = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("-runs=")), -1)
    if name not in TARGETS:
        raise SystemExit(f"unknown target {name!r}; one of {', '.join(TARGETS)}")

    def one(data: bytes) -> None:
        RUNS[0] += 1
        if RUNS[0] % 1000 == 0 or flags_runs == RUNS[0]:
            report()
        run_one(name, data, KNOWN)

    corpus = Path(tempfile.mkdtemp(prefix=f"dshub-fuzz-{name}-"))
    for number, seed in enumerate(SEEDS.get(name, [])):
        (corpus / f"seed-{number}").write_bytes(seed)
    import atexit

    atexit.register(report)
    atheris.Setup([sys.argv[0], *flags, str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
