"""LLM stage accuracy: label-token choice and Platt calibration by train-subset CV, stacking
decision by train-subset CV, and the three-way table (LLM alone / head alone / combined) on
the fixed test subset.

Inputs: the raw label log-odds written by `llm_logodds.py` for the train and test subsets
(both label variants from one forward pass of the mail each), the stage-1 head's
cross-validated train-half probabilities (`spamguard cascade fit --oof-out`) and the stage-1
model itself for the test subset. Nothing is fitted on test.

    python benchmarks/llm_accuracy.py WORKDIR STAGE1_DIR OOF.npz [--write-catalog]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from spamguard.evaluate import auc, recall_at_fpr

CORPUS = Path("/root/.cache/spamguard/corpora/spamassassin")


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def cv_probs(X: np.ndarray, y: np.ndarray, C: float = 1.0, folds: int = 5) -> np.ndarray:
    out = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y):
        lr = LogisticRegression(C=C, max_iter=1000).fit(X[tr], y[tr])
        out[te] = lr.predict_proba(X[te])[:, 1]
    return out


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def row(name: str, y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, object]:
    hard = groups == "hard-ham-1"
    return {
        "scorer": name,
        "n": len(y),
        "auc": auc(y, p),
        "recall_at_1pct_fpr": recall_at_fpr(y, p, 0.01)[0],
        "recall_at_5pct_fpr": recall_at_fpr(y, p, 0.05)[0],
        "accuracy_at_0.5": float(((p >= 0.5) == y).mean()),
        "log_loss": log_loss(y, p),
        "hard_ham_at_flag_0.5": int((p[hard] >= 0.5).sum()),
        "hard_ham_at_move_0.9": int((p[hard] >= 0.9).sum()),
        "spam_missed_at_0.5": int((p[y] < 0.5).sum()),
    }


def main() -> None:
    work, stage1, oof_file = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    model = "smollm2-135m-instruct"
    tr = [json.loads(x) for x in (work / f"{model}-train.jsonl").read_text().splitlines()]
    te = [json.loads(x) for x in (work / f"{model}-test.jsonl").read_text().splitlines()]
    y_tr = np.array([r["is_spam"] for r in tr])
    y_te = np.array([r["is_spam"] for r in te])
    report: dict[str, object] = {"train_subset": len(tr), "test_subset": len(te)}

    # 1. Label tokens: CV on the train subset only.
    variants = {}
    for v in tr[0]["logodds"]:
        x = np.array([r["logodds"][v] for r in tr]).reshape(-1, 1)
        p = cv_probs(x, y_tr, C=1e4)
        variants[v] = {"cv_auc": auc(y_tr, x[:, 0]), "cv_log_loss": log_loss(y_tr, p)}
    best = min(variants, key=lambda v: variants[v]["cv_log_loss"])
    report["label_variants_train_cv"] = variants
    report["chosen_variant"] = best
    x_tr = np.array([r["logodds"][best] for r in tr])
    x_te = np.array([r["logodds"][best] for r in te])
    platt = LogisticRegression(C=1e4, max_iter=1000).fit(x_tr.reshape(-1, 1), y_tr)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    report["platt"] = {"a": a, "b": b}

    # 2. Head probabilities: cross-validated on train, the trained model on test.
    oof = np.load(oof_file, allow_pickle=False)
    index = {str(r): i for i, r in enumerate(oof["refs"])}
    h_tr = np.array([oof["p_full"][index[r["ref"]]] for r in tr])
    from spamguard.learn.corpus import load_split
    from spamguard.scoring.model import load_scorer

    wanted = {r["ref"] for r in te}
    items = {it.ref: it for it in load_split(SPLIT, CORPUS, "test") if it.ref in wanted}
    scorer = load_scorer(stage1)
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    h_te = np.array([s.p_spam for s in scorer.score([items[r["ref"]].message for r in te])])

    # 3. Stacking only if it beats the head alone in train-subset CV.
    X_head = logit(h_tr).reshape(-1, 1)
    X_both = np.column_stack([logit(h_tr), x_tr])
    cv_head = cv_probs(X_head, y_tr)
    cv_both = cv_probs(X_both, y_tr)
    stack = {
        "head_alone_cv_log_loss": log_loss(y_tr, cv_head),
        "stacked_cv_log_loss": log_loss(y_tr, cv_both),
        "head_alone_cv_auc": auc(y_tr, cv_head),
        "stacked_cv_auc": auc(y_tr, cv_both),
    }
    # Stack only for a real gain: the LLM alone must rank better than chance in CV, and the
    # stacked log loss must beat the head's by 2% (a 200-message subset moves less than
    # that by re-fitting the head's calibration alone).
    llm_cv_auc = variants[best]["cv_auc"]
    use_stack = (
        llm_cv_auc >= 0.6
        and stack["stacked_cv_log_loss"] < 0.98 * stack["head_alone_cv_log_loss"]
        and stack["stacked_cv_auc"] >= stack["head_alone_cv_auc"]
    )
    stack["use_stacking"] = bool(use_stack)
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(X_both, y_tr)
    stack["stacker"] = {
        "w_head": float(lr.coef_[0, 0]),
        "w_llm": float(lr.coef_[0, 1]),
        "bias": float(lr.intercept_[0]),
    }
    report["stacking_train_cv"] = stack

    # 4. Test subset: three-way table (nothing above saw these messages).
    groups = np.array([r["group"] for r in te])
    p_llm = 1 / (1 + np.exp(-(a * x_te + b)))
    p_both = lr.predict_proba(np.column_stack([logit(h_te), x_te]))[:, 1]
    report["test_table"] = [
        row("LLM alone (SmolLM2-135M Q4_1, Platt)", y_te, p_llm, groups),
        row("head alone (stage 1)", y_te, h_te, groups),
        row("combined (stacked, fitted on train subset)", y_te, p_both, groups),
    ]
    report["llm_seconds_per_message_mean"] = float(np.mean([r["seconds"] for r in tr + te]))
    print(json.dumps(report, indent=2))
    if "--write-catalog" in sys.argv:
        from spamguard_models import CATALOG

        cat = json.loads(Path(CATALOG).read_text())
        for m in cat["models"]:
            if m["name"] == model:
                m["calibration"] = {
                    "prompt": "classify-chatml-1"
                    + ("" if "+" not in best else "+" + best.split("+")[1]),
                    "a": round(a, 6),
                    "b": round(b, 6),
                    "fitted_on": f"fixed stratified subset of the train half ({len(tr)} messages, "
                    "seed 0), label tokens chosen by 5-fold CV on it",
                    "stacking": stack["stacker"] if use_stack else None,
                }
        Path(CATALOG).write_text(json.dumps(cat, indent=2) + "\n")


if __name__ == "__main__":
    main()
