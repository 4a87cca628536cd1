"""Longer fuzzing runs than the test command's: `.venv/bin/python -m bench.fuzz`.

Options: `--seconds 60` per atheris target (pointers, manifests, paths and refs, object keys,
Range), `--examples 400` per hypothesis fuzzer over a real gunicorn (raw HTTP front: request
lines, header lines, chunked framing; webhook batches with a bad neighbour), `--only NAME`.

Prints, per fuzzer: inputs tried, inputs per second, broken promises (a failure stops that
fuzzer and is printed with its input), and the known defects met (issue 12 defects fixed on
another branch). The test command runs the same fuzzers for a few seconds each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.runner import ROOT, known_defects, run_target
from tests.fuzz.targets import TARGETS

HYPOTHESIS = {
    "raw_http": "tests/contract/test_raw_http.py",
    "webhook_batches": "tests/receiver/test_fuzz_batches.py",
}


def _atheris(name: str, seconds: int) -> tuple[int, int, dict[str, int], float]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dshub-bench-fuzz-") as workdir:
        try:
            tried, output = run_target(name, seconds, Path(workdir))
            failures = 0
        except AssertionError as exc:
            print(str(exc)[-3000:])
            tried, output, failures = 0, str(exc), 1
    return tried, failures, known_defects(output), time.monotonic() - started


def _hypothesis(name: str, examples: int) -> tuple[int, int, dict[str, int], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", HYPOTHESIS[name]],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DSHUB_FUZZ_EXAMPLES": str(examples)},
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    failed = re.search(r"(\d+) failed", output)
    failures = int(failed.group(1)) if failed else 0
    if failures:
        print(output[-3000:])
    known: dict[str, int] = {}
    for defect in re.findall(r"KNOWN DEFECT \(fixed elsewhere: (.*?)\):", output):
        known[defect] = known.get(defect, 0) + 1
    tried = 0
    for stats in re.findall(r"\{'(?:requests|batches)'.*?\}", output):
        numbers = dict(re.findall(r"'(\w+)': (\d+)", stats))
        tried += int(numbers.get("requests", 0)) + int(numbers.get("deliveries", 0))
    return tried, failures, known, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--only", choices=[*TARGETS, *HYPOTHESIS])
    args = parser.parse_args()
    rows = []
    for name in TARGETS:
        if args.only in (None, name):
            rows.append(("atheris", name, *_atheris(name, args.seconds)))
    for name in HYPOTHESIS:
        if args.only in (None, name):
            rows.append(("hypothesis", name, *_hypothesis(name, args.examples)))
    print(
        f"{'engine':10} {'fuzzer':16} {'inputs':>9} {'per s':>8} {'broken':>6}  known defects met"
    )
    for engine, name, tried, failures, known, seconds in rows:
        met = "; ".join(f"{count} x {defect}" for defect, count in known.items()) or "-"
        rate = tried / seconds if seconds else 0.0
        print(f"{engine:10} {name:16} {tried:9d} {rate:8.0f} {failures:6d}  {met}")
    if any(row[3] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
