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
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
# The tests import this as `benchmarks.views_cv`; a script run finds `_corpora` by itself.
sys.path.insert(0, str(ROOT / "benchmarks"))
from _corpora import SPAMASSASSIN_SPLIT  # noqa: E402

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
    from spamguard.scoring.views import ALL_VIEWS, ViewConfig, view_traits

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
    # Every view, ungated (the gates are chosen below on what each leaves out); the
    # unpadded view cut at runs of 10 or more links (so gates from 10 links up are exact).
    cfg = ViewConfig(enabled=True, views=ALL_VIEWS, gate_links=10)
    # role: 0 real SA, 1 real modern, 2 padded copy, 3 view of a real, 4 view of a copy
    items: list[Any] = []
    role: list[int] = []
    owner: list[int] = []  # index (into items) of the real message or copy a view belongs to
    group: list[str] = []
    kind: list[str] = []
    source: list[str] = []
    view_name: list[str] = []
    # What each view leaves out (spamguard.scoring.views.Dropped), for the gates; 0 for
    # messages and copies.
    traits: list[tuple[int, int, int, int, int, int]] = []
    modern_src = {it.ref: e.source for e, it in modern}
    for i, it in enumerate(reals):
        items.append(it)
        role.append(0 if i < len(sa) else 1)
        owner.append(len(items) - 1)
        group.append(it.ref)
        kind.append("")
        source.append(modern_src.get(it.ref, "spamassassin"))
        view_name.append("")
        traits.append((0, 0, 0, 0, 0, 0))
    for c, it in zip(copies, padded, strict=True):
        items.append(it)
        role.append(2)
        owner.append(len(items) - 1)
        group.append(c.original)
        kind.append(c.kind)
        source.append("padded")
        view_name.append("")
        traits.append((0, 0, 0, 0, 0, 0))
    n_base = len(items)
    for j in range(n_base):
        base = items[j]
        for name, view, dropped in view_traits(base.message, cfg):
            items.append(LabelledMessage(f"{base.ref}#{name}", base.is_spam, base.group, view))
            traits.append(
                (
                    dropped.links_chars,
                    dropped.quote_chars,
                    dropped.text_chars,
                    dropped.links,
                    dropped.subject_chars,
                    dropped.total_chars,
                )
            )
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
        "traits": np.asarray(traits, dtype=np.int64).reshape(-1, 6),
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
    d: np.ndarray,
    owner: np.ndarray,
    n: int,
    lift_weight: float,
    margin: float | np.ndarray,
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Each message's log-odds lifted by its best view's: ``d[:n]`` are the messages, the rest
    their views (``owner`` the message each belongs to); ``margin`` one for all views or one
    per item (views' entries used); ``use`` the views read (all when None: ungated)."""
    best = d[:n].copy()
    views = np.arange(n, len(d))
    m = np.broadcast_to(np.asarray(margin, dtype=np.float64), d.shape)[views]
    if use is not None:
        keep = use[views]
        views, m = views[keep], m[keep]
    np.maximum.at(best, owner[views], d[views] - m)
    lifted = np.maximum(0.0, best - d[:n])
    return d[:n] + lift_weight * lifted


@dataclasses.dataclass(frozen=True)
class Gates:
    """The gate settings of spamguard.scoring.views.ViewConfig, for the CV's arrays."""

    links: int
    quote_share: float
    text_share: float
    text_chars: int
    subject_chars: int
    openings: bool
    margin: float
    body_margin: float
    unpadded: bool = True

    def use(self, data: Any) -> np.ndarray:
        """Which items' views pass the gates (as Dropped.looks_like_padding)."""
        t = data["traits"]
        lc, qc, tc, nl, sc, tot = (t[:, k] for k in range(6))
        tot = np.maximum(tot, 1)
        view = data["view"]
        parts_ok = (
            ((lc == 0) | (nl >= self.links))
            & ((qc == 0) | (qc / tot >= self.quote_share))
            & ((tc == 0) | ((tc / tot >= self.text_share) & (tc >= self.text_chars)))
            & (lc + qc + tc > 0)
        )
        opening = np.char.startswith(view.astype(str), "opening")
        parts_ok &= ~(opening & (tc > 0))  # an opening never counts ordinary text as padding
        ok = np.where(sc > 0, sc >= self.subject_chars, parts_ok) & (view != "")
        if not self.openings:
            ok &= ~opening
        if self.unpadded:
            # Scoring's unpadded view drops runs of links only; the stored one (cut before
            # that was decided) dropped quotes too: only those without a quote are the same.
            ok &= (view != "unpadded") | (qc == 0)
        else:
            ok &= view != "unpadded"
        return np.asarray(ok)

    def view_config(self) -> dict[str, Any]:
        """The views block of a model's config.json (spamguard.scoring.views.ViewConfig)."""
        from spamguard.scoring.views import ALL_VIEWS, ViewConfig

        views = [
            v
            for v in ALL_VIEWS
            if (self.openings or v != "opening") and (self.unpadded or v != "unpadded")
        ]
        if self.subject_chars >= NEVER_SUBJECT:
            views.remove("body")
        cfg = ViewConfig(
            enabled=True,
            views=tuple(views),
            view_margin=self.margin,
            lift_weight=1.0,
            gated=True,
            gate_links=self.links,
            gate_quote_share=self.quote_share,
            gate_text_share=self.text_share,
            gate_text_chars=self.text_chars,
            gate_subject_chars=min(self.subject_chars, NEVER_SUBJECT),
            body_margin=self.body_margin,
        )
        return cfg.to_json()

    def margins(self, data: Any) -> np.ndarray:
        return np.where(data["view"] == "body", self.body_margin, self.margin)


def _recall_at_fpr(spam: np.ndarray, ham: np.ndarray, fpr: float) -> float:
    k = int(np.floor(fpr * len(ham)))
    thr = np.sort(ham)[::-1][k] if k < len(ham) else -np.inf
    return float(np.mean(spam > thr))


def _auc(spam: np.ndarray, ham: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(spam)), np.zeros(len(ham))], np.r_[spam, ham]))


