"""The soak: `.venv/bin/python -m bench.reliability.soak [--minutes 10] [--seed 1]`.

Mixed load on loopback for `--minutes` against the whole system (`bench.reliability.system`:
gunicorn with deploy/gunicorn.conf.py, `dshub worker` x2, private Redis and PostgreSQL, moto
S3, the GitLab sandbox in a subprocess): webhooks at `--rate` per second (GitLab push
deliveries replayed for the datasets' real heads, plus the deliveries the sandbox makes for
real commits and uploads), searches, tree listings, single-file downloads (bytes checked)
and uploads through `dshub.upload` (upload sessions). Then the convergence check
(`bench.reliability.checks`). Prints per route the error rate and p99, the RSS of every
dshub process (drift after the warm-up), the journal backlog and queue over time, the
convergence figures, and each promise with PASS or FAIL; exits 1 when one is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.reliability.checks import Convergence, check
from bench.reliability.load import Load, Rates
from bench.reliability.report import RouteFigures, Sampler, route_table, routes
from bench.reliability.system import System
from bench.reliability.world import World

RSS_DRIFT_LIMIT = 0.10
WEB_RSS_BUDGET_MB = 250.0  # docs: a gunicorn worker stays under 250 MB in every benchmark


def promises(
    figures: list[RouteFigures],
    sampler: Sampler,
    warm_up: float,
    convergence: Convergence,
    webhook_rate: tuple[float, float],
) -> list[tuple[str, bool, str]]:
    """(promise, kept, figure) for the soak."""
    result = []
    for f in figures:
        result.append(
            (f"{f.route}: every request answered 2xx", f.errors == 0, f"{f.errors} of {f.requests}")
        )
    achieved, wanted = webhook_rate
    result.append(
        (
            "webhooks arrived at >= 95 % of the rate asked",
            achieved >= 0.95 * wanted,
            f"{achieved:.0f}/s of {wanted:.0f}/s",
        )
    )
    for name, (_first, _last, drift) in sorted(sampler.drift(warm_up).items()):
        result.append(
            (
                f"RSS of {name} drifts < 10 % after the warm-up",
                drift < RSS_DRIFT_LIMIT,
                f"{drift:+.1%}",
            )
        )
    for name, (_first, last, _drift) in sorted(sampler.drift(warm_up).items()):
        if name.startswith("gunicorn-worker"):
            result.append(
                (
                    f"RSS of {name} stays under {WEB_RSS_BUDGET_MB:.0f} MB",
                    last < WEB_RSS_BUDGET_MB,
                    f"{last:.0f} MB at the end",
                )
            )
    journals = [j for _, j, _ in sampler.backlog if j is not None]
    result.append(
        (
            "the journal backlog drains (0 once the load stops)",
            convergence.settle_seconds < 120,
            f"peak {max(journals, default=0)}, drained in {convergence.settle_seconds:.0f} s",
        )
    )
    result.append(
        (
            "index == GitLab truth after reconcile",
            not convergence.lost_after,
            f"{len(convergence.lost_after)} differences ({len(convergence.drift_before)} before reconcile)",
        )
    )
    result.append(
        (
            "no object lost or corrupted",
            not (convergence.objects_lost or convergence.objects_corrupted),
            f"{convergence.objects_checked} re-hashed, {len(convergence.objects_lost)} lost, {len(convergence.objects_corrupted)} corrupted",
        )
    )
    result.append(
        (
            "no dangling pointer",
            not convergence.dangling,
            f"{convergence.pointers_checked} pointers, {len(convergence.dangling)} dangling",
        )
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability.soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="webhook deliveries per second")
    parser.add_argument("--datasets", type=int, default=10)
    args = parser.parse_args(argv)
    duration = args.minutes * 60
    warm_up = 120.0 if duration >= 600 else duration * 0.2
    work = Path(tempfile.mkdtemp(prefix="dshub-soak-"))
    system = System(work / "system")
    load_at_start = os.getloadavg()
    started = time.monotonic()
    try:
        system.start()
        world = World(system, args.seed)
        world.create(args.datasets)
        for project in world.datasets:
            world.upload_files(project, [20_000, 50_000], work / "uploads")
        ready = time.monotonic() - started
        # Real commits and uploads make their own deliveries (a push and a repository update
        # each): the replayed ones fill up to the rate.
        rates = Rates(webhooks=args.rate)
        real = 2 * (rates.commits + rates.uploads)
        rates.webhooks = max(args.rate - real, 0.0)
        sampler = Sampler(system, interval=5.0 if duration >= 300 else 2.0).start()
        deliveries_before = system.delivery_count()
        load = Load(system, world, rates, args.seed, work / "uploads").start()
        time.sleep(duration)
        load.stop()
        real_made = (system.delivery_count() - deliveries_before) / duration
        time.sleep(sampler.interval)
        sampler.stop()
        convergence = check(system, world)
    finally:
        system.stop()
    run = Run(args, system, world, load, sampler, convergence, work)
    run.ready, run.warm_up, run.duration, run.real_made = ready, warm_up, duration, real_made
    run.load_at_start = load_at_start
    return run.report()


@dataclass
class Run:
    """Everything one soak measured, and its report."""

    args: argparse.Namespace
    system: System
    world: World
    load: Load
    sampler: Sampler
    convergence: Convergence
    work: Path
    ready: float = 0.0
    warm_up: float = 0.0
    duration: float = 0.0
    real_made: float = 0.0
    load_at_start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def report(self) -> int:
        """Print the tables and the promises; 0 when every promise held."""
        args, system, world, load = self.args, self.system, self.world, self.load
        sampler, convergence, work = self.sampler, self.convergence, self.work
        ready, warm_up, duration, real_made = (
            self.ready,
            self.warm_up,
            self.duration,
            self.real_made,
        )
        load_at_start = self.load_at_start
        rates = load.rates
        samples = load.recorder.samples
        figures = routes(samples)
        hooks = sum(1 for s in samples if s.route == "POST /webhooks/gitlab") / duration
        achieved = hooks + real_made  # the sandbox's own deliveries come on top of the replayed
        kept = promises(figures, sampler, warm_up, convergence, (achieved, args.rate))
        print(
            f"machine: {platform.machine()}, nproc {os.cpu_count()}, load average at start "
            f"{load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}, at end "
            f"{os.getloadavg()[0]:.2f}; Python {platform.python_version()}"
        )
        print(
            f"soak: {args.minutes:g} min, seed {args.seed}, {args.datasets} datasets, system ready in "
            f"{ready:.0f} s; gunicorn {system.web_workers} workers (deploy/gunicorn.conf.py), "
            f"{system.rq_workers} dshub workers; warm-up {warm_up:.0f} s"
        )
        print(
            f"load: replayed push deliveries {hooks:.0f}/s + real commits {rates.commits:g}/s and "
            f"upload sessions {rates.uploads:g}/s ({real_made:.1f} deliveries/s from the sandbox); "
            f"uploads committed {load.counts['uploads committed']}, files confirmed {len(world.files)}"
        )
        print()
        print(route_table(figures))
        print()
        print(sampler.rss_table(warm_up))
        print()
        print(sampler.backlog_table(60.0 if duration >= 300 else 10.0))
        print()
        print(
            f"convergence: settled in {convergence.settle_seconds:.0f} s; before reconcile "
            f"{len(convergence.drift_before)} differences; `dshub reconcile` "
            f"({convergence.reconcile_seconds:.1f} s): {convergence.reconcile}"
        )
        for line in convergence.drift_before[:10]:
            print(f"  drift before reconcile: {line}")
        for line in convergence.problems()[:20]:
            print(f"  {line}")
        if load.recorder.notes:
            print(
                f"load notes ({len(load.recorder.notes)}): {sorted(set(load.recorder.notes))[:10]}"
            )
        print()
        for promise, ok, figure in kept:
            print(f"{'PASS' if ok else 'FAIL'}  {promise}: {figure}")
        print(
            json.dumps(
                {
                    "routes": [asdict(f) for f in figures],
                    "rss_drift": sampler.drift(warm_up),
                    "convergence": asdict(convergence),
                    "broken": [p for p, ok, _ in kept if not ok],
                }
            )
        )
        print(f"work directory (logs): {work}")
        return 0 if all(ok for _, ok, _ in kept) else 1


if __name__ == "__main__":
    sys.exit(main())
