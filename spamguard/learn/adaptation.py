"""The adaptation harness: K labels from a target mailbox, warm start, metrics before/after."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spamguard.errors import CorpusError
from spamguard.learn.corpus import LabelledMessage
from spamguard.learn.warm import WarmStartOptions, design_for, warm_start_steps
from spamguard.verdict import model_thresholds

__all__ = ["DEFAULT_KS", "adapt_curve", "balanced_sample", "plot_curve", "summary"]

DEFAULT_KS = (10, 20, 50, 100)


def balanced_sample(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k/2 spam and k/2 ham, drawn with a fixed seed (nested: K=20 holds K=10)."""
    rng = np.random.default_rng(seed)
    spam = rng.permutation(np.flatnonzero(y))
    ham = rng.permutation(np.flatnonzero(~y))
    half = k // 2
    if len(spam) < k - half or len(ham) < half:
        raise CorpusError(f"K={k} needs {k - half} spam and {half} ham in the target mailbox")
    return np.sort(np.concatenate([spam[: k - half], ham[:half]]))


def summary(y: np.ndarray, p: np.ndarray, *, move: float, flag: float) -> dict[str, float]:
    from spamguard.evaluate import auc, recall_at_fpr

    ya = np.asarray(y, dtype=bool)
    out = {"n": float(len(ya)), "roc_auc": auc(ya, p)}
    out["recall_at_1pct_fpr"] = recall_at_fpr(ya, p, 0.01)[0]
    out["recall_at_move"] = float((p[ya] >= move).mean()) if ya.any() else float("nan")
    out["ham_at_move"] = float((p[~ya] >= move).mean()) if (~ya).any() else float("nan")
    out["errors_at_flag"] = float(((p >= flag) != ya).sum())
    return out


def adapt_curve(
    parent: Any,
    target: Sequence[LabelledMessage],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    options: WarmStartOptions | None = None,
    evaluate_on: dict[str, Sequence[LabelledMessage]] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """For each K: K balanced labels from ``target`` -> warm start from ``parent``.

    Metrics before and after on "rest" (the target minus those K) and on each named set
    of ``evaluate_on``. Every design matrix is built once.
    """
    options = options if options is not None else WarmStartOptions()
    say = on_step or (lambda _text: None)
    saved = model_thresholds(parent.thresholds)
    move, flag = saved.move, saved.flag
    y = np.asarray([it.is_spam for it in target], dtype=bool)
    say(f"features of {len(target)} target messages")
    X, XH = design_for(
        parent.featurizer, [it.message for it in target], headerless=options.augment_headerless
    )
    sets: dict[str, tuple[Any, np.ndarray]] = {}
    for name, items in (evaluate_on or {}).items():
        say(f"features of {len(items)} messages in {name!r}")
        sets[name] = (
            parent.featurizer.transform([it.message for it in items]),
            np.asarray([it.is_spam for it in items], dtype=bool),
        )

    def proba(model: Any, Xe: Any) -> np.ndarray:
        return np.asarray(model.head.calibrate(model.head.decision_function(Xe)))

    rows: list[dict[str, Any]] = []
    for k in ks:
        picked = balanced_sample(y, k, seed)
        rest = np.setdiff1d(np.arange(len(y)), picked)
        items = [target[i] for i in picked]
        design = (X[picked], XH[picked] if XH is not None else None)
        say(f"K={k}: warm start")
        gen = warm_start_steps(parent, items, options, design=design, source=f"adapt K={k}")
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                result = stop.value
                break
        model = result.model
        row: dict[str, Any] = {"k": k, "seconds": round(result.seconds, 2), "sets": {}}
        # "rest" (the target minus the K labels) is the set to tune on; named sets report.
        named = {"rest of target": (X[rest], y[rest]), **sets}
        for name, (Xe, ye) in named.items():
            row["sets"][name] = {
                "before": summary(ye, proba(parent, Xe), move=move, flag=flag),
                "after": summary(ye, proba(model, Xe), move=move, flag=flag),
            }
        rows.append(row)
    return {
        "parent": parent.version,
        "seed": seed,
        "options": {
            "l2": options.l2,
            "user_weight": options.user_weight,
            "intercept_l2": options.intercept_l2,
            "calibration": options.calibration,
        },
        "n_target": len(target),
        "rows": rows,
    }


def plot_curve(result: dict[str, Any], out: Path, *, title: str = "") -> Path:
    """AUC and recall at 1% FPR against K, before (dashed) and after (solid), per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ks = [r["k"] for r in rows]
    names = list(rows[0]["sets"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for ax, metric, label in (
        (axes[0], "roc_auc", "ROC AUC"),
        (axes[1], "recall_at_1pct_fpr", "recall at 1% FPR"),
    ):
        for i, name in enumerate(names):
            color = f"C{i}"
            before = [r["sets"][name]["before"][metric] for r in rows]
            after = [r["sets"][name]["after"][metric] for r in rows]
            ax.plot(ks, before, ls="--", color=color, marker="o", alpha=0.6)
            ax.plot(ks, after, ls="-", color=color, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("K user labels (balanced)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="solid: adapted, dashed: before")
    fig.suptitle(title or f"adaptation of {result['parent']}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
