"""Adaptation on a shift built from the shared corpus: a base head trained on the train half
without hard-ham-1 and spam-2, warm-started on K of their train-half messages, evaluated on
the test half's hard-ham-1 + spam-2 and on the full test half.

    python benchmarks/adaptation_shift.py --out benchmarks/results/adaptation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _corpora import SPAMASSASSIN_SPLIT as SPLIT

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path.home() / ".cache" / "spamguard" / "corpora" / "spamassassin"
SHIFT = ("hard-ham-1", "spam-2")


def main() -> int:
    from spamguard.learn.adaptation import adapt_curve, plot_curve
    from spamguard.learn.corpus import load_split
    from spamguard.learn.fit import TrainOptions, train
    from spamguard.learn.warm import WarmStartOptions
    from spamguard.scoring.model import load_model, save_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adaptation")
    ap.add_argument("--l2", type=float, nargs="*", default=[0.1])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    say = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr)  # noqa: E731

    train_half = load_split(SPLIT, CORPUS, "train")
    test_half = load_split(SPLIT, CORPUS, "test")
    base_dir = args.out / "base-without-shift"
    if (base_dir / "config.json").is_file():
        base = load_model(base_dir)
    else:
        items = [it for it in train_half if it.group not in SHIFT]
        say(f"training the base head on {len(items)} messages (no {', '.join(SHIFT)})")
        options = TrainOptions(keep_neighbours=False, folds=3, version="base-without-shift")
        base = train(items, options, source="train half without hard-ham-1 and spam-2")
        save_model(base, base_dir)
    target = [it for it in train_half if it.group in SHIFT]
    evaluate_on = {
        "test: hard-ham-1 + spam-2": [it for it in test_half if it.group in SHIFT],
        "test: full half": test_half,
        "test: without the shift": [it for it in test_half if it.group not in SHIFT],
    }
    results = {}
    for l2 in args.l2:
        say(f"adapting with l2={l2}")
        result = adapt_curve(
            base,
            target,
            seed=args.seed,
            options=WarmStartOptions(l2=l2),
            evaluate_on=evaluate_on,
            on_step=say,
        )
        results[str(l2)] = result
        plot_curve(
            result,
            args.out / f"adaptation-l2-{l2:g}.png",
            title=f"base without hard-ham-1/spam-2, adapted with K labels (l2={l2:g})",
        )
        for row in result["rows"]:
            for name, m in row["sets"].items():
                b, a = m["before"], m["after"]
                print(
                    f"l2={l2:<5g} K={row['k']:<4d} {name:<25s} "
                    f"AUC {b['roc_auc']:.5f} -> {a['roc_auc']:.5f}   "
                    f"r@1%FPR {b['recall_at_1pct_fpr']:.3f} -> {a['recall_at_1pct_fpr']:.3f}   "
                    f"recall@move {b['recall_at_move']:.3f} -> {a['recall_at_move']:.3f}   "
                    f"ham@move {b['ham_at_move']:.4f} -> {a['ham_at_move']:.4f}   "
                    f"({row['seconds']} s)"
                )
    (args.out / "adaptation.json").write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
