"""Test-half check of the cascade against always running stage 1 (the acceptance rule:
AUC within 0.0005, recall at 0.1% FPR no lower). The bands were chosen on the train half.

    python benchmarks/cascade_eval.py CHEAP_DIR FULL_DIR BANDS.json [OUT.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from _corpora import SPAMASSASSIN_SPLIT as SPLIT

from spamguard.evaluate import metrics
from spamguard.learn.corpus import load_split
from spamguard.llm.cascade import build_cascade
from spamguard.scoring.model import load_scorer

CORPUS = Path("/root/.cache/spamguard/corpora/spamassassin")


def main() -> None:
    cheap, full, bands = (Path(a) for a in sys.argv[1:4])
    items = load_split(SPLIT, CORPUS, "test")
    y = [it.is_spam for it in items]
    groups = [it.group for it in items]
    msgs = [it.message for it in items]
    stage1 = load_scorer(full)
    cascade = build_cascade(cheap, full, bands)
    out = {}
    for name, scorer in (("stage1 always", stage1), ("cascade", cascade)):
        t = time.perf_counter()
        probs = []
        for i in range(0, len(msgs), 64):
            probs += [s.p_spam for s in scorer.score(msgs[i : i + 64])]
        m = metrics(y, probs, groups)
        out[name] = {
            "seconds": time.perf_counter() - t,
            "roc_auc": m["roc_auc"],
            "recall_at_0.1pct_fpr": m["recall_at_0.1pct_fpr"],
            "recall_at_1pct_fpr": m["recall_at_1pct_fpr"],
            "at_move": m["at_move"],
            "at_flag": m["at_flag"],
        }
    out["cascade_stage_share"] = cascade.stage_shares()
    a, b = out["stage1 always"], out["cascade"]
    out["acceptance"] = {
        "auc_drop": a["roc_auc"] - b["roc_auc"],
        "auc_within_0.0005": a["roc_auc"] - b["roc_auc"] <= 0.0005,
        "recall_0.1pct_no_lower": b["recall_at_0.1pct_fpr"] >= a["recall_at_0.1pct_fpr"],
        "n_test": len(items),
        "n_spam": int(np.sum(y)),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if len(sys.argv) > 4:
        Path(sys.argv[4]).write_text(text + "\n")


if __name__ == "__main__":
    main()
