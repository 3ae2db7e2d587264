"""Issue 20's two scoring figures, each measured against its peer in the same run:

1. stage 0 alone (the cheap head, parsing included, batches of 64, one process) on the whole
   SpamAssassin test half, next to bogofilter (trained on the train half) on the same files;
2. the cascade (stage 0 -> stage 1 with the int8 encoder; one process, and `score --jobs 2`)
   next to SpamAssassin's spamd (2 children, --local) on a stratified sample of that half.

Each row runs in a fresh process (spawn) per round; rounds alternate the rows so that the
machine's load drifts over all of them alike. Printed: min and median msgs/s and CPU-ms per
message over the rounds, and the ratios against the peer round by round. The test half is
read for timing and for the accuracy of each row's scores; nothing is tuned on it.

    PYTHONPATH=. python benchmarks/bench_speed.py [--rounds 3] [--peer-n 600] [--json OUT]
        [--before DIR]   # DIR: `git archive COMMIT | tar -x -C DIR`, its rows run alongside
        [--identity-only]

With --before, the two checkouts' scores are also compared message by message over both
halves (test and train, 6,046 messages): stage 0 alone and the cascade, each in its own
process. Printed: the largest |p_spam - p_spam before|, the verdicts (Junk at 0.90, flag at
0.50) and deciding stages that changed, and the messages whose evidence changed; the run
exits 1 unless all are 0. --identity-only runs that check and no timing.

Needs the shared corpus (shared/corpora/fetch-spamassassin), spamd/spamc and bogofilter.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from _corpora import spamassassin_corpus

from spamguard.bench import score as bench
from spamguard.bench.score import BenchConfig, pick_messages

ROOT = Path(__file__).resolve().parents[1]


def _in_child(cfg: BenchConfig, paths: list[str], labels: list[bool]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        result: dict[str, Any] = pool.submit(bench._child, cfg, paths, labels).result()
    return result


_CHILD = """
import json, sys
try:  # a checkout from before the regroup (issue 16) first: the editable install may
    # find a newer checkout's modules where this one has none
    from spamguard.scoring.bench import BenchConfig, _child
except ImportError:
    from spamguard.bench.score import BenchConfig, _child
