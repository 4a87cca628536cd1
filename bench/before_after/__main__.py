"""Before/after a change: the download and ingest benchmarks, alternating, N runs each.

`.venv/bin/python -m bench.before_after --before DIR --after DIR [--runs 5]` — DIR is a
checkout (e.g. `git worktree add /tmp/before <commit>`). Each round runs the single-file
download benchmark and the webhook ingest benchmark in the `before` tree, then in the
`after` tree (the order flips every round, so a drift of the machine's load hits both
alike), and prints each figure's median and min-max per tree, and whether the medians
differ by less than the runs' own spread (the structure issue's criterion).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

# The figures taken from each benchmark's output: name -> (benchmark, how to read it).
STREAM = re.compile(r"^dshub stream\s+([\d.]+)\s+([\d.]+)", re.M)


def run(tree: Path, argv: list[str]) -> str:
    """One benchmark run in `tree`; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, "-m", *argv], cwd=tree, env=env, capture_output=True, text=True,
        timeout=1800, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {tree}:\n{result.stderr[-2000:]}")
    return result.stdout


def figures(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    """One round of both benchmarks in `tree`."""
    out: dict[str, float] = {}
    download = run(tree, ["bench.download", "--rounds", str(args.rounds), "--large-mb", "64"])
    match = STREAM.search(download)
    if match is None:
        raise SystemExit(f"no 'dshub stream' line in bench.download's output:\n{download}")
    out["download 1 MB, ms (lower is better)"] = float(match.group(1))
    out["download 64 MB, ms (lower is better)"] = float(match.group(2))
    ingest = run(tree, ["bench.webhook_ingest", "--duration", str(args.duration), "--repeat", "1",
                        "--rate-duration", "3"])  # fmt: skip
    results = json.loads(ingest.strip().splitlines()[-1])
    out["ingest, events/s (higher is better)"] = float(results["ingest"][0]["rps"])
    out["ingest p99, ms (lower is better)"] = float(results["ingest"][0]["p99_ms"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7, help="bench.download warm rounds")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = parser.parse_args()
    seen: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for number in range(args.runs):
        order = ("before", "after") if number % 2 == 0 else ("after", "before")
        for side in order:
            tree = args.before if side == "before" else args.after
            for name, value in figures(tree, args).items():
                seen[side].setdefault(name, []).append(value)
            print(f"round {number + 1} {side}: done", flush=True)
    print(f"\n{args.runs} alternating runs each; median (min-max)")
    print(f"{'figure':42} {'before':>22} {'after':>22}  medians within spread")
    for name in seen["before"]:
        before, after = seen["before"][name], seen["after"][name]
        spread = max(max(before) - min(before), max(after) - min(after))
        diff = abs(statistics.median(after) - statistics.median(before))
        cells = [f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" for v in (before, after)]
        verdict = "yes" if diff < spread else "NO"
        print(f"{name:42} {cells[0]:>22} {cells[1]:>22}  {verdict} (|d| {diff:.1f} < {spread:.1f})")
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
