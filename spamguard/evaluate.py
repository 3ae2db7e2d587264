"""Accuracy metrics for a scored, labelled set, and the ROC/histogram plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD

__all__ = ["auc", "calibration_error", "metrics", "plot", "recall_at_fpr"]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (ties counted half), without sklearn so it is cheap to import."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = p[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def recall_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> tuple[float, float]:
    """Best recall with at most ``max_fpr`` of ham at or above the threshold.

    Returns (recall, threshold). The threshold is the lowest score that keeps the number
    of ham at or above it within floor(max_fpr * n_ham).
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    ham = np.sort(p[~y])[::-1]
    allowed = int(np.floor(max_fpr * len(ham)))
    # Spam must score strictly above the (allowed+1)-th highest ham.
    bar = ham[allowed] if allowed < len(ham) else -np.inf
    recall = float((p[y] > bar).mean()) if y.any() else float("nan")
    return recall, float(bar)


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(p)) if len(p) else float("nan")


def _at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fp / int((~y).sum()) if (~y).any() else float("nan"),
        "false_positives": fp,
        "missed_spam": fn,
    }


def metrics(
    y: Sequence[bool] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    groups: Sequence[str] | None = None,
    *,
    move: float = DEFAULT_MOVE_THRESHOLD,
    flag: float = DEFAULT_FLAG_THRESHOLD,
) -> dict[str, Any]:
    """Every figure `spamguard eval` reports."""
    ya = np.asarray(y, dtype=bool)
    pa = np.asarray(p, dtype=np.float64)
    r01, t01 = recall_at_fpr(ya, pa, 0.001)
    r1, t1 = recall_at_fpr(ya, pa, 0.01)
    out: dict[str, Any] = {
        "n": len(ya),
        "n_spam": int(ya.sum()),
        "n_ham": int((~ya).sum()),
        "roc_auc": auc(ya, pa),
        "recall_at_0.1pct_fpr": r01,
        "recall_at_1pct_fpr": r1,
        "threshold_at_0.1pct_fpr": t01,
        "threshold_at_1pct_fpr": t1,
        "at_move": _at_threshold(ya, pa, move),
        "at_flag": _at_threshold(ya, pa, flag),
        "ece": calibration_error(ya, pa),
    }
    if groups is not None:
        ga = np.asarray(groups)
        per_group: dict[str, Any] = {}
        for g in sorted(set(ga.tolist())):
            mask = ga == g
            is_spam_group = bool(ya[mask].all())
            at_move = pa[mask] >= move
            at_flag = pa[mask] >= flag
            per_group[g] = {
                "n": int(mask.sum()),
                "label": "spam" if is_spam_group else "ham",
                "share_at_move": float(at_move.mean()),
                "share_at_flag": float(at_flag.mean()),
                "count_at_move": int(at_move.sum()),
                "count_at_flag": int(at_flag.sum()),
            }
        out["groups"] = per_group
    return out


def plot(y: np.ndarray, p: np.ndarray, out: Path, *, move: float, flag: float, title: str) -> Path:
    """ROC curve (log FPR axis) and score histogram with the two thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ya = np.asarray(y, dtype=bool)
    pa = np.asarray(p, dtype=np.float64)
    order = np.argsort(-pa)
    tps = np.cumsum(ya[order]) / max(int(ya.sum()), 1)
    fps = np.cumsum(~ya[order]) / max(int((~ya).sum()), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    ax1.plot(np.maximum(fps, 1e-4), tps, color="#1f77b4")
    ax1.set_xscale("log")
    ax1.set_xlim(1e-4, 1)
    ax1.set_ylim(0.5, 1.005)
    ax1.axvline(0.001, color="grey", lw=0.8, ls=":")
    ax1.axvline(0.01, color="grey", lw=0.8, ls=":")
    ax1.set_xlabel("false-positive rate (ham called spam, log scale)")
    ax1.set_ylabel("recall (spam caught)")
    ax1.set_title(f"ROC  AUC={auc(ya, pa):.5f}")
    bins = np.linspace(0, 1, 41)
    ax2.hist(pa[~ya], bins=bins, alpha=0.7, label="ham", color="#2ca02c", log=True)
    ax2.hist(pa[ya], bins=bins, alpha=0.7, label="spam", color="#d62728", log=True)
    ax2.axvline(flag, color="orange", lw=1.5, label=f"flag ≥ {flag:.2f}")
    ax2.axvline(move, color="black", lw=1.5, label=f"move ≥ {move:.2f}")
    ax2.set_xlabel("spam probability")
    ax2.set_ylabel("messages (log)")
    ax2.legend(loc="upper center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