a = json.load(sys.stdin)
cfg = BenchConfig(a["name"], a["kind"], a["params"], modes=tuple(a["modes"]))
print(json.dumps(_child(cfg, a["paths"], a["labels"])))
"""


def _in_checkout(
    checkout: Path, cfg: BenchConfig, paths: list[str], labels: list[bool]
) -> dict[str, Any]:
    """The same row run by another checkout's code (``--before``), in its own process."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    request = {"name": cfg.name, "kind": cfg.kind, "params": cfg.params, "modes": cfg.modes}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps({**request, "paths": paths, "labels": labels}),
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout,  # `python -c` puts the working directory first on sys.path
    )
    if done.returncode:
        raise SystemExit(f"{cfg.name} in {checkout} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_SCORES_CHILD = """
import json, sys
from pathlib import Path
from spamguard.message import parse_message
try:  # pipelined where the checkout can (the scores must be the same)
    from spamguard.scoring.base import score_batches
except ImportError:
    def score_batches(scorer, batches):
        return (scorer.score(b) for b in batches)
a = json.load(sys.stdin)
if a["kind"] == "stage0":
    from spamguard.scoring.model import load_scorer
    scorer = load_scorer(a["cheap"])
else:
    from spamguard.llm.cascade import build_cascade
    scorer = build_cascade(Path(a["cheap"]), Path(a["full"]), Path(a["bands"]))
out = []
paths = a["paths"]
batches = (
    [parse_message(Path(p).read_bytes()) for p in paths[i : i + 64]]
    for i in range(0, len(paths), 64)
)
for scores in score_batches(scorer, batches):
    for s in scores:
        out.append([s.p_spam, s.stage, [[e.feature, e.weight] for e in s.evidence]])
print(json.dumps(out))
"""


def _scores(checkout: Path, request: dict[str, Any]) -> list[list[Any]]:
    """Every message's (p_spam, deciding stage, evidence), scored by ``checkout``'s code."""
    done = subprocess.run(
        [sys.executable, "-c", _SCORES_CHILD],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        cwd=checkout,
    )
    if done.returncode:
        raise SystemExit(f"scoring in {checkout} failed:\n{done.stderr[-3000:]}")
    result: list[list[Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _identity(before: Path, request: dict[str, Any]) -> dict[str, Any]:
    """How the scores of this checkout differ from ``before``'s on the same messages."""
    from spamguard.verdict import verdict_for

    old, new = _scores(before, request), _scores(ROOT, request)
    pairs = list(zip(old, new, strict=True))
    return {
        "messages": len(pairs),
        "max_abs_p_spam_diff": max(abs(a[0] - b[0]) for a, b in pairs),
        "p_spam_changed": sum(a[0] != b[0] for a, b in pairs),
        "verdicts_changed": sum(verdict_for(a[0]) != verdict_for(b[0]) for a, b in pairs),
        "stages_changed": sum(a[1] != b[1] for a, b in pairs),
        "evidence_changed": sum(a[2] != b[2] for a, b in pairs),
        "decided_by_stage": {
            stage: sum(b[1] == stage for b in new) for stage in sorted({b[1] for b in new})
        },
    }


def _row(result: dict[str, Any]) -> dict[str, float]:
    if "error" in result or "skipped" in result:
        raise SystemExit(f"{result['name']}: {result.get('error') or result.get('skipped')}")
    batch = result["batch"]
    return {
        "msgs_per_s": float(batch["msgs_per_s"]),
        "cpu_ms_per_msg": float(batch["cpu_seconds_per_1000"]),
        "auc": float(result.get("auc", float("nan"))),
        "recall_at_1pct_fpr": float(result.get("recall_at_1pct_fpr", float("nan"))),
    }


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": runs}
    for key in ("msgs_per_s", "cpu_ms_per_msg"):
        values = [r[key] for r in runs]
        out[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    out["auc"] = runs[-1]["auc"]
    out["recall_at_1pct_fpr"] = runs[-1]["recall_at_1pct_fpr"]
    return out


def _ratios(mine: list[dict[str, float]], peer: list[dict[str, float]]) -> dict[str, float]:
    pairs = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in zip(mine, peer, strict=True)]
    return {"min": min(pairs), "median": statistics.median(pairs), "max": max(pairs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-n", type=int, default=600, help="messages for the spamd part")
    parser.add_argument("--skip-cascade", action="store_true", help="stage 0 part only")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument(
        "--identity-only",
        action="store_true",
        help="with --before: only compare the two checkouts' scores, no timing",
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        type=Path,
        help="a checkout of an earlier commit: its stage 0 and cascade run as rows too",
    )
    args = parser.parse_args()
    from spamguard.scoring.assemble import default_bands_path, default_cheap_dir
    from spamguard.scoring.model import default_model_dir

    corpus = spamassassin_corpus()
    half = pick_messages(SPLIT, corpus, 10_000)  # the whole test half, in a fixed order
    train = pick_messages(SPLIT, corpus, 10_000, half="train")
    paths, labels = [m[0] for m in half], [m[1] for m in half]
    sample = pick_messages(SPLIT, corpus, args.peer_n)
    s_paths, s_labels = [m[0] for m in sample], [m[1] for m in sample]
    cheap, full, bands = (
        str(default_cheap_dir()),
        str(default_model_dir()),
        str(default_bands_path()),
    )
    stage0 = BenchConfig("stage0", "head", {"model": cheap}, modes=("batch",))
    cascade = BenchConfig(
        "cascade", "cascade", {"cheap": cheap, "full": full, "bands": bands}, modes=("batch",)
    )
    jobs2 = BenchConfig("cascade --jobs 2", "cascade", {"workers": 2}, modes=("batch",))

    rows: dict[str, list[dict[str, float]]] = {}
    before = args.before
    identity: dict[str, Any] = {}
    if before:
        # Both halves, in the split's order: every score and verdict must be as before.
        both = [m[0] for m in half] + [m[0] for m in train]
        base = {"paths": both, "cheap": cheap, "full": full, "bands": bands}
        for kind in ("stage0", "cascade"):
            identity[kind] = _identity(before, {**base, "kind": kind})
            got = identity[kind]
            print(
                f"score identity, {kind}, {got['messages']} messages (test + train halves): "
                f"max |p_spam - before| = {got['max_abs_p_spam_diff']:.3g}, "
                f"p_spam changed {got['p_spam_changed']}, verdicts changed "
                f"{got['verdicts_changed']}, deciding stage changed {got['stages_changed']}, "
                f"evidence changed {got['evidence_changed']} "
                f"(decided by {got['decided_by_stage']})",
                flush=True,
            )
    identical = all(
        not (g["p_spam_changed"] or g["verdicts_changed"] or g["stages_changed"])
        and not g["evidence_changed"]
        for g in identity.values()
    )
    if args.identity_only:
        if args.json:
            Path(args.json).write_text(json.dumps({"identity": identity}, indent=2) + "\n", "utf-8")
        return 0 if identical else 1
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if before:
        jobs.append(("stage 0 before", lambda: _in_checkout(before, stage0, paths, labels)))
    jobs += [
        ("stage 0 (one process)", lambda: _in_child(stage0, paths, labels)),
        ("bogofilter", lambda: bench._bogofilter(paths, labels, train)),
    ]
    if not args.skip_cascade:
        if before:
            jobs += [
                ("cascade before", lambda: _in_checkout(before, cascade, s_paths, s_labels)),
                ("cascade --jobs 2 before", lambda: _in_checkout(before, jobs2, s_paths, s_labels)),
            ]
        jobs += [
            ("cascade (one process)", lambda: _in_child(cascade, s_paths, s_labels)),
            ("cascade (score --jobs 2)", lambda: _in_child(jobs2, s_paths, s_labels)),
            (
                "SpamAssassin spamd (2 children)",
                lambda: bench._spamassassin(s_paths, s_labels, ("batch",)),
            ),
        ]
    started = time.time()
    for r in range(args.rounds):
        for name, run in jobs:
            rows.setdefault(name, []).append(_row(run()))
            last = rows[name][-1]
            print(
                f"round {r + 1} {name:<32} {last['msgs_per_s']:9.1f} msgs/s "
                f"{last['cpu_ms_per_msg']:8.3f} CPU-ms/msg",
                flush=True,
            )
    report: dict[str, Any] = {
        "test_half_messages": len(paths),
        "peer_sample_messages": len(s_paths),
        "rounds": args.rounds,
        "cpu_cores": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "seconds": time.time() - started,
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "rows": {name: _summary(runs) for name, runs in rows.items()},
        "identity": identity,
        "ratios": {
            "stage0 / bogofilter": _ratios(rows["stage 0 (one process)"], rows["bogofilter"]),
        },
    }
    if before:
        report["before"] = str(before)
        report["ratios"]["stage0 before / bogofilter"] = _ratios(
            rows["stage 0 before"], rows["bogofilter"]
        )
        report["ratios"]["stage0 / stage0 before"] = _ratios(
            rows["stage 0 (one process)"], rows["stage 0 before"]
        )
    if not args.skip_cascade:
        spamd = rows["SpamAssassin spamd (2 children)"]
        report["ratios"]["cascade / spamd"] = _ratios(rows["cascade (one process)"], spamd)
        report["ratios"]["cascade --jobs 2 / spamd"] = _ratios(
            rows["cascade (score --jobs 2)"], spamd
        )
        if before:
            report["ratios"]["cascade before / spamd"] = _ratios(rows["cascade before"], spamd)
            report["ratios"]["cascade --jobs 2 before / spamd"] = _ratios(
                rows["cascade --jobs 2 before"], spamd
            )
    print()
    print(
        f"{'row':<34} {'n':>5} {'msgs/s min':>10} {'median':>8} {'CPU-ms min':>10} "
        f"{'median':>8} {'AUC':>8} {'R@1%FPR':>8}"
    )
    for name, summary in report["rows"].items():
        n = len(paths) if name.startswith(("stage 0", "bogofilter")) else len(s_paths)
        print(
            f"{name:<34} {n:>5} {summary['msgs_per_s']['min']:>10.1f} "
            f"{summary['msgs_per_s']['median']:>8.1f} {summary['cpu_ms_per_msg']['min']:>10.3f} "
            f"{summary['cpu_ms_per_msg']['median']:>8.3f} {summary['auc']:>8.5f} "
            f"{summary['recall_at_1pct_fpr']:>8.4f}"
        )
    for name, ratio in report["ratios"].items():
        print(
            f"throughput ratio {name}: median {ratio['median']:.2f}x "
            f"(min {ratio['min']:.2f}x, max {ratio['max']:.2f}x, round by round)"
        )
    print(f"{os.cpu_count()} cores shared; load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
