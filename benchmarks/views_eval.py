"""What padding-proof scoring (spamguard/scoring/views.py) costs on untouched mail.

    python benchmarks/views_eval.py [--sets sa-test,sa-headerless,modern-dev,demo]
                                    [--embeddings-cache CACHE.npz] [--json OUT]

Scores each set with the shipped model's full head twice, views off (as before) and on (as
shipped), and prints for each: ROC AUC, spam recall at 0.1% and 1% FPR, recall and ham at
the move and flag thresholds, ECE, and the hard-ham group at the move threshold (SpamAssassin)
or the legitimate mail flagged and moved (modern dev, demo). Measurement only: the view
settings were chosen on train data (benchmarks/evasion_views.py); reading the SpamAssassin
test half and the modern dev half here chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import evasion
from _corpora import SPAMASSASSIN_SPLIT as SA_SPLIT

ROOT = Path(__file__).resolve().parents[1]
SA_CORPUS = Path.home() / ".cache/spamguard/corpora/spamassassin"


def _sets(
    names: list[str], modern: Path, spam_every: int
) -> dict[str, tuple[list[Any], list[bool], list[str]]]:
    from spamguard.demo import demo_labels, demo_mailbox_path
    from spamguard.learn.corpus import load_manifest, load_split
    from spamguard.message import learn_authserv_id, parse_message
    from spamguard.scoring.features import headerless_bytes

    out: dict[str, tuple[list[Any], list[bool], list[str]]] = {}
    if "sa-test" in names or "sa-headerless" in names:
        items = load_split(SA_SPLIT, SA_CORPUS, "test")
        msgs = [it.message for it in items]
        y = [it.is_spam for it in items]
        groups = [it.group for it in items]
        if "sa-test" in names:
            out["sa-test"] = (msgs, y, groups)
        if "sa-headerless" in names:
            out["sa-headerless"] = ([parse_message(headerless_bytes(m)) for m in msgs], y, groups)
    if "modern-dev" in names:
        rows = load_manifest(ROOT / "data/modern/manifest.tsv", modern, "dev")
        # Every legitimate message; the honeypot spam sampled evenly when asked to.
        spam = [r for r in rows if r[0].is_spam]
        rows = [r for r in rows if not r[0].is_spam] + spam[::spam_every]
        out["modern-dev"] = (
            [r[1].message for r in rows],
            [r[0].is_spam for r in rows],
            [r[0].source for r in rows],
        )
    if "demo" in names:
        labels = demo_labels()
        files = sorted((demo_mailbox_path() / "cur").iterdir())
        files = [f for f in files if f.name in labels]
        server = learn_authserv_id(parse_message(f.read_bytes()) for f in files)
        out["demo"] = (
            [parse_message(f.read_bytes(), authserv_id=server) for f in files],
            [labels[f.name] == "spam" for f in files],
            [f.name for f in files],
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="sa-test,sa-headerless,modern-dev,demo")
    ap.add_argument("--modern-corpus", type=Path, default=Path("/tmp/model/modern"))
    ap.add_argument("--embeddings-cache", type=Path)
    ap.add_argument(
        "--modern-spam-every", type=int, default=1, help="every N-th modern dev spam (1 = all)"
    )
    ap.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks/results/issue21-views-eval.json"
    )
    args = ap.parse_args()

    from spamguard.evaluate import metrics
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import default_model_dir, load_scorer
    from spamguard.scoring.views import ViewConfig

    memo = evasion._MemoEncoder(load_encoder("int8", threads=1), args.embeddings_cache)
    scorer = load_scorer(default_model_dir(), encoder=memo)
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    shipped = scorer.model.views
    if not shipped.enabled:  # the shipped model runs without them: measure the default ones
        shipped = ViewConfig(enabled=True)
    result: dict[str, Any] = {"model": scorer.version, "views": shipped.to_json(), "sets": {}}
    for name, (msgs, y, groups) in _sets(
        args.sets.split(","), args.modern_corpus, args.modern_spam_every
    ).items():
        for label, views in (("off", ViewConfig(enabled=False)), ("on", shipped)):
            scorer.model.views = views
            p: list[float] = []
            for i in range(0, len(msgs), 64):
                p += [s.p_spam for s in scorer.score(msgs[i : i + 64])]
            memo.save()
            m = metrics(y, p, groups, move=0.9, flag=0.5)
            pa, ya = np.asarray(p), np.asarray(y, dtype=bool)
            row = {
                "n": len(p),
                "roc_auc": m["roc_auc"],
                "recall_at_0.1pct_fpr": m["recall_at_0.1pct_fpr"],
                "recall_at_1pct_fpr": m["recall_at_1pct_fpr"],
                "ece": m["ece"],
                "spam_recall_at_move": float(np.mean(pa[ya] >= 0.9)) if ya.any() else None,
                "ham_at_move": int(np.sum(pa[~ya] >= 0.9)),
                "ham_at_flag": int(np.sum(pa[~ya] >= 0.5)),
                "n_ham": int((~ya).sum()),
            }
            if name.startswith("sa"):
                row["hard_ham_1_at_move"] = m["groups"]["hard-ham-1"]["count_at_move"]
            if name == "demo":
                row["ham_scores"] = {
                    g: round(float(s), 3) for g, s, t in zip(groups, p, y, strict=True) if not t
                }
            result["sets"].setdefault(name, {})[label] = row
            print(
                f"{name:14} views {label:3}  AUC {row['roc_auc']:.5f}  "
                f"R@0.1% {row['recall_at_0.1pct_fpr']:.3f}  R@1% {row['recall_at_1pct_fpr']:.3f}"
                f"  spam@0.90 {row['spam_recall_at_move'] or 0:.3f}  ham>=0.90 "
                f"{row['ham_at_move']}/{row['n_ham']}  ham>=0.50 {row['ham_at_flag']}"
                f"  ECE {row['ece']:.4f}"
                + (
                    f"  hard-ham-1@0.90 {row['hard_ham_1_at_move']}"
                    if "hard_ham_1_at_move" in row
                    else ""
                ),
                flush=True,
            )
    scorer.model.views = shipped
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
