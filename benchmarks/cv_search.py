"""Cross-validated comparison of head configurations on the TRAIN half only.

    .venv/bin/python benchmarks/cv_search.py --embeddings ~/.cache/spamguard/work/emb_cache.npz \
        [--split SPLIT.tsv] [--corpus DIR] [--seeds 0 1 2] [--out cv_search.json]

Reproduces the final table of the head search: the shipped configuration (blocks words=1,
headers=1, chars=1, hand=1, embedding=0.5; liblinear C=100; header-less augmentation; Platt
on out-of-fold scores of both copies) against candidates that stack the head's log-odds with
a token naive Bayes score (and optionally a Robinson/bogofilter-style score, a few
sender/link consistency signals, and the scores of the message's header-less copy) in a
small logistic stacker.

Everything is measured by 5-fold StratifiedKFold(shuffle=True, random_state=seed) on the
train half. Only ``split == train`` rows of the split file are ever read: the test half is
never parsed, scored or used for any choice.

The stacker is trained without leakage (nested cross-validation): in each outer fold the head
and the naive Bayes models are cross-validated again on the outer-training rows, the stacker
is fitted on those inner out-of-fold scores, and the held-out fold is scored by a head, a
naive Bayes and a stacker that never saw it. Each message's header-less copy is scored by the
same fold models (for the header-less figures), and Platt calibration is fitted on the outer
out-of-fold scores of both copies, as `spamguard.learn.fit.train_steps` does.

Sentence embeddings come from a precomputed cache keyed by
`spamguard.scoring.encoder.encoder_text`; the encoder is never run. A message whose exact text
is missing from the cache takes the cached vector of a text with the same subject line (or
zeros), and the script says how many did.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spamguard.evaluate import metrics  # noqa: E402
from spamguard.learn.corpus import load_split  # noqa: E402
from spamguard.message import Message, parse_message  # noqa: E402
from spamguard.scoring.encoder import encoder_text  # noqa: E402
from spamguard.scoring.features import (  # noqa: E402
    SENDER_FEATURES,
    FeatureConfig,
    header_terms,
    headerless_bytes,
    sender_matrix,
    word_terms,
)
from spamguard.scoring.head import Featurizer, LogisticHead, platt_fit  # noqa: E402

CURRENT_BLOCKS = {"words": 1.0, "headers": 1.0, "chars": 1.0, "hand": 1.0, "embedding": 0.5}
CURRENT_C = 100.0
NB_ALPHA = 0.01  # MultinomialNB smoothing over binary word and header terms
NB_SCALE = 100.0  # NB log-ratios run to hundreds; scaled so the stacker's C=1 prior is mild
ROBINSON_S, ROBINSON_X, ROBINSON_MIN_DEV = 0.0178, 0.52, 0.375  # bogofilter's defaults
STACKER_C = 1.0

# The sender / link consistency signals are the product's: spamguard.scoring.features.

# -- token scores: multinomial naive Bayes and Robinson (bogofilter-like) --------------------


def token_matrix(messages: Sequence[Message], cfg: FeatureConfig) -> sparse.csr_matrix:
    """Binary presence of the head's hashed word and header terms (two hashed spaces)."""
    from sklearn.feature_extraction import FeatureHasher

    hasher = FeatureHasher(n_features=cfg.n_features, input_type="string", alternate_sign=False)
    words = hasher.transform(word_terms(m, cfg) for m in messages)
    headers = hasher.transform(header_terms(m) for m in messages)
    mat = sparse.hstack([words, headers], format="csr").astype(np.float64)
    mat.data[:] = 1.0
    return mat


