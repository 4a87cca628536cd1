"""What a run measured, as tables: per route, per process (RSS), over time (backlog)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import psutil

from bench.reliability.load import Sample
from bench.reliability.system import System

MB = 1024 * 1024


@dataclass
class RouteFigures:
    """One route's figures."""

    route: str
    requests: int
    errors: int  # anything but 2xx/3xx (4xx included: the load sends only valid requests)
    undocumented_5xx: int
    no_answer: int  # the connection broke before an answer
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)  # the errors' statuses, counted

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def routes(samples: list[Sample]) -> list[RouteFigures]:
    """Figures per route, sorted by route."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.route].append(sample)
    figures = []
    for route, items in sorted(grouped.items()):
        answered = [s for s in items if isinstance(s.status, int)]
        latencies = [s.seconds * 1000 for s in answered]
        figures.append(
            RouteFigures(
                route=route,
                requests=len(items),
                errors=sum(1 for s in items if not (isinstance(s.status, int) and s.status < 400)),
                undocumented_5xx=sum(
                    1
                    for s in answered
                    if isinstance(s.status, int) and s.status >= 500 and not s.documented
                ),
                no_answer=len(items) - len(answered),
                p50_ms=_percentile(latencies, 0.50),
                p99_ms=_percentile(latencies, 0.99),
                statuses=dict(
                    Counter(
                        str(s.status)
                        for s in items
                        if not (isinstance(s.status, int) and s.status < 400)
                    )
                ),
            )
        )
    return figures


def route_table(figures: list[RouteFigures]) -> str:
    """The per-route table as text."""
    lines = [
        f"{'route':28} {'requests':>9} {'errors':>7} {'rate':>7} {'5xx*':>5} {'no ans':>6} {'p50 ms':>8} {'p99 ms':>8}"
    ]
    for f in figures:
        lines.append(
            f"{f.route:28} {f.requests:9d} {f.errors:7d} {f.error_rate:7.2%} {f.undocumented_5xx:5d} "
            f"{f.no_answer:6d} {f.p50_ms:8.1f} {f.p99_ms:8.1f}"
            + (
                f"  {', '.join(f'{k} x{v}' for k, v in sorted(f.statuses.items()))}"
                if f.statuses
                else ""
            )
        )
    lines.append(
        "5xx* = 5xx other than dshub's documented 503; no ans = connection broken before an answer"
    )
    return "\n".join(lines)


@dataclass
class Sampler:
    """Samples RSS per dshub process, the journal backlog and the RQ queue every `interval`."""

    system: System
    interval: float = 5.0
    started: float = field(default_factory=time.monotonic)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    backlog: list[tuple[float, int | None, int | None]] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic() - self.started
            for name, pid in self.system.process_table().items():
                try:
                    self.rss[name].append((at, psutil.Process(pid).memory_info().rss))
                except psutil.Error:
                    continue
            self.backlog.append((at, self.system.journal_backlog(), self.system.queue_length()))
            self.load_average.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def drift(self, warm_up: float) -> dict[str, tuple[float, float, float]]:
        """name → (RSS MB after warm-up, RSS MB at the end, drift): each the median of three
        samples, so one spike does not decide."""
        result = {}
        for name, points in self.rss.items():
            after = [rss for at, rss in points if at >= warm_up]
            if len(after) < 6:
                continue
            first = sorted(after[:3])[1]
            last = sorted(after[-3:])[1]
            result[name] = (first / MB, last / MB, (last - first) / first)
        return result

    def rss_table(self, warm_up: float) -> str:
        lines = [f"{'process':20} {'after warm-up MB':>17} {'end MB':>8} {'drift':>7}"]
        for name, (first, last, drift) in sorted(self.drift(warm_up).items()):
            lines.append(f"{name:20} {first:17.1f} {last:8.1f} {drift:7.1%}")
        return "\n".join(lines)

    def backlog_table(self, every: float = 60.0) -> str:
        """Journal backlog and queue length about every `every` seconds (and the peaks)."""
        lines = [f"{'t s':>6} {'journal backlog':>16} {'RQ queue':>9} {'load avg':>9}"]
        next_at = 0.0
        for (at, journal, queue), load in zip(self.backlog, self.load_average, strict=False):
            if at + 1e-9 >= next_at:
                lines.append(f"{at:6.0f} {_text(journal):>16} {_text(queue):>9} {load:9.2f}")
                next_at = at + every
        journals = [j for _, j, _ in self.backlog if j is not None]
        queues = [q for _, _, q in self.backlog if q is not None]
        lines.append(
            f"peak journal backlog {max(journals, default=0)}, peak RQ queue {max(queues, default=0)}"
        )
        return "\n".join(lines)


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)
