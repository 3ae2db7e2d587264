"""What inference costs: latency, throughput, CPU-seconds and energy, per stage and model version.

Counters are thread-safe so the running app (dashboard) and `spamguard bench` read the same
figures. Energy comes from Intel RAPL counters when the kernel lets us read them; otherwise
it is CPU-seconds times `WATTS_PER_CORE_ESTIMATE` and every report labels it an estimate.
"""

from __future__ import annotations

import contextlib
import glob
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "WATTS_PER_CORE_ESTIMATE",
    "Cost",
    "EnergyMeter",
    "IdleCores",
    "Recorder",
    "StageCounters",
    "measure",
    "peak_rss_mb",
    "percentile",
    "wh_per_1000",
]

# Energy estimate when RAPL is unreadable: one busy x86 core of a laptop or desktop draws
# roughly 10-20 W (package TDP / cores, e.g. 45 W / 4 or 65 W / 6 under load); 15 W is the
# middle. Figures derived from it are labelled "estimate" wherever they are shown.
WATTS_PER_CORE_ESTIMATE: Final = 15.0
RAPL_GLOB: Final = "/sys/class/powercap/intel-rapl:*"
LATENCY_WINDOW: Final = 10_000


def percentile(values: list[float] | deque[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


class EnergyMeter:
    """Package energy from RAPL (``energy_uj``, microjoules) summed over top-level domains."""

    def __init__(self, pattern: str = RAPL_GLOB) -> None:
        self.domains: list[tuple[Path, int]] = []
        for d in sorted(glob.glob(pattern)):
            path = Path(d)
            if path.name.count(":") != 1:  # intel-rapl:0 is a package; :0:0 its sub-domain
                continue
            energy = path / "energy_uj"
            try:
                int(energy.read_text())
                wrap = int((path / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue
            self.domains.append((energy, wrap))

    @property
    def available(self) -> bool:
        return bool(self.domains)

    def read_uj(self) -> list[int]:
        return [int(p.read_text()) for p, _ in self.domains]

    def joules_since(self, start: list[int]) -> float:
        total = 0
        for (_, wrap), before, now in zip(self.domains, start, self.read_uj(), strict=True):
            total += now - before if now >= before else now + wrap - before
        return total / 1e6


@dataclass
class Cost:
    """One measured run: wall and CPU time, energy, and how many messages it covered."""

    messages: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    joules: float | None = None
    energy_source: str = "estimate"

    @property
    def wh(self) -> float:
        if self.joules is not None:
            return self.joules / 3600.0
        return self.cpu_seconds * WATTS_PER_CORE_ESTIMATE / 3600.0

    def per_1000(self) -> dict[str, float]:
        n = max(self.messages, 1)
        return {
            "cpu_seconds_per_1000": self.cpu_seconds * 1000.0 / n,
            "wh_per_1000": self.wh * 1000.0 / n,
        }


def wh_per_1000(cpu_seconds: float, messages: int, joules: float | None = None) -> float:
    c = Cost(messages=messages, cpu_seconds=cpu_seconds, joules=joules)
    return c.per_1000()["wh_per_1000"]


@contextlib.contextmanager
def measure(messages: int = 0, *, children: bool = False) -> Iterator[Cost]:
    """Measure the block: wall time, CPU time (this process's threads, or its children's),
    and RAPL energy when readable (whole package: other processes' work counts too, so
    it is reported only next to the CPU-based figure)."""
    cost = Cost(messages=messages)
    meter = EnergyMeter()
    e0 = meter.read_uj() if meter.available else None
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    r0 = resource.getrusage(who)
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        cost.wall_seconds = time.perf_counter() - t0
        r1 = resource.getrusage(who)
        cost.cpu_seconds = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        if e0 is not None:
            cost.joules = meter.joules_since(e0)
            cost.energy_source = "RAPL"


@dataclass
class StageCounters:
    """Running totals of one (stage, model version)."""

    stage: str
    model_version: str
    messages: int = 0
    decided: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def to_json(self) -> dict[str, Any]:
        cost = Cost(self.messages, self.wall_seconds, self.cpu_seconds)
        lat = list(self.latencies)
        return {
            "stage": self.stage,
            "model_version": self.model_version,
            "messages": self.messages,
            "decided": self.decided,
            "fallbacks": self.fallbacks,
            "cache_hits": self.cache_hits,
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "msgs_per_s": self.messages / self.wall_seconds if self.wall_seconds else None,
            "latency_p50_ms": percentile(lat, 50) * 1000.0 if lat else None,
            "latency_p95_ms": percentile(lat, 95) * 1000.0 if lat else None,
            **cost.per_1000(),
            "energy_source": "estimate",
        }


class Recorder:
    """Thread-safe counters per (stage, model version); `snapshot()` is what the app shows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[tuple[str, str], StageCounters] = {}

    def _get(self, stage: str, model_version: str) -> StageCounters:
        key = (stage, model_version)
        c = self._stages.get(key)
        if c is None:
            c = self._stages[key] = StageCounters(stage, model_version)
        return c

    def record(
        self,
        stage: str,
        model_version: str,
        *,
        messages: int,
        wall_seconds: float,
        cpu_seconds: float,
        decided: int = 0,
        fallbacks: int = 0,
        cache_hits: int = 0,
    ) -> None:
        with self._lock:
            c = self._get(stage, model_version)
            c.messages += messages
            c.decided += decided
            c.fallbacks += fallbacks
            c.cache_hits += cache_hits
            c.wall_seconds += wall_seconds
            c.cpu_seconds += cpu_seconds
            if messages:
                per = wall_seconds / messages
                c.latencies.extend([per] * min(messages, 1000))

    def add_decided(self, stage: str, model_version: str, n: int) -> None:
        with self._lock:
            self._get(stage, model_version).decided += n

    @contextlib.contextmanager
    def timed(self, stage: str, model_version: str, messages: int) -> Iterator[None]:
        """Record wall and process CPU time of the block for ``messages`` messages."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.record(
                stage,
                model_version,
                messages=messages,
                wall_seconds=time.perf_counter() - t0,
                cpu_seconds=time.process_time() - c0,
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.to_json() for c in self._stages.values()]

    def reset(self) -> None:
        with self._lock:
            self._stages.clear()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class IdleCores:
    """How many of this process's cores other programs leave free, measured, not guessed.

    Busy time comes from /proc/stat (all CPUs) minus this process's own CPU time, over the
    time since the previous reading; a reading older than ``max_age`` seconds is replaced by
    a fresh ``sample`` -second one. Where /proc/stat is unreadable (not Linux), every core
    counts as free.
    """

    def __init__(self, *, max_age: float = 5.0, sample: float = 0.05) -> None:
        self.max_age = max_age
        self.sample = sample
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()

    @staticmethod
    def _proc_stat() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [int(x) for x in fh.readline().split()[1:8]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    def _read(self) -> tuple[float, tuple[int, int] | None, float]:
        return time.monotonic(), self._proc_stat(), time.process_time()

    def free(self) -> float:
        """Cores not busy with other programs' work (0 .. cpu_count())."""
        cores = cpu_count()
        if time.monotonic() - self._last[0] > self.max_age:
            self._last = self._read()
            time.sleep(self.sample)
        now = self._read()
        (t0, stat0, own0), (t1, stat1, own1) = self._last, now
        self._last = now
        if stat0 is None or stat1 is None or t1 - t0 <= 0:
            return float(cores)
        total = (stat1[0] - stat0[0]) / self._tick
        busy = total - (stat1[1] - stat0[1]) / self._tick
        others = max(0.0, busy - (own1 - own0)) / (t1 - t0)
        return max(0.0, min(float(cores), cores - others))
