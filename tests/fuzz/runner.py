"""Running an atheris target in its own process (libFuzzer owns the process it runs in)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


def known_defects(output: str) -> dict[str, int]:
    """Known defects a run met, with the count of its last report."""
    known: dict[str, int] = {}
    for defect, count in re.findall(r"fuzz: KNOWN DEFECT \((.*)\): (\d+) inputs", output):
        known[defect] = int(count)
    return known
