"""`spamguard bench`: what each scorer costs on the same test-half messages, peers included.

Each configuration runs in a fresh child process (spawn) so its peak RSS is its own. Batch
mode scores in batches of 64; streaming mode one message at a time, as IDLE delivers them.
Parsing is timed with scoring (the peers parse too); reading the files is not.
SpamAssassin (spamd/spamc, --local) and bogofilter (trained on the train half) score the
same messages in the same run, so the ratios are measured, not quoted.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spamguard.llm.cascade import build_cascade
from spamguard.message import parse_message
from spamguard.metrics import WATTS_PER_CORE_ESTIMATE, EnergyMeter, measure, percentile
from spamguard.scoring.base import score_batches
from spamguard.scoring.cache import LRUScoreCache
from spamguard.scoring.parallel import WorkerPool

__all__ = ["BenchConfig", "pick_messages", "run_bench"]

BATCH = 64


@dataclass
class BenchConfig:
    name: str
    kind: str  # head | cascade | llm | spamassassin | bogofilter
    params: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    modes: tuple[str, ...] = ("batch", "streaming")


def pick_messages(
    split: Path, corpus: Path, n: int, *, half: str = "test", seed: int = 0
) -> list[tuple[str, bool, str]]:
    """A fixed stratified sample of one half: (path, is_spam, group), every group in proportion."""
    import csv

    with split.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == half]
    rng = random.Random(seed)
    by_group: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    picked: list[dict[str, str]] = []
    for g in sorted(by_group):
        take = max(1, round(n * len(by_group[g]) / len(rows)))
        picked += rng.sample(by_group[g], min(take, len(by_group[g])))
    rng.shuffle(picked)
    return [(str(corpus / r["path"]), r["label"] == "spam", r["group"]) for r in picked[:n]]


# --------------------------------------------------------------------------- child side


def _load_scorer(cfg: BenchConfig) -> Any:
    from spamguard.scoring.model import load_scorer

    p = cfg.params
    if cfg.kind == "head":
        return load_scorer(p["model"], encoder_kind=p.get("encoder"))
    if cfg.kind == "llm":
        from spamguard.llm.engine import LLMEngine, LLMSettings
        from spamguard.llm.scorer import LLMScorer

        settings = LLMSettings(
            model=p.get("model", "smollm2-135m-instruct"),
            model_path=Path(p["file"]) if p.get("file") else None,
            threads=p.get("threads"),
            prefix_cache=p.get("prefix_cache", "keep"),
            token_budget=p.get("token_budget", 256),
        )
        engine = LLMEngine(settings)
        engine.load()
        return LLMScorer(engine)
    if cfg.kind == "cascade":
        return build_cascade(
            Path(p["cheap"]),
            Path(p["full"]),
            Path(p["bands"]) if p.get("bands") else None,
            llm=p.get("llm", False),
            encoder=p.get("encoder"),
        )
    raise ValueError(cfg.kind)


def _pool_child(cfg: BenchConfig, paths: list[str], labels: list[bool]) -> dict[str, Any]:
    """Batch mode in `WorkerPool` processes (`score --jobs N`), as spamd runs its children."""

    raws = [Path(p).read_bytes() for p in paths]
    jobs = int(cfg.params["workers"])
    t0 = time.perf_counter()
    with WorkerPool(jobs) as pool:
        pool.warm_up(raws[0])
        load_s = time.perf_counter() - t0
        cpu0 = _proc_tree_cpu(os.getpid())
        with measure(len(raws)) as cost:
            results = list(pool.score_raw(raws))
        # This process and its workers, read from /proc while the workers are alive.
        cost.cpu_seconds = _proc_tree_cpu(os.getpid()) - cpu0
        rss = _tree_rss_mb(os.getpid())
    probs = [r[1].p_spam if not isinstance(r, str) else 0.5 for r in results]
    out: dict[str, Any] = {"name": cfg.name, "kind": cfg.kind, "load_seconds": load_s}
    out["batch"] = _cost_row(cost, len(raws))
    out["peak_rss_mb"] = rss
    out.update(_accuracy(labels, probs))
    return out


def _child(cfg: BenchConfig, paths: list[str], labels: list[bool]) -> dict[str, Any]:
    import resource

    if cfg.params.get("workers"):
        return _pool_child(cfg, paths, labels)

    # Files are read before the clock starts (as for the peers, whose input is piped from
    # memory); parsing is timed with scoring, because the peers parse too.
    raws = [Path(p).read_bytes() for p in paths]
    t0 = time.perf_counter()
    scorer = _load_scorer(cfg)
    scorer.score([parse_message(r) for r in raws[:2]])  # warm-up: lazy loads are not per-message
    load_s = time.perf_counter() - t0
    _forget_scores(scorer)
    if hasattr(scorer, "recorder"):
        scorer.recorder.reset()
    out: dict[str, Any] = {"name": cfg.name, "kind": cfg.kind, "load_seconds": load_s}
    probs: list[float] = []
    if "batch" in cfg.modes:
        # As `spamguard score` does: parsing the next batch overlaps a cascade's later stages.
        batches = (
            [parse_message(r) for r in raws[i : i + BATCH]] for i in range(0, len(raws), BATCH)
        )
        with measure(len(raws)) as cost:
            for scores in score_batches(scorer, batches):
                probs += [s.p_spam for s in scores]
        out["batch"] = _cost_row(cost, len(raws))
        _forget_scores(scorer)
    if "streaming" in cfg.modes:
        if hasattr(scorer, "recorder"):
            scorer.recorder.reset()
        lat: list[float] = []
        stages: list[str] = []
        sprobs: list[float] = []
        with measure(len(raws)) as cost:
            for r in raws:
                t = time.perf_counter()
                s = scorer.score([parse_message(r)])[0]
                lat.append(time.perf_counter() - t)
                stages.append(s.stage)
                sprobs.append(s.p_spam)
        row = _cost_row(cost, len(raws))
        row["latency_p50_ms"] = percentile(lat, 50) * 1000
        row["latency_p95_ms"] = percentile(lat, 95) * 1000
        by_stage: dict[str, list[float]] = {}
        for st, la in zip(stages, lat, strict=True):
            by_stage.setdefault(st, []).append(la)
        row["stage_share"] = {k: len(v) / len(lat) for k, v in by_stage.items()}
        row["latency_p95_ms_by_stage"] = {k: percentile(v, 95) * 1000 for k, v in by_stage.items()}
        out["streaming"] = row
        if not probs:
            probs = sprobs
    if hasattr(scorer, "engine"):
        out["llm"] = scorer.engine.describe()
        st = scorer.engine.stats
        out["llm_stats"] = {
            "forward_passes": st.forward_passes,
            "prompt_tokens_evaluated": st.prompt_tokens,
            "prefix_tokens_reused": st.reused_tokens,
            "scoring_tokens_per_s": st.prompt_tokens / st.eval_seconds if st.eval_seconds else 0,
        }
        # Which backend ran, and its tokens/s on a fixed prompt and 32 generated tokens.
        from spamguard.llm.speed import measure_speed

        out["llm_speed"] = measure_speed(scorer.engine).to_json()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out.update(_accuracy(labels, probs))
    return out


def _forget_scores(scorer: Any) -> None:
    """Empty every score cache (the cascade's and its stages'), so each mode pays in full."""

    for s in [scorer, *getattr(scorer, "stages", [])]:
        if getattr(s, "cache", None) is not None:
            s.cache = LRUScoreCache()


def _accuracy(labels: Sequence[bool], probs: Sequence[float]) -> dict[str, Any]:
    from spamguard.evaluate import auc, recall_at_fpr

    if not probs or len(set(labels)) < 2:
        return {}
    import numpy as np

    y, p = np.asarray(labels), np.asarray(probs)
    return {"auc": auc(y, p), "recall_at_1pct_fpr": recall_at_fpr(y, p, 0.01)[0]}


def _cost_row(cost: Any, n: int) -> dict[str, Any]:
    return {
        "messages": n,
        "seconds": cost.wall_seconds,
        "msgs_per_s": n / cost.wall_seconds if cost.wall_seconds else None,
        "cpu_seconds_per_1000": cost.cpu_seconds * 1000 / n,
        "wh_per_1000": cost.cpu_seconds * WATTS_PER_CORE_ESTIMATE / 3600 * 1000 / n
        if cost.joules is None
        else cost.joules / 3600 * 1000 / n,
        "energy_source": cost.energy_source,
    }


# --------------------------------------------------------------------------- peers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_tree_cpu(root: int) -> float:
    """utime+stime (seconds) of ``root`` and its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(d))
        # utime, stime, cutime, cstime: include reaped children (spamd recycles them).
        stats[int(d)] = sum(int(x) for x in fields[11:15]) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def _spamassassin(
    paths: list[str], labels: list[bool], modes: tuple[str, ...] = ("batch", "streaming")
) -> dict[str, Any]:
    if not shutil.which("spamd") or not shutil.which("spamc"):
        return {"name": "SpamAssassin", "skipped": "apt-get install -y spamassassin spamc"}
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="sg-spamd-"))
    os.chmod(tmp, 0o755)
    cmd = [
        "spamd",
        "--local",
        f"--listen=127.0.0.1:{port}",
        "--allowed-ips=127.0.0.1",
        "--max-children=2",
        "--min-children=2",
        "--username=nobody",
        f"--pidfile={tmp}/spamd.pid",
        "--nouser-config",
        "--syslog=stderr",
    ]
    log = (tmp / "spamd.log").open("wb")
    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            return {"name": "SpamAssassin", "skipped": "spamd did not start; see its log"}
        startup = time.perf_counter() - t_start

        def check(path: str) -> tuple[float, float]:
            data = Path(path).read_bytes()
            t = time.perf_counter()
            r = subprocess.run(
                ["spamc", "-d", "127.0.0.1", "-p", str(port), "-c", "-s", "5000000"],
                input=data,
                capture_output=True,
            )
            score = float(r.stdout.decode().split("/")[0] or "nan")
            return score, time.perf_counter() - t

        check(paths[0])  # warm-up
        out: dict[str, Any] = {"name": "SpamAssassin (spamd --local)", "kind": "peer"}
        out["load_seconds"] = startup
        results = []
        for mode in modes:
            cpu0 = _proc_tree_cpu(proc.pid)
            with measure(len(paths), children=True) as cost:
                if mode == "batch":
                    with ThreadPoolExecutor(2) as pool:  # spamd runs 2 children
                        results = list(pool.map(check, paths))
                else:
                    results = [check(p) for p in paths]
            cost.cpu_seconds += _proc_tree_cpu(proc.pid) - cpu0
            row = _cost_row(cost, len(paths))
            if mode == "streaming":
                lat = [r[1] for r in results]
                row["latency_p50_ms"] = percentile(lat, 50) * 1000
                row["latency_p95_ms"] = percentile(lat, 95) * 1000
            out[mode] = row
        out["peak_rss_mb"] = _tree_rss_mb(proc.pid)
        out.update(_accuracy(labels, [r[0] for r in results]))
        return out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _tree_rss_mb(root: int) -> float:
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == root or int(d) == root:
            total += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024.0
    return total


