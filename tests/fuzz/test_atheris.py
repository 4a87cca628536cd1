"""Bounded coverage-guided fuzzing (atheris) of the parsers: a few seconds per target.

Each target (tests/fuzz/targets.py) runs in its own process (libFuzzer owns the process and
exits when done); longer runs: `python -m bench.fuzz`. A crash fails the test with atheris's
report, which names the input; known defects of code owned elsewhere are printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.runner import SECONDS, known_defects, run_target
from tests.fuzz.targets import TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_keeps_its_promise_under_fuzzing(name: str, tmp_path: Path) -> None:
    tried, output = run_target(name, SECONDS, tmp_path)
    for defect, count in known_defects(output).items():
        print(f"KNOWN DEFECT ({defect}): {count} inputs")
    print(f"{name}: {tried} inputs in {SECONDS} s, no broken promise")
    assert tried >= 20, f"only {tried} inputs ran: the target is too slow to fuzz"
    assert not list(tmp_path.glob("crash-*"))
