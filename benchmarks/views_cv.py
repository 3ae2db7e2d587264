"""Choose how a model combines a message's score with its views' on TRAIN data only.

    python benchmarks/views_cv.py measure --out /tmp/views-oof.npz [--modern-weights 0 0.3 1]
        [--embeddings CACHE.npz] [--per-spam 2]
    python benchmarks/views_cv.py choose /tmp/views-oof.npz [--json OUT]

The base blocks (logistic head, token naive Bayes, sender signals and their stacker) are
trained on REAL messages only: the SpamAssassin train half and the licence-clean modern
train half (data/modern/manifest.tsv without rf-peixoto/phishing_pot, CC BY-NC). What makes
the model robust to padding sits above them, in how a message's log-odds is combined with
its views' (spamguard/scoring/views.py):

    log-odds = d + lift_weight * max(0, best view's d - view_margin - d)

(lift_weight 1 is the plain "highest of message and views"). That combination is chosen
here from out-of-fold scores of real messages AND of padded copies of the training spam
(scripts/padding_augment.py: links, a paragraph or quoted lines of another training ham,
training ham subjects; never the evasion benchmark's texts or sites).

`measure` builds one training set: the real messages (weight 1, modern ones the weight
under test), the padded copies and every view of every real message and copy (weight 0:
scored out-of-fold, never learnt from; held out with their original in the grouped folds,
kept out of the stacker/calibration). It featurizes once and fits the default recipe
(`spamguard.learn.fit`'s stacked fit, 5 grouped folds) once per modern weight, storing each
item's out-of-fold log-odds (whole message and header-less variant).

`choose` compares, for each modern weight and each (lift_weight, view_margin): on the
SpamAssassin train half's originals the AUC, recall at 0.1% and 1% FPR, ham at the move
threshold and the header-less AUC; on the modern train half's ham how many cross the flag
and move thresholds; and for the padded copies, each kind's recall at the move threshold
next to their originals' (both combined the same way). No test or dev half is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

MOVE, FLAG = 0.90, 0.50
LOGIT_MOVE = float(np.log(MOVE / (1 - MOVE)))
LOGIT_FLAG = 0.0


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def measure(args: argparse.Namespace) -> int:
    import train_default as td

    from spamguard.learn.corpus import LabelledMessage, load_split
    from spamguard.learn.fit import TrainOptions, _cv_splits, _fit_stacked, _headerless
    from spamguard.message import parse_message
    from spamguard.scoring.features import FeatureConfig
    from spamguard.scoring.head import Featurizer
    from spamguard.scoring.views import ViewConfig, message_views

    t0 = time.time()
    corpus, split = Path(args.corpus), Path(args.split)
    sa = load_split(split, corpus, "train")
    modern = td.modern_training_rows(
        Path(args.modern_manifest), Path(args.modern_corpus), exclude=("rf-peixoto/phishing_pot",)
    )
    reals = sa + [it for _, it in modern]
    copies = td.padding_copies(corpus, split, Path(args.modern_corpus), modern, args.per_spam)
    padded = [
        LabelledMessage(f"padded-{c.kind}:{c.original}", True, "padded", parse_message(c.raw))
        for c in copies
    ]
    cfg = ViewConfig(enabled=True)
    # role: 0 real SA, 1 real modern, 2 padded copy, 3 view of a real, 4 view of a copy
    items: list[Any] = []
    role: list[int] = []
    owner: list[int] = []  # index (into items) of the real message or copy a view belongs to
    group: list[str] = []
    kind: list[str] = []
    source: list[str] = []
    view_name: list[str] = []
    modern_src = {it.ref: e.source for e, it in modern}
    for i, it in enumerate(reals):
        items.append(it)
        role.append(0 if i < len(sa) else 1)
        owner.append(len(items) - 1)
        group.append(it.ref)
        kind.append("")
        source.append(modern_src.get(it.ref, "spamassassin"))
        view_name.append("")
    for c, it in zip(copies, padded, strict=True):
        items.append(it)
        role.append(2)
        owner.append(len(items) - 1)
        group.append(c.original)
        kind.append(c.kind)
        source.append("padded")
        view_name.append("")
    n_base = len(items)
    for j in range(n_base):
        base = items[j]
        for name, view in message_views(base.message, cfg):
            items.append(LabelledMessage(f"{base.ref}#{name}", base.is_spam, base.group, view))
            role.append(3 if role[j] < 2 else 4)
            owner.append(j)
            group.append(group[j])
            kind.append(kind[j])
            source.append(source[j])
            view_name.append(name)
    role_a = np.asarray(role)
    print(
        f"{len(reals)} real ({len(sa)} SpamAssassin, {len(modern)} modern), {len(copies)} "
        f"padded copies, {int((role_a >= 3).sum())} views; {time.time() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    options = TrainOptions(version="views-cv", blocks=tuple(td.DEFAULT_MODEL_BLOCKS.items()))
    featurizer = Featurizer(config=FeatureConfig(), weights=dict(options.blocks))
    messages = [it.message for it in items]
    encoder = td._LookupEncoder(Path(args.embeddings))
    texts = [featurizer.encoder_input(m) for m in messages]
    emb = np.zeros((len(texts), 384), dtype=np.float32)
    for start in range(0, len(texts), 256):
        emb[start : start + 256] = encoder.encode(texts[start : start + 256])
        if start % 2560 == 0:
            print(f"  embedding {start}/{len(texts)}", file=sys.stderr, flush=True)
    encoder.save()
    print(f"embedded; {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    X = featurizer.transform(messages, emb)
    XH = featurizer.transform(_headerless(messages), emb)
    print(f"featurized; {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    y = np.asarray([it.is_spam for it in items], dtype=bool)
    splits = _cv_splits(options, y, group)
    out: dict[str, Any] = {
        "role": role_a,
        "owner": np.asarray(owner),
        "y": y,
        "kind": np.asarray(kind),
        "source": np.asarray(source),
        "view": np.asarray(view_name),
        "ref": np.asarray([it.ref for it in items]),
        "modern_weights": np.asarray(args.modern_weights, dtype=np.float64),
    }
    for w in args.modern_weights:
        sw = np.where(role_a == 0, 1.0, np.where(role_a == 1, w, 0.0))
        gen = _fit_stacked(options, featurizer, X, XH, y, sw, splits, sw)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            fitted = stop.value
        out[f"d_{w:g}"] = _logit(fitted.oof_p)
        out[f"dh_{w:g}"] = _logit(fitted.oof_p_headerless)
        out[f"stacker_{w:g}"] = np.asarray(json.dumps(fitted.stacker))
        print(f"modern weight {w:g} fitted; {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    np.savez_compressed(args.out, **out)
    print(args.out)
    return 0


def combine(
    d: np.ndarray, owner: np.ndarray, n: int, lift_weight: float, margin: float
) -> np.ndarray:
    """Each message's log-odds lifted by its best view's: ``d[:n]`` are the messages, the rest
    their views (``owner`` the message each belongs to)."""
    best = d[:n].copy()
    views = np.arange(n, len(d))
    np.maximum.at(best, owner[views], d[views])
    # A view identical to its message is not scored; best >= d.
    lifted = np.maximum(0.0, best - margin - d[:n])
    return d[:n] + lift_weight * lifted


def _recall_at_fpr(spam: np.ndarray, ham: np.ndarray, fpr: float) -> float:
    k = int(np.floor(fpr * len(ham)))
    thr = np.sort(ham)[::-1][k] if k < len(ham) else -np.inf
    return float(np.mean(spam > thr))


def _auc(spam: np.ndarray, ham: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(spam)), np.zeros(len(ham))], np.r_[spam, ham]))


def figures(data: Any, w_mod: float, lift_weight: float, margin: float) -> dict[str, Any]:
    role, owner, y, kind = data["role"], data["owner"], data["y"], data["kind"]
    n = int((role <= 2).sum())  # messages and copies come first, views after
    out: dict[str, Any] = {}
    for key, tag in (("d", "full"), ("dh", "headerless")):
        s = combine(data[f"{key}_{w_mod:g}"], owner, n, lift_weight, margin)
        sa = role[:n] == 0
        spam, ham = s[sa & y[:n]], s[sa & ~y[:n]]
        out[tag] = {
            "auc": _auc(spam, ham),
            "recall_0.1": _recall_at_fpr(spam, ham, 0.001),
            "recall_1": _recall_at_fpr(spam, ham, 0.01),
            "ham_moved": int((ham >= LOGIT_MOVE).sum()),
            "recall_move": float(np.mean(spam >= LOGIT_MOVE)),
        }
        if tag == "full":
            mham = s[(role[:n] == 1) & ~y[:n]]
            out["modern_ham"] = {
                "n": len(mham),
                "flagged": int((mham >= LOGIT_FLAG).sum()),
                "moved": int((mham >= LOGIT_MOVE).sum()),
            }
            # Each copy next to its original, both combined the same way.
            ref_index = {r: i for i, r in enumerate(data["ref"][:n]) if role[i] <= 1}
            copies = np.flatnonzero(role[:n] == 2)
            orig = np.asarray([ref_index[r.split(":", 1)[1]] for r in data["ref"][copies]])
            pad: dict[str, Any] = {}
            for k in sorted(set(kind[copies])):
                sel = kind[copies] == k
                before = s[orig[sel]] >= LOGIT_MOVE
                after = s[copies[sel]] >= LOGIT_MOVE
                pad[k] = {
                    "n": int(sel.sum()),
                    "untouched": float(before.mean()),
                    "padded": float(after.mean()),
                    "drop_points": float(100 * (before.mean() - after.mean())),
                }
            out["padding"] = pad
    return out


def choose(args: argparse.Namespace) -> int:
    data = dict(np.load(args.oof, allow_pickle=False))
    rows = []
    print(
        "mod_w  lift  margin |  AUC     r@0.1%  r@1%   ham>=.9 | hl AUC  | mod ham flag/move "
        "| padding drop (points): links paragraph quoted subject"
    )
    for w_mod in data["modern_weights"]:
        for lift in args.lift_weights:
            for margin in args.margins if lift > 0 else [0.0]:
                f = figures(data, float(w_mod), lift, margin)
                fu, fh = f["full"], f["headerless"]
                drops = " ".join(
                    f"{f['padding'][k]['drop_points']:+6.1f}" for k in sorted(f["padding"])
                )
                print(
                    f"{w_mod:5.2f} {lift:5.2f} {margin:6.1f} | {fu['auc']:.5f} "
                    f"{fu['recall_0.1']:6.1%} {fu['recall_1']:6.1%} {fu['ham_moved']:5d} | "
                    f"{fh['auc']:.5f} | {f['modern_ham']['flagged']:4d}/"
                    f"{f['modern_ham']['moved']:<3d}      | {drops}"
                )
                rows.append(
                    {"modern_weight": float(w_mod), "lift_weight": lift, "margin": margin, **f}
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", "utf-8")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--corpus", default=str(Path.home() / ".cache/spamguard/corpora/spamassassin"))
    m.add_argument("--split", default="/work/shared/corpora/spamassassin-split.tsv")
    m.add_argument("--modern-corpus", default=str(Path.home() / ".cache/spamguard/corpora/modern"))
    m.add_argument("--modern-manifest", default=str(ROOT / "data/modern/manifest.tsv"))
    m.add_argument("--modern-weights", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    m.add_argument("--per-spam", type=int, default=2)
    m.add_argument("--embeddings", required=True, help="sentence-vector cache (.npz), updated")
    m.add_argument("--out", required=True)
    c = sub.add_parser("choose")
    c.add_argument("oof")
    c.add_argument("--lift-weights", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0])
    c.add_argument("--margins", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 4.0])
    c.add_argument("--json")
    args = ap.parse_args()
    return measure(args) if args.cmd == "measure" else choose(args)


if __name__ == "__main__":
    raise SystemExit(main())
