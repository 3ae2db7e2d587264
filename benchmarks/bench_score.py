"""`spamguard score --jsonl` on the test half: int8 ONNX encoder vs the fp32 torch reference.

Runs the real CLI twice in one go (same messages, same model, same machine state), then
prints msgs/s for each, the ratio, and the AUC of each run's scores against the labels.

    .venv/bin/python benchmarks/bench_score.py [--limit N] [--json OUT]

Needs the shared corpus (shared/corpora/fetch-spamassassin) and the default model.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from _corpora import spamassassin_corpus


def run(encoder: str, folder: Path, model: str | None) -> tuple[float, dict[str, float], float]:
    cmd = [
        sys.executable,
        "-m",
        "spamguard",
        "score",
        "--jsonl",
        "--no-cascade",
        "--encoder",
        encoder,
    ]
    if model:
        cmd += ["--model", model]
    cmd.append(str(folder))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    scores = {}
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        if "p_spam" in rec:
            scores[Path(rec["path"]).name] = rec["p_spam"]
    return elapsed, scores, len(proc.stdout.splitlines()) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="messages (0 = the whole test half)")
    parser.add_argument("--model", help="model dir (default: shipped)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    from spamguard.evaluate import auc

    rows = [r for r in csv.DictReader(SPLIT.open(), delimiter="\t") if r["split"] == "test"]
    if args.limit and args.limit < len(rows):
        # An evenly spaced subset keeps every group (the split lists them one after another).
        step = len(rows) / args.limit
        rows = [rows[int(i * step)] for i in range(args.limit)]
    corpus = spamassassin_corpus()
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    labels = {}
    for r in rows:
        name = r["path"].replace("/", "__")
        shutil.copyfile(corpus / r["path"], tmp / name)
        labels[name] = r["label"] == "spam"
    # Warm both paths once (ONNX export, torch import caches) so neither pays first-run costs.
    warm = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    shutil.copyfile(tmp / next(iter(labels)), warm / "m.eml")
    for enc in ("int8", "torch"):
        run(enc, warm, args.model)
    results = {}
    for enc in ("int8", "torch"):
        elapsed, scores, _ = run(enc, tmp, args.model)
        names = sorted(scores)
        results[enc] = {
            "seconds": elapsed,
            "msgs_per_s": len(scores) / elapsed,
            "auc": auc([labels[n] for n in names], [scores[n] for n in names]),
        }
    ratio = results["int8"]["msgs_per_s"] / results["torch"]["msgs_per_s"]
    auc_drop = results["torch"]["auc"] - results["int8"]["auc"]
    print(f"{len(labels)} test-half messages, spamguard score --jsonl (process start included)")
    print(f"{'encoder':<8} {'msgs/s':>8} {'seconds':>8} {'AUC':>9}")
    for enc, r in results.items():
        print(f"{enc:<8} {r['msgs_per_s']:>8.1f} {r['seconds']:>8.1f} {r['auc']:>9.5f}")
    print(f"int8 / torch throughput ratio: {ratio:.2f}x (goal >= 1.8x)")
    print(f"AUC change int8 vs torch: {-auc_drop:+.5f} (goal: lower by at most 0.0005)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "ratio": ratio, "auc_drop": auc_drop}, indent=2)
        )
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(warm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
