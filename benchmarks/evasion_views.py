"""Choose the scoring views (spamguard/scoring/views.py) on TRAIN data only.

    python benchmarks/evasion_views.py measure --set sa-train|modern-train --out /tmp/x.npz
    python benchmarks/evasion_views.py choose /tmp/a.npz /tmp/b.npz

`measure` scores every message of one train set with the shipped model, whole and through
each view (with the view's own sentence vector and with the whole message's), and every
spam again under the tricks of benchmarks/evasion.py that dilute a message. It stores the
log-odds per message, variant and view. `choose` then compares view settings offline:
recall at the move threshold untouched and under each trick, and how many ham cross the
flag and move thresholds, for each setting.

The sets: ``sa-train`` is the SpamAssassin train half (the shipped model was trained on it,
so its ham scores are optimistic); ``modern-train`` is the train part of the modern corpus
(data/modern/manifest.tsv; never trained on by the shipped model; phishing_pot is used here
for measurement only). No test or dev half is read here.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import evasion
from _corpora import SPAMASSASSIN_SPLIT as SA_SPLIT

SA_CORPUS = Path.home() / ".cache/spamguard/corpora/spamassassin"
MODERN = Path(__file__).resolve().parents[1] / "data/modern/manifest.tsv"
TRICKS = (
    "links-unrelated",
    "links-own",
    "words-paragraph",
    "words-newsletter",
    "subject-long",
)
LENGTHS = (250, 500, 1000, 2000)
TRIMS = (1, 2, 3)
VIEWS = (
    "whole",
    *(f"opening-{n}" for n in LENGTHS),
    "body",
    *(f"body-opening-{n}" for n in LENGTHS),
    *(f"trimmed-{n}" for n in TRIMS),
)


def _rows(set_name: str, corpus: Path, every_spam: int, every_ham: int) -> list[tuple[str, int]]:
    if set_name == "sa-train":
        split, base = SA_SPLIT, SA_CORPUS
    else:
        split, base = MODERN, corpus
    with split.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == "train"]
    spam = [r for r in rows if r["label"] == "spam"][::every_spam]
    ham = [r for r in rows if r["label"] == "ham"][::every_ham]
    return [(str(base / evasion._local_path(r)), int(r["label"] == "spam")) for r in spam + ham]


def measure(args: argparse.Namespace) -> int:
    from spamguard.errors import NotMailError
    from spamguard.message import parse_message
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import default_model_dir, load_model
    from spamguard.scoring.views import ViewConfig, _opening, _trimmed, _without_subject

    model = load_model(default_model_dir())
    fz = model.featurizer
    coef = model.head.coef_
    memo = evasion._MemoEncoder(load_encoder("int8", threads=1), args.embeddings_cache)
    rows = _rows(args.set, args.corpus, args.every_spam, args.every_ham)
    print(f"{len(rows)} messages of {args.set}", file=sys.stderr)
    names = ["untouched", *TRICKS]
    cfg = ViewConfig(enabled=True, max_links=args.max_links)
    # dec[message, variant, view]: log-odds of the whole message and of each view, every
    # view with the whole message's sentence vector (no extra encoder call).
    dec = np.full((len(rows), len(names), len(VIEWS)), np.nan)
    labels = np.asarray([y for _, y in rows])
    t0 = time.perf_counter()
    for i, (path, y) in enumerate(rows):
        raw = Path(path).read_bytes()
        for v, name in enumerate(names):
            if name != "untouched" and not y:
                continue
            try:
                new = raw if name == "untouched" else evasion.TRICKS[name](raw)
            except Exception:
                new = None
            if new is None:
                continue
            try:
                msg = parse_message(new)
            except NotMailError:
                continue
            openings = [_opening(msg, n, cfg) for n in LENGTHS]
            msgs = [msg, *openings, _without_subject(msg)]
            msgs += [_without_subject(m) for m in openings]
            msgs += [_trimmed(msg, n, cfg) or msg for n in TRIMS]
            emb = memo.encode([fz.encoder_input(msg)])
            X = fz.transform(msgs, np.repeat(emb, len(msgs), axis=0))
            dec[i, v, :] = X @ coef + model.head.intercept_
        if i % 25 == 0:
            print(f"{i}/{len(rows)} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
            memo.save()
    memo.save()
    np.savez(
        args.out,
        dec=dec,
        labels=labels,
        variants=np.asarray(names),
        views=np.asarray(VIEWS),
        paths=np.asarray([p for p, _ in rows]),
    )
    print(args.out)
    return 0


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _combos() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"none": ["whole"], "body": ["whole", "body"]}
    for k in TRIMS:
        trims = [f"trimmed-{n}" for n in TRIMS[:k]]
        out[f"t{k}"] = ["whole", *trims]
        out[f"t{k}+body"] = ["whole", "body", *trims]
        for lengths in ((500, 1000), (250, 500, 1000), (500, 1000, 2000)):
            key = "o" + "/".join(str(n) for n in lengths)
            opens = [f"opening-{n}" for n in lengths] + [f"body-opening-{n}" for n in lengths]
            out[f"{key}+t{k}+body"] = ["whole", "body", *opens, *trims]
    for k in range(1, len(LENGTHS) + 1):
        for start in range(len(LENGTHS) - k + 1):
            lengths = LENGTHS[start : start + k]
            key = "o" + "/".join(str(n) for n in lengths)
            out[key] = ["whole", *(f"opening-{n}" for n in lengths)]
            out[key + "+body"] = [*out[key], "body", *(f"body-opening-{n}" for n in lengths)]
    return out


def choose(args: argparse.Namespace) -> int:
    for f in args.files:
        data = np.load(f)
        dec, y = data["dec"], data["labels"].astype(bool)
        variants = list(data["variants"])
        views = list(data["views"])
        print(f"\n== {f}: {y.sum()} spam, {(~y).sum()} ham")
        for cname, vnames in _combos().items():
            idx = [views.index(v) for v in vnames]
            for margin in args.margins:
                if cname == "none" and margin:
                    continue
                d = dec.copy()
                d[:, :, 1:] -= margin
                best = np.nanmax(d[:, :, idx], axis=2)
                p = _sig(best)
                ham = p[~y, 0]
                base = p[y, 0]
                from spamguard.evaluate import auc

                both = np.concatenate([base, ham])
                truth = np.concatenate([np.ones(len(base)), np.zeros(len(ham))])
                line = (
                    f"{cname:26} m={margin:<3} ham>=.1 {np.sum(ham >= 0.1):3d} >=.5 "
                    f"{np.sum(ham >= 0.5):3d} >=.9 {np.sum(ham >= 0.9):2d} AUC "
                    f"{auc(truth, both):.5f} | spam@.9 {np.mean(base >= 0.9):.3f} |"
                )
                worst = 0.0
                for v, vname in enumerate(variants[1:], start=1):
                    ok = ~np.isnan(p[y, v])
                    delta = 100 * (np.mean(p[y, v][ok] >= 0.9) - np.mean(base[ok] >= 0.9))
                    worst = min(worst, delta)
                    line += f" {vname[:9]} {delta:+5.1f}"
                print(line + f" | worst {worst:+5.1f}")
    return 0


CONFIGS: dict[str, dict[str, object]] = {
    "none": {"enabled": False},
    "default": {},  # ViewConfig's settings (views on)
    "shared-vector": {"own_embedding": False},
    "o500/1000+t1": {"openings": [500, 1000], "trims": [1]},
    "margin-0.5": {"view_margin": 0.5},
    "o500+": {"openings": [500, 1000, 2000], "trims": [1, 2]},
    "o500+t3": {"openings": [500, 1000, 2000], "trims": [1, 2, 3]},
    "o500+t3-m0.5": {"openings": [500, 1000, 2000], "trims": [1, 2, 3], "view_margin": 0.5},
    "o375+t3": {"openings": [375, 500, 750, 1000, 2000], "trims": [1, 2, 3]},
    "o1000+": {"openings": [1000, 2000], "trims": [1, 2]},
    "o1000+t1": {"openings": [1000, 2000], "trims": [1]},
    "o500+m0.5": {"openings": [500, 1000, 2000], "trims": [1, 2], "view_margin": 0.5},
    "o500+m1": {"openings": [500, 1000, 2000], "trims": [1, 2], "view_margin": 1.0},
}


def scorer_run(args: argparse.Namespace) -> int:
    """Score a set with the real HeadScorer under each view setting (ViewConfig JSON)."""
    from spamguard.errors import NotMailError
    from spamguard.evaluate import auc
    from spamguard.message import parse_message
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import default_model_dir, load_scorer
    from spamguard.scoring.views import ViewConfig

    memo = evasion._MemoEncoder(load_encoder("int8", threads=1), args.embeddings_cache)
    scorer = load_scorer(default_model_dir(), encoder=memo)
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    rows = _rows(args.set, args.corpus, args.every_spam, args.every_ham)
    names = ["untouched", *TRICKS]
    msgs: dict[tuple[int, str], object] = {}
    for i, (path, y) in enumerate(rows):
        raw = Path(path).read_bytes()
        for name in names if y else names[:1]:
            try:
                new = raw if name == "untouched" else evasion.TRICKS[name](raw)
                if new is not None:
                    msgs[(i, name)] = parse_message(new)
            except (NotMailError, Exception):
                continue
    keys = list(msgs)
    y = np.asarray([rows[i][1] for i, _ in keys], dtype=bool)
    out = {}
    for cname in args.configs:
        scorer.model.views = ViewConfig.from_json({"enabled": True, **CONFIGS[cname]})
        t0 = time.process_time()
        p = np.concatenate(
            [
                [s.p_spam for s in scorer.score([msgs[k] for k in keys[a : a + 64]])]  # type: ignore[misc]
                for a in range(0, len(keys), 64)
            ]
        )
        cpu = time.process_time() - t0
        memo.save()
        variant = np.asarray([n for _, n in keys])
        base = {i: p[k] for k, (i, n) in enumerate(keys) if n == "untouched"}
        ham = p[(variant == "untouched") & ~y]
        spam_u = p[(variant == "untouched") & y]
        truth = np.concatenate([np.ones(len(spam_u)), np.zeros(len(ham))])
        line = (
            f"{cname:14} cpu {cpu:5.0f}s ham>=.1 {np.sum(ham >= 0.1):3d} >=.5 "
            f"{np.sum(ham >= 0.5):3d} >=.9 {np.sum(ham >= 0.9):2d} AUC "
            f"{auc(truth, np.concatenate([spam_u, ham])):.5f} | spam@.9 "
            f"{np.mean(spam_u >= 0.9):.3f} |"
        )
        row = {}
        for name in TRICKS:
            idx = [k for k, (i, n) in enumerate(keys) if n == name and i in base]
            after = np.asarray([p[k] for k in idx])
            before = np.asarray([base[keys[k][0]] for k in idx])
            d = 100 * (np.mean(after >= 0.9) - np.mean(before >= 0.9))
            row[name] = d
            line += f" {name[:9]} {d:+5.1f}"
        print(line, flush=True)
        out[cname] = row
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--set", choices=("sa-train", "modern-train"), required=True)
    m.add_argument("--corpus", type=Path, default=Path("/tmp/model/modern"))
    m.add_argument("--every-spam", type=int, default=1)
    m.add_argument("--every-ham", type=int, default=1)
    m.add_argument("--embeddings-cache", type=Path)
    m.add_argument("--max-links", type=int, default=10)
    m.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("scorer")
    r.add_argument("--set", choices=("sa-train", "modern-train"), required=True)
    r.add_argument("--corpus", type=Path, default=Path("/tmp/model/modern"))
    r.add_argument("--every-spam", type=int, default=1)
    r.add_argument("--every-ham", type=int, default=1)
    r.add_argument("--embeddings-cache", type=Path)
    r.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    c = sub.add_parser("choose")
    c.add_argument("files", nargs="+")
    c.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    args = parser.parse_args()
    if args.cmd == "scorer":
        return scorer_run(args)
    return measure(args) if args.cmd == "measure" else choose(args)


if __name__ == "__main__":
    raise SystemExit(main())