def _bogofilter(
    paths: list[str], labels: list[bool], train: list[tuple[str, bool, str]]
) -> dict[str, Any]:
    if not shutil.which("bogofilter"):
        return {"name": "bogofilter", "skipped": "apt-get install -y bogofilter"}
    db = Path(tempfile.mkdtemp(prefix="sg-bogo-"))
    try:
        out: dict[str, Any] = {"name": "bogofilter (trained on train half)", "kind": "peer"}
        t = time.perf_counter()
        for flag, want in (("-n", False), ("-s", True)):
            files = [p for p, is_spam, _ in train if is_spam == want]
            for i in range(0, len(files), 500):
                subprocess.run(
                    ["bogofilter", "-d", str(db), flag, "-B", *files[i : i + 500]], check=True
                )
        out["train_seconds"] = time.perf_counter() - t
        scores: list[float] = []
        with measure(len(paths), children=True) as cost:
            r = subprocess.run(
                ["bogofilter", "-d", str(db), "-T", "-B", *paths], capture_output=True, text=True
            )
        by_path = {}
        for line in r.stdout.splitlines():
            parts = line.rsplit(None, 2)
            if len(parts) == 3:
                by_path[parts[0]] = float(parts[2])
        scores = [by_path.get(p, 0.5) for p in paths]
        out["batch"] = _cost_row(cost, len(paths))
        lat = []
        peak_kb = 0
        with measure(len(paths), children=True) as cost:
            for p in paths:
                t = time.perf_counter()
                child = subprocess.Popen(
                    ["bogofilter", "-d", str(db), "-T", "-I", p], stdout=subprocess.DEVNULL
                )
                # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would report the
                # largest child this process ever had, e.g. an earlier bench worker).
                _, _, usage = os.wait4(child.pid, 0)
                child.returncode = 0
                peak_kb = max(peak_kb, usage.ru_maxrss)
                lat.append(time.perf_counter() - t)
        row = _cost_row(cost, len(paths))
        row["latency_p50_ms"] = percentile(lat, 50) * 1000
        row["latency_p95_ms"] = percentile(lat, 95) * 1000
        out["streaming"] = row
        out["peak_rss_mb"] = peak_kb / 1024.0
        out.update(_accuracy(labels, scores))
        return out
    finally:
        shutil.rmtree(db, ignore_errors=True)


