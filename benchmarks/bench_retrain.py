"""Retraining with N user labels: seconds for the first retrain (features computed and cached)
and for the next one (cached rows). Target: <= 10 s for 1,000 labels on 2 cores.

    python benchmarks/bench_retrain.py --model MODEL_DIR [--labels 1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _corpora import SPAMASSASSIN_SPLIT as SPLIT

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path.home() / ".cache" / "spamguard" / "corpora" / "spamassassin"


def main() -> int:
    import csv

    from spamguard.learn.loop import LearnOptions, retrain_steps
    from spamguard.learn.registry import ModelRegistry
    from spamguard.message import parse_message
    from spamguard.store import Store

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--labels", type=int, default=1000)
    args = ap.parse_args()
    with SPLIT.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == "train"]
    rows = rows[:: max(1, len(rows) // args.labels)][: args.labels]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.sqlite3")
        for r in rows:
            raw = (CORPUS / r["path"]).read_bytes()
            msg = parse_message(raw)
            label = "spam" if r["label"] == "spam" else "ham"
            store.record_feedback(
                "bench", msg.message_id, msg.content_hash, label, "bench", raw=raw
            )
        registry = ModelRegistry(Path(tmp) / "models")
        base = registry.register_dir(args.model, activate=True)
        options = LearnOptions(shadow_messages=0, background=False)
        for run in ("first (features computed)", "second (cached features)"):
            started = time.perf_counter()
            gen = retrain_steps(store, registry, options)
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    outcome = stop.value
                    break
            figures[run] = round(time.perf_counter() - started, 2)
            print(f"{len(rows)} labels, {run}: {figures[run]} s -> {outcome.state}")
            registry.promote(base)  # retrain from the same parent again
        store.close()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
