"""Bounded coverage-guided fuzzing (atheris) of the parsers: a few seconds per target.

Each target (tests/fuzz/targets.py) runs in its own process (libFuzzer owns the process and
exits when done); longer runs: `python -m bench.fuzz`. A crash fails the test with atheris's
report, which names the input; known defects of code owned elsewhere are printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("DSHUB_FUZZ_SECONDS", "4"))


def run_target(name: str, seconds: int, workdir: Path, runs: int = 0) -> tuple[int, str]:
    """Run one target for `seconds` (or `runs` inputs); (inputs tried, full output)."""
    flags = [f"-max_total_time={seconds}", f"-artifact_prefix={workdir}/", "-timeout=10"]
    if runs:
        flags.append(f"-runs={runs}")
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_main", name, *flags],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(
            f"fuzz target {name} failed (exit {result.returncode}):\n{output[-4000:]}"
        )
    done = re.findall(r"Done (\d+) runs", output) or re.findall(rf"fuzz: {name} (\d+) runs", output)
    assert done, output[-2000:]
    return int(done[-1]), output


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_keeps_its_promise_under_fuzzing(name: str, tmp_path: Path) -> None:
    tried, output = run_target(name, SECONDS, tmp_path)
    known: dict[str, str] = {}
    for defect, count in re.findall(r"fuzz: KNOWN DEFECT \((.*)\): (\d+) inputs", output):
        known[defect] = count  # the last report of a run has the final count
    for defect, count in known.items():
        print(f"KNOWN DEFECT ({defect}): {count} inputs")
    print(f"{name}: {tried} inputs in {SECONDS} s, no broken promise")
    assert tried >= 20, f"only {tried} inputs ran: the target is too slow to fuzz"
    assert not list(tmp_path.glob("crash-*"))