def _copies(data: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The padded copies' indices and their originals' (computed once per data set)."""
    if "_copies" not in data:
        role = data["role"]
        ref_index = {r: i for i, r in enumerate(data["ref"][:n]) if role[i] <= 1}
        copies = np.flatnonzero(role[:n] == 2)
        orig = np.asarray([ref_index[r.split(":", 1)[1]] for r in data["ref"][copies]])
        data["_copies"] = (copies, orig)
    return data["_copies"]  # type: ignore[no-any-return]


def figures(
    data: Any, w_mod: float, lift_weight: float, margin: float, gates: Gates | None = None
) -> dict[str, Any]:
    role, owner, y, kind = data["role"], data["owner"], data["y"], data["kind"]
    n = int((role <= 2).sum())  # messages and copies come first, views after
    out: dict[str, Any] = {}
    use = gates.use(data) if gates is not None else None
    margins: float | np.ndarray = gates.margins(data) if gates is not None else margin
    for key, tag in (("d", "full"), ("dh", "headerless")):
        s = combine(data[f"{key}_{w_mod:g}"], owner, n, lift_weight, margins, use)
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
            # Each copy next to its original, both combined the same way: all copies, those
            # of SpamAssassin and of modern spam, and those whose original scores just
            # above the move threshold (p 0.90-0.985), where a margin costs most.
            copies, orig = _copies(data, n)
            near = (s[orig] >= LOGIT_MOVE) & (s[orig] < LOGIT_MOVE + 2.0)
            for name, family in (
                ("padding", np.ones(len(copies), bool)),
                ("padding_sa", role[orig] == 0),
                ("padding_modern", role[orig] == 1),
                ("padding_near", near),
            ):
                pad: dict[str, Any] = {}
                for k in sorted(set(kind[copies])):
                    sel = (kind[copies] == k) & family
                    before = s[orig[sel]] >= LOGIT_MOVE
                    after = s[copies[sel]] >= LOGIT_MOVE
                    pad[k] = {
                        "n": int(sel.sum()),
                        "untouched": float(before.mean()) if sel.any() else 0.0,
                        "padded": float(after.mean()) if sel.any() else 0.0,
                        "drop_points": (
                            float(100 * (before.mean() - after.mean())) if sel.any() else 0.0
                        ),
                    }
                out[name] = pad
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


NEVER_SUBJECT = 10**6
NEVER_SHARE = 2.0


def _row_text(g: Gates | None, f: dict[str, Any]) -> str:
    fu, fh = f["full"], f["headerless"]

    def drops(key: str) -> str:
        return " ".join(f"{f[key][k]['drop_points']:+5.1f}" for k in sorted(f[key]))

    name = (
        "no views"
        if g is None
        else (
            f"L{g.links:<2d} Q{min(g.quote_share, 9):<4g} T{min(g.text_share, 9):<4g}/"
            f"{g.text_chars:<3d} {'U' if g.unpadded else '-'}"
            f"S{min(g.subject_chars, 999):<3d} {'O' if g.openings else '-'} "
            f"m{g.margin:<4g} b{g.body_margin:<4g}"
        )
    )
    return (
        f"{name:<42} | {fu['auc']:.5f} {fu['recall_0.1']:6.1%} {fu['recall_1']:6.1%} "
        f"{fu['ham_moved']:3d} | {fh['auc']:.5f} | {f['modern_ham']['flagged']:3d}/"
        f"{f['modern_ham']['moved']:<2d} | {drops('padding_sa')} | {drops('padding_modern')} "
        f"| {drops('padding_near')} | {f['views_read']:5d}"
    )


def _worst(f: dict[str, Any], kinds: tuple[str, ...]) -> tuple[float, float]:
    """How far the padded copies' drops exceed the 5 points issue 21 allows, summed over
    the kinds and both families; then the worst drop."""
    drops = [
        f[key][k]["drop_points"]
        for key in ("padding_sa", "padding_modern")
        for k in f[key]
        if f[key][k]["n"] and k in kinds
    ]
    return round(sum(max(0.0, d - 5.0) for d in drops), 6), round(max(drops), 6)


def _feasible(f: dict[str, Any], base: dict[str, Any]) -> bool:
    """The rule fixed before the grid was run: the SpamAssassin train originals keep their
    ranking (AUC within 0.00005, header-less within 0.0001), recall at 0.1% FPR within 0.1
    point, no more ham at the move threshold; modern train ham no more moved, at most one
    more flagged."""
    fu, bu = f["full"], base["full"]
    return (
        fu["auc"] >= bu["auc"] - 5e-5
        and f["headerless"]["auc"] >= base["headerless"]["auc"] - 1e-4
        and fu["recall_0.1"] >= bu["recall_0.1"] - 0.001
        and fu["ham_moved"] <= bu["ham_moved"]
        and f["modern_ham"]["moved"] <= base["modern_ham"]["moved"]
        and f["modern_ham"]["flagged"] <= base["modern_ham"]["flagged"] + 1
    )


def gates(args: argparse.Namespace) -> int:
    """Choose the gates (spamguard.scoring.views.ViewConfig.gated) on the out-of-fold scores:
    first the trimmed/opening/unpadded gates and the margin with the subject-less view off
    (judged on the links, paragraph and quoted copies), then the subject gate and the
    subject-less view's margin with those fixed (judged on all four). Among the settings that
    pass `_feasible` against no views, the one whose copies' drops exceed 5 points by the
    least in sum (each kind, SpamAssassin and modern copies), then the smallest worst drop,
    the fewest views read, the larger margin. (The first version of this rule took the
    smallest worst drop alone; on the run of 2026-12-07 it preferred a setting without the
    unpadded view by 0.1 point of paragraph drop while that view took the links drop from
    5.9 to 0.4 points: this rule was chosen after seeing that, on train data only.)"""
    data = dict(np.load(args.oof, allow_pickle=False))
    w = float(args.modern_weight)
    role = data["role"]
    real_views = role == 3

    def fig(g: Gates | None) -> dict[str, Any]:
        if g is None:
            f = figures(data, w, 0.0, 0.0)
            f["views_read"] = 0
            return f
        f = figures(data, w, 1.0, 0.0, g)
        f["views_read"] = int((g.use(data) & real_views).sum())
        return f

    print(
        f"{'gates':<42} | SA train originals: AUC r@0.1% r@1% ham>=.9 | hl AUC | mod ham "
        "f/m | drop SA copies: links para quoted subj | modern copies | near 0.90 | views read"
    )
    base = fig(None)
    print(_row_text(None, base))
    rows: list[dict[str, Any]] = [{"gates": None, **base}]
    ungated = figures(data, w, 1.0, args.ungated_margin)
    ungated["views_read"] = int(real_views.sum())
    print(f"{'ungated, margin ' + str(args.ungated_margin):<42}" + _row_text(None, ungated)[42:])

    def sweep(grid: list[Gates], kinds: tuple[str, ...]) -> Gates:
        best: tuple[tuple[float, float, int, float], Gates] | None = None
        for g in grid:
            f = fig(g)
            ok = _feasible(f, base)
            rows.append({"gates": dataclasses.asdict(g), "feasible": ok, **f})
            if args.verbose or ok:
                print(_row_text(g, f) + ("" if ok else "  (fails the SA/ham rule)"))
            key = (*_worst(f, kinds), f["views_read"], -g.margin)
            if ok and (best is None or key < best[0]):
                best = (key, g)
        if best is None:
            raise SystemExit("no gate setting passes the rule")
        print(f"chosen: {best[1]}")
        return best[1]

    first = sweep(
        [
            Gates(L, Q, T, C, NEVER_SUBJECT, op, m, 0.0, up)
            for L in args.links
            for Q in args.quote_shares
            for T in args.text_shares
            for C in args.text_chars
            for op in (False, True)
            for m in args.margins
            for up in (False, True)
        ],
        ("links", "paragraph", "quoted"),
    )
    chosen = sweep(
        [
            dataclasses.replace(first, subject_chars=S, body_margin=b)
            for S in args.subject_chars
            for b in args.body_margins
        ],
        ("links", "paragraph", "quoted", "subject"),
    )
    view_config = chosen.view_config()
    print(json.dumps(view_config))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "chosen": dataclasses.asdict(chosen),
                    "view_config": view_config,
                    "oof": str(args.oof),
                    "rows": rows,
                },
                indent=1,
            )
            + "\n",
            "utf-8",
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--corpus", default=str(Path.home() / ".cache/spamguard/corpora/spamassassin"))
    m.add_argument("--split", default=str(SPAMASSASSIN_SPLIT))
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
    g = sub.add_parser("gates")
    g.add_argument("oof")
    g.add_argument("--modern-weight", type=float, default=0.0)
    g.add_argument("--links", type=int, nargs="+", default=[10, 20, 30])
    g.add_argument("--quote-shares", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 2.0])
    g.add_argument("--text-shares", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 2.0])
    g.add_argument("--text-chars", type=int, nargs="+", default=[150, 300, 500])
    g.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    g.add_argument("--subject-chars", type=int, nargs="+", default=[60, 80, 100, NEVER_SUBJECT])
    g.add_argument(
        "--body-margins", type=float, nargs="+", default=[-2.0, -1.5, -1.0, -0.5, 0.0, 0.5]
    )
    g.add_argument("--ungated-margin", type=float, default=0.5)
    g.add_argument("--verbose", action="store_true")
    g.add_argument("--json")
    args = ap.parse_args()
    if args.cmd == "gates":
        return gates(args)
    return measure(args) if args.cmd == "measure" else choose(args)


if __name__ == "__main__":
    raise SystemExit(main())