# --------------------------------------------------------------------------- driver


def run_bench(
    configs: Sequence[BenchConfig],
    messages: list[tuple[str, bool, str]],
    *,
    train: list[tuple[str, bool, str]] | None = None,
    peers: bool = True,
    on_result: Any = None,
) -> dict[str, Any]:
    import multiprocessing

    paths = [m[0] for m in messages]
    labels = [m[1] for m in messages]
    ctx = multiprocessing.get_context("spawn")
    results: list[dict[str, Any]] = []
    for cfg in configs:
        n = cfg.limit or len(paths)
        # Not a multiprocessing.Pool: its workers are daemons, which may not start the
        # worker processes of the `score --jobs` row.
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            try:
                res = pool.submit(_child, cfg, paths[:n], labels[:n]).result()
            except Exception as exc:  # one broken configuration must not sink the bench
                res = {"name": cfg.name, "kind": cfg.kind, "error": f"{type(exc).__name__}: {exc}"}
        results.append(res)
        if on_result:
            on_result(res)
    if peers:
        for res in (
            _spamassassin(paths, labels),
            _bogofilter(paths, labels, train or []),
        ):
            results.append(res)
            if on_result:
                on_result(res)
    meter = EnergyMeter()
    return {
        "messages": len(paths),
        "cpu_cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "energy_source": "RAPL" if meter.available else "estimate",
        "watts_per_core_estimate": WATTS_PER_CORE_ESTIMATE,
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    head = (
        f"{'configuration':<44} {'mode':<9} {'n':>4} {'msgs/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'CPU-s/1k':>9} {'Wh/1k':>8} {'RSS MB':>7} {'AUC':>7}  stage share"
    )
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        if "error" in r or "skipped" in r:
            lines.append(f"{r['name']:<44} {r.get('error') or r.get('skipped')}")
            continue
        for mode in ("batch", "streaming"):
            row = r.get(mode)
            if not row:
                continue
            share = ", ".join(f"{k} {v:.0%}" for k, v in row.get("stage_share", {}).items())
            auc = f"{r['auc']:.4f}" if "auc" in r else "-"
            p50 = row.get("latency_p50_ms")
            p95 = row.get("latency_p95_ms")
            lines.append(
                f"{r['name']:<44} {mode:<9} {row['messages']:>4} {row['msgs_per_s']:>9.1f} "
                f"{(f'{p50:.1f}' if p50 is not None else '-'):>8} "
                f"{(f'{p95:.1f}' if p95 is not None else '-'):>8} "
                f"{row['cpu_seconds_per_1000']:>9.2f} {row['wh_per_1000']:>8.4f} "
                f"{r.get('peak_rss_mb', float('nan')):>7.0f} "
                f"{auc:>7}  {share}"
            )
    for r in report["results"]:
        speed, stats = r.get("llm_speed"), r.get("llm_stats") or {}
        if speed:
            lines.append(
                f"{r['name']}: ran on {speed['device']} (n_gpu_layers={speed['n_gpu_layers']}, "
                f"{speed['threads']} threads); scoring {stats.get('scoring_tokens_per_s', 0):.0f}"
                f" prompt tokens/s; fixed prompt {speed['prompt_tokens_per_s']:.0f} tokens/s, "
                f"generation {speed['generation_tokens_per_s']:.0f} tokens/s"
            )
    src = report["energy_source"]
    lines.append(
        f"Wh/1k: {'RAPL package energy' if src == 'RAPL' else 'ESTIMATE = CPU-seconds x '}"
        + ("" if src == "RAPL" else f"{report['watts_per_core_estimate']:.0f} W per busy core")
        + f"; {report['cpu_cores']} cores shared, load average at start "
        + ", ".join(f"{x:.1f}" for x in report["load_average_at_start"])
    )
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if "batch" in r or "streaming" in r]
    names = [r["name"] for r in rows]
    tput = [(r.get("batch") or r["streaming"])["msgs_per_s"] for r in rows]
    p95 = [(r.get("streaming") or {}).get("latency_p95_ms") for r in rows]
    wh = [(r.get("batch") or r["streaming"])["wh_per_1000"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 0.45 * len(rows) + 2), dpi=100, sharey=True)
    for ax, vals, title in (
        (axes[0], tput, "throughput, msgs/s (log)"),
        (axes[1], p95, "streaming latency p95, ms (log)"),
        (axes[2], wh, f"Wh per 1,000 msgs ({report['energy_source']}) (log)"),
    ):
        shown = [i for i, v in enumerate(vals) if v]
        ax.barh(shown, [max(float(vals[i] or 0.0), 1e-6) for i in shown], color="#4c72b0")
        for i in set(range(len(rows))) - set(shown):  # e.g. a batch-only configuration
            ax.text(0.02, i, "not measured", transform=ax.get_yaxis_transform(), va="center")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"spamguard bench: {report['messages']} test-half messages, same run")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_json(report: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(report, indent=2, default=float) + "\n", "utf-8")
