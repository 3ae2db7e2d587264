"""Cost counters: thread safety, per-1000 figures, RAPL parsing with wraparound."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from spamguard.metrics import (
    WATTS_PER_CORE_ESTIMATE,
    Cost,
    EnergyMeter,
    Recorder,
    measure,
    percentile,
    wh_per_1000,
)


def test_recorder_counts_from_many_threads() -> None:
    rec = Recorder()

    def work() -> None:
        for _ in range(500):
            rec.record("head", "v1", messages=2, wall_seconds=0.002, cpu_seconds=0.001, decided=1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (snap,) = rec.snapshot()
    assert (snap["messages"], snap["decided"]) == (4000, 2000)
    assert snap["cpu_seconds"] == pytest.approx(2.0)
    assert snap["cpu_seconds_per_1000"] == pytest.approx(0.5)
    assert snap["latency_p50_ms"] == pytest.approx(1.0)
    assert snap["energy_source"] == "estimate"


def test_stages_and_model_versions_are_counted_apart() -> None:
    rec = Recorder()
    with rec.timed("cheap", "s0", 10):
        pass
    with rec.timed("cheap", "s0-new", 5):
        pass
    assert {(r["stage"], r["model_version"], r["messages"]) for r in rec.snapshot()} == {
        ("cheap", "s0", 10),
        ("cheap", "s0-new", 5),
    }


def test_energy_estimate_uses_the_documented_watts_per_core() -> None:
    assert wh_per_1000(cpu_seconds=36.0, messages=1000) == pytest.approx(
        36.0 * WATTS_PER_CORE_ESTIMATE / 3600.0
    )
    assert Cost(messages=10, cpu_seconds=1.0, joules=7200.0).wh == pytest.approx(2.0)


def test_measure_counts_cpu_time_of_busy_work() -> None:
    with measure(100) as cost:
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
    assert cost.cpu_seconds >= 0.04 and cost.wall_seconds >= cost.cpu_seconds * 0.5
    assert cost.energy_source in {"RAPL", "estimate"}


def test_rapl_counters_are_read_and_wraparound_handled(tmp_path: Path) -> None:
    pkg = tmp_path / "intel-rapl:0"
    sub = tmp_path / "intel-rapl:0:0"
    for d in (pkg, sub):
        d.mkdir()
        (d / "max_energy_range_uj").write_text("1000000\n")
    (pkg / "energy_uj").write_text("999000\n")
    (sub / "energy_uj").write_text("5\n")
    meter = EnergyMeter(str(tmp_path / "intel-rapl:*"))
    assert meter.available and len(meter.domains) == 1  # the package, not its sub-domain
    start = meter.read_uj()
    (pkg / "energy_uj").write_text("1000\n")  # wrapped past max_energy_range_uj
    assert meter.joules_since(start) == pytest.approx(0.002)


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 95) == 5.0


def test_idle_cores_sees_another_process_busy() -> None:
    import subprocess
    import sys

    from spamguard.metrics import IdleCores, cpu_count

    idle = IdleCores(max_age=0.0, sample=0.3)
    quiet = idle.free()
    assert 0.0 <= quiet <= cpu_count()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = IdleCores(max_age=0.0, sample=0.5).free()
    finally:
        busy.kill()
        busy.wait()
    # A spinning process takes about one core; our own CPU time is not counted against us.
    assert loaded <= cpu_count() - 0.5


def test_llm_threads_follow_the_free_cores_unless_set() -> None:
    from spamguard.llm.engine import LLMSettings

    auto = LLMSettings()
    assert [auto.resolved_threads(f) for f in (0.0, 0.7, 1.6, 3.0, 16.0)] == [1, 1, 2, 3, 4]
    assert LLMSettings(threads=3).resolved_threads(0.2) == 3
