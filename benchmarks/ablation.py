"""Ablation: what each feature block of the head contributes, on the split and header-less.

    .venv/bin/python benchmarks/ablation.py [--embeddings CACHE.npz] [--json OUT]

For each variant (the default blocks; each block left out; the sentence embedding added;
the embedding alone) a head is trained on the TRAIN half and measured once on the test
half, full and reduced to Subject + text. Nothing here chooses the shipped model: its
blocks were picked by cross-validation on the train half; this table only reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from _corpora import spamassassin_corpus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

VARIANTS: dict[str, dict[str, float]] = {
    "default (words+headers+chars+hand)": {"words": 1, "headers": 1, "chars": 1, "hand": 1},
    "− words": {"headers": 1, "chars": 1, "hand": 1},
    "− headers": {"words": 1, "chars": 1, "hand": 1},
    "− chars": {"words": 1, "headers": 1, "hand": 1},
    "− hand": {"words": 1, "headers": 1, "chars": 1},
    "+ embedding 0.5 (the shipped blocks)": {
        "words": 1,
        "headers": 1,
        "chars": 1,
        "hand": 1,
        "embedding": 0.5,
    },
    "+ embedding": {"words": 1, "headers": 1, "chars": 1, "hand": 1, "embedding": 1},
    "embedding only": {"embedding": 1},
    "stacked: + tokens NB + sender (the shipped default-3)": {
        "words": 1,
        "headers": 1,
        "chars": 1,
        "hand": 1,
        "embedding": 0.5,
        "tokens": 1,
        "sender": 1,
    },
    "stacked − embedding": {
        "words": 1,
        "headers": 1,
        "chars": 1,
        "hand": 1,
        "tokens": 1,
        "sender": 1,
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embeddings", help="precomputed encoder vectors (see train_default)")
    parser.add_argument("--json", help="write the table as JSON")
    parser.add_argument("--only", action="append", help="run only variants containing this")
    args = parser.parse_args()
    from train_default import _LookupEncoder  # type: ignore[import-not-found]

    from spamguard.evaluate import metrics
    from spamguard.learn.corpus import load_split
    from spamguard.learn.fit import TrainOptions, train
    from spamguard.message import parse_message
    from spamguard.scoring.features import headerless_bytes
    from spamguard.scoring.model import HeadScorer

    corpus = spamassassin_corpus()
    train_items = load_split(SPLIT, corpus, "train")
    test_items = load_split(SPLIT, corpus, "test")
    test_msgs = [it.message for it in test_items]
    test_hl = [parse_message(headerless_bytes(m)) for m in test_msgs]
    y = np.asarray([it.is_spam for it in test_items])
    groups = [it.group for it in test_items]
    encoder = _LookupEncoder(Path(args.embeddings)) if args.embeddings else None
    rows: dict[str, Any] = {}
    for name, blocks in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        start = time.perf_counter()
        options = TrainOptions(
            blocks=tuple((b, float(w)) for b, w in blocks.items()),
            keep_neighbours=False,
            folds=3,
        )
        model = train(train_items, options, encoder=encoder)
        scorer = HeadScorer(model, encoder=encoder, top_evidence=0, neighbours=0)
        row: dict[str, Any] = {"train_cv": model.metrics["train_cv"]}
        for variant, msgs in (("full", test_msgs), ("headerless", test_hl)):
            p = np.asarray([s.p_spam for s in scorer.score(msgs)])
            m = metrics(y, p, groups)
            row[variant] = {
                "auc": m["roc_auc"],
                "recall_0.1": m["recall_at_0.1pct_fpr"],
                "recall_1": m["recall_at_1pct_fpr"],
                "ham_at_flag": int(((p >= 0.5) & ~y).sum()),
            }
        row["seconds"] = time.perf_counter() - start
        rows[name] = row
        f, h = row["full"], row["headerless"]
        print(
            f"| {name} | {f['auc']:.5f} | {f['recall_0.1']:.1%} | {f['recall_1']:.1%} | "
            f"{h['auc']:.5f} | {h['recall_0.1']:.1%} | {h['ham_at_flag']} |",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