def robinson_fit(tokens: sparse.csr_matrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token log-odds of Robinson's f(w) and whether the token is strong enough to count."""
    n_spam = tokens[y].sum(axis=0).A1
    n_ham = tokens[~y].sum(axis=0).A1
    a, b = n_spam / max(int(y.sum()), 1), n_ham / max(int((~y).sum()), 1)
    p = np.where(a + b > 0, a / np.maximum(a + b, 1e-12), ROBINSON_X)
    count = n_spam + n_ham
    f = (ROBINSON_S * ROBINSON_X + count * p) / (ROBINSON_S + count)
    f = np.clip(f, 1e-6, 1 - 1e-6)
    strong = (np.abs(f - 0.5) > ROBINSON_MIN_DEV).astype(np.float64)
    return np.log(f / (1 - f)) * strong, strong


def robinson_score(model: tuple[np.ndarray, np.ndarray], tokens: sparse.csr_matrix) -> np.ndarray:
    """Mean log-odds of the message's strong tokens (a geometric-mean Robinson score)."""
    log_odds, strong = model
    return np.asarray((tokens @ log_odds) / np.maximum(tokens @ strong, 1.0), dtype=np.float64)


# -- cross-validation ------------------------------------------------------------------------

Scorer = Callable[[sparse.csr_matrix, sparse.csr_matrix], np.ndarray]


def fit_scorer(
    rows: np.ndarray,
    y: np.ndarray,
    X: sparse.csr_matrix,
    XH: sparse.csr_matrix,
    T: sparse.csr_matrix,
    TH: sparse.csr_matrix,
) -> Scorer:
    """Head, NB and Robinson fitted on ``rows`` and their header-less copies.

    The returned function maps (design rows, token rows) to columns [head, nb, robinson,
    robinson mean over all terms, nb mean over all terms].
    """
    from sklearn.naive_bayes import MultinomialNB

    ya = np.concatenate([y[rows], y[rows]])
    head = LogisticHead(C=CURRENT_C).fit(sparse.vstack([X[rows], XH[rows]], format="csr"), ya)
    tokens = sparse.vstack([T[rows], TH[rows]], format="csr")
    nb = MultinomialNB(alpha=NB_ALPHA).fit(tokens, ya)
    rob = robinson_fit(tokens, ya)

    lr = nb.feature_log_prob_[1] - nb.feature_log_prob_[0]

    def score(Xm: sparse.csr_matrix, Tm: sparse.csr_matrix) -> np.ndarray:
        jll = nb.predict_joint_log_proba(Tm)
        n_terms = np.maximum(np.asarray(Tm.sum(axis=1)).ravel(), 1.0)
        return np.column_stack(
            [
                head.decision_function(Xm),
                (jll[:, 1] - jll[:, 0]) / NB_SCALE,
                robinson_score(rob, Tm),
                (Tm @ rob[0]) / n_terms,  # Robinson log-odds averaged over all terms
                (Tm @ lr) / n_terms,  # NB log-ratio averaged over all terms (the product's)
            ]
        )

    return score


def nested_scores(
    y: np.ndarray,
    X: sparse.csr_matrix,
    XH: sparse.csr_matrix,
    T: sparse.csr_matrix,
    TH: sparse.csr_matrix,
    seed: int,
) -> list[dict[str, Any]]:
    """Per outer fold: held-out rows, their scores (full and header-less), inner OOF scores."""
    from sklearn.model_selection import StratifiedKFold

    n = len(y)
    folds: list[dict[str, Any]] = []
    outer = StratifiedKFold(5, shuffle=True, random_state=seed)
    for k, (train_idx, held_idx) in enumerate(outer.split(np.zeros(n), y)):
        started = time.perf_counter()
        score = fit_scorer(train_idx, y, X, XH, T, TH)
        inner = np.zeros((len(train_idx), 5))
        inner_h = np.zeros((len(train_idx), 5))
        inner_folds = StratifiedKFold(5, shuffle=True, random_state=seed + 1)
        for fit_rows, pred_rows in inner_folds.split(np.zeros(len(train_idx)), y[train_idx]):
            rows = train_idx[pred_rows]
            s = fit_scorer(train_idx[fit_rows], y, X, XH, T, TH)
            inner[pred_rows] = s(X[rows], T[rows])
            inner_h[pred_rows] = s(XH[rows], TH[rows])
        folds.append(
            {
                "train": train_idx,
                "held": held_idx,
                "outer": score(X[held_idx], T[held_idx]),
                "outer_h": score(XH[held_idx], TH[held_idx]),
                "inner": inner,
                "inner_h": inner_h,
            }
        )
        secs = time.perf_counter() - started
        print(f"  seed {seed} fold {k + 1}/5 ({secs:.0f} s)", file=sys.stderr, flush=True)
    return folds


# Candidates: which score columns (0 head, 1 nb, 2 robinson, 3 robinson mean over all terms,
# 4 nb mean: what spamguard.learn.fit ships as the "tokens" block), whether the sender features
# enter the stacker, and whether the scores of the message's header-less copy do too (for a
# header-less copy, its own scores again). "current" is the head's own out-of-fold log-odds.
CANDIDATES: dict[str, tuple[list[int], bool, bool]] = {
    "current head (C=100, e=0.5)": ([0], False, False),
    "head + NB stacker": ([0, 1], False, False),
    "head + Robinson stacker": ([0, 2], False, False),
    "head + Robinson + sender stacker": ([0, 2], True, False),
    "head + Robinson-mean + sender stacker": ([0, 3], True, False),
    "head + NB-mean + sender stacker (tokens + sender blocks)": ([0, 4], True, False),
    "head + NB + Robinson stacker": ([0, 1, 2], False, False),
    "head + NB + sender stacker": ([0, 1], True, False),
    "head + NB + Robinson + sender stacker": ([0, 1, 2], True, False),
    "head + NB + sender + header-less scores": ([0, 1], True, True),
}


def stacked_oof(
    folds: list[dict[str, Any]],
    y: np.ndarray,
    S: np.ndarray,
    SH: np.ndarray,
    cols: list[int],
    with_sender: bool,
    with_headerless: bool,
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    oof, oof_h = np.zeros(n), np.zeros(n)
    for f in folds:
        tr, te = f["train"], f["held"]
        if cols == [0] and not with_sender and not with_headerless:
            oof[te], oof_h[te] = f["outer"][:, 0], f["outer_h"][:, 0]
            continue

        def feats(
            scores: np.ndarray, stripped: np.ndarray, rows: np.ndarray, sender: np.ndarray
        ) -> np.ndarray:
            parts = [scores[:, cols]]
            if with_headerless:
                parts.append(stripped[:, cols])
            if with_sender:
                parts.append(sender[rows])
            return np.hstack(parts)

        A = np.vstack(
            [
                feats(f["inner"], f["inner_h"], tr, S),
                feats(f["inner_h"], f["inner_h"], tr, SH),
            ]
        )
        stacker = LogisticRegression(C=STACKER_C, max_iter=3000)
        stacker.fit(A, np.concatenate([y[tr], y[tr]]).astype(int))
        oof[te] = stacker.decision_function(feats(f["outer"], f["outer_h"], te, S))
        oof_h[te] = stacker.decision_function(feats(f["outer_h"], f["outer_h"], te, SH))
    return oof, oof_h


def summarize(
    oof: np.ndarray, oof_h: np.ndarray, y: np.ndarray, groups: list[str]
) -> dict[str, Any]:
    """The project's metrics on Platt-calibrated OOF scores, plus two low-FPR figures."""
    a, b = platt_fit(np.concatenate([oof, oof_h]), np.concatenate([y, y]))
    p = 1.0 / (1.0 + np.exp(-np.clip(a * oof + b, -50, 50)))
    ph = 1.0 / (1.0 + np.exp(-np.clip(a * oof_h + b, -50, 50)))
    m = metrics(y, p, groups)
    mh = metrics(y, ph, groups)
    ham = np.sort(oof[~y])[::-1]
    spam = oof[y]
    # mean recall over the ham-count thresholds 0..1% FPR (a normalised partial AUC)
    pauc = float(np.mean([(spam > ham[k]).mean() for k in range(int(0.01 * len(ham)) + 1)]))
    bar95 = np.sort(spam)[math.floor(0.05 * len(spam))]
    hard = np.asarray(groups) == "hard-ham-1"
    return {
        "roc_auc": m["roc_auc"],
        "recall_at_0.1pct_fpr": m["recall_at_0.1pct_fpr"],
        "recall_at_1pct_fpr": m["recall_at_1pct_fpr"],
        "pauc_1pct": pauc,
        "recall_at_move": m["at_move"]["recall"],
        "ham_at_move": m["at_move"]["false_positives"],
        "hard_ham_at_move": m["groups"]["hard-ham-1"]["count_at_move"],
        "ham_above_95pct_recall": int((oof[~y] >= bar95).sum()),
        "hard_ham_above_95pct_recall": int((oof[hard] >= bar95).sum()),
        "ece": m["ece"],
        "headerless_roc_auc": mh["roc_auc"],
        "headerless_recall_at_1pct_fpr": mh["recall_at_1pct_fpr"],
        "platt": [a, b],
    }


# -- data ------------------------------------------------------------------------------------


def load_embeddings(path: Path, messages: Sequence[Message]) -> tuple[np.ndarray, int]:
    with np.load(path, allow_pickle=False) as data:
        known = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
    by_subject: dict[str, np.ndarray] = {}
    for text, vec in known.items():
        by_subject.setdefault(text.split("\n", 1)[0], vec)
    rows, fallbacks = [], 0
    for m in messages:
        text = encoder_text(m.subject, m.text)
        if text in known:
            rows.append(known[text])
        else:
            fallbacks += 1
            first = text.split("\n", 1)[0]
            rows.append(by_subject.get(first, np.zeros(384, dtype=np.float32)))
    return np.stack(rows).astype(np.float32), fallbacks


def compress(X: sparse.csr_matrix, XH: sparse.csr_matrix) -> tuple[Any, Any]:
    """Drop columns no row uses (same fit, much less memory traffic)."""
    used = np.unique(np.concatenate([X.indices, XH.indices]))
    return X[:, used].tocsr(), XH[:, used].tocsr()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--split", type=Path, default=ROOT.parent / "shared/corpora/spamassassin-split.tsv"
    )
    parser.add_argument(
        "--corpus", type=Path, default=Path.home() / ".cache/spamguard/corpora/spamassassin"
    )
    parser.add_argument(
        "--embeddings", type=Path, default=Path.home() / ".cache/spamguard/work/emb_cache.npz"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="CV shuffle seeds")
    parser.add_argument("--out", type=Path, help="write the table as JSON")
    args = parser.parse_args()

    started = time.perf_counter()
    items = load_split(args.split, args.corpus, "train")  # the train half only, never test
    messages = [it.message for it in items]
    stripped = [parse_message(headerless_bytes(m)) for m in messages]
    y = np.asarray([it.is_spam for it in items], dtype=bool)
    groups = [it.group for it in items]
    emb, fallbacks = load_embeddings(args.embeddings, messages)
    emb_h, _ = load_embeddings(args.embeddings, stripped)
    print(
        f"train half: {len(items)} messages ({int(y.sum())} spam); "
        f"{fallbacks} embeddings not in the cache (subject-line fallback)",
        file=sys.stderr,
    )
    cfg = FeatureConfig()
    featurizer = Featurizer(config=cfg, weights=dict(CURRENT_BLOCKS))
    X, XH = compress(featurizer.transform(messages, emb), featurizer.transform(stripped, emb_h))
    T, TH = compress(token_matrix(messages, cfg), token_matrix(stripped, cfg))
    S, SH = sender_matrix(messages), sender_matrix(stripped)

    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        folds = nested_scores(y, X, XH, T, TH, seed)
        for name, (cols, with_sender, with_headerless) in CANDIDATES.items():
            oof, oof_h = stacked_oof(folds, y, S, SH, cols, with_sender, with_headerless)
            results.append({"config": name, "cv_seed": seed, **summarize(oof, oof_h, y, groups)})

    header = (
        "| config | seed | AUC | rec@0.1% | rec@1% | pAUC≤1% | rec@0.90 | ham@0.90 (hard) "
        "| ham above 95% recall (hard) | ECE | header-less AUC |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in results:
        print(
            f"| {r['config']} | {r['cv_seed']} | {r['roc_auc']:.5f} "
            f"| {r['recall_at_0.1pct_fpr']:.3f} | {r['recall_at_1pct_fpr']:.3f} "
            f"| {r['pauc_1pct']:.4f} | {r['recall_at_move']:.3f} "
            f"| {r['ham_at_move']} ({r['hard_ham_at_move']}) "
            f"| {r['ham_above_95pct_recall']} ({r['hard_ham_above_95pct_recall']}) "
            f"| {r['ece']:.4f} | {r['headerless_roc_auc']:.5f} |"
        )
    if args.out:
        payload = {
            "split": str(args.split),
            "half": "train",
            "folds": 5,
            "seeds": args.seeds,
            "current": {"blocks": CURRENT_BLOCKS, "C": CURRENT_C, "augment_headerless": True},
            "nb": {"alpha": NB_ALPHA, "scale": NB_SCALE},
            "robinson": {"s": ROBINSON_S, "x": ROBINSON_X, "min_dev": ROBINSON_MIN_DEV},
            "stacker_C": STACKER_C,
            "sender_features": [name for name, _ in SENDER_FEATURES],
            "embedding_fallbacks": fallbacks,
            "seconds": round(time.perf_counter() - started, 1),
            "results": results,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
