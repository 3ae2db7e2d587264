"""A model on the modern corpus's dev half: what a user of today's mail would see.

    python benchmarks/modern_eval.py [--model DIR] [--corpus DIR] [--json OUT]
    python benchmarks/modern_eval.py --loso [--sa-corpus DIR] [--sa-split TSV] [--per-source N]
        [--embeddings NPZ] [--json OUT]

Default: score the dev half (data/modern/manifest.tsv, split "dev") with the model as
`spamguard score` runs it (the cascade in front of the head when its bands fit; --no-cascade
for the full head alone) and print legitimate mail flagged at p >= flag and moved at
p >= move (overall, per category, per source, per language; transactional moved), spam
recall at the move threshold, recall at 1% FPR, ECE and AUC, and the ham that scored
highest. JSON goes to benchmarks/results/ unless --json says otherwise.

--loso: leave-one-source-out. For every modern source S (both halves), train the default
recipe (scripts/train_default.py: SpamAssassin train half + every modern message NOT from S)
and score S with it; every modern message then has a score from a model that never saw its
source. Per source, AUC = S's scores against the opposite class's scores from all other
sources. Slow (one training per source): --per-source N caps each source at N messages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from spamguard.digest import file_sha256
from spamguard.evaluate import auc, calibration_error, recall_at_fpr
from spamguard.learn.corpus import ManifestEntry, load_manifest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "data" / "modern" / "manifest.tsv"
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_CORPUS = Path(
    os.environ.get("SPAMGUARD_MODERN_CORPUS")
    or Path.home() / ".cache" / "spamguard" / "corpora" / "modern"
)
TRANSACTIONAL = "transactional"


def summarise(
    entries: list[ManifestEntry], subjects: list[str], p: np.ndarray, move: float, flag: float
) -> dict[str, Any]:
    y = np.asarray([e.is_spam for e in entries], dtype=bool)
    ham, spam = ~y, y

    def rates(mask: np.ndarray) -> dict[str, Any]:
        h, s = mask & ham, mask & spam
        out: dict[str, Any] = {"n_ham": int(h.sum()), "n_spam": int(s.sum())}
        if h.any():
            out["ham_flagged"] = float((p[h] >= flag).mean())
            out["ham_moved"] = float((p[h] >= move).mean())
            out["ham_flagged_n"] = int((p[h] >= flag).sum())
            out["ham_moved_n"] = int((p[h] >= move).sum())
        if s.any():
            out["spam_recall_at_move"] = float((p[s] >= move).mean())
            out["spam_recall_at_flag"] = float((p[s] >= flag).mean())
        if h.any() and s.any():
            out["roc_auc"] = auc(y[mask], p[mask])
        return out

    everything = np.ones(len(y), dtype=bool)
    overall = rates(everything)
    overall["recall_at_1pct_fpr"] = recall_at_fpr(y, p, 0.01)[0]
    overall["recall_at_0.1pct_fpr"] = recall_at_fpr(y, p, 0.001)[0]
    overall["ece"] = calibration_error(y, p)
    trans = np.asarray([TRANSACTIONAL in e.category for e in entries]) & ham
    overall["transactional_ham"] = int(trans.sum())
    overall["transactional_moved"] = int((p[trans] >= move).sum())
    by: dict[str, dict[str, Any]] = {}
    for key in ("category", "source", "language"):
        values = np.asarray([getattr(e, key) for e in entries])
        by[key] = {v: rates(values == v) for v in sorted(set(values.tolist()))}
    worst = np.argsort(-np.where(ham, p, -1.0))[: min(15, int(ham.sum()))]
    missed = np.argsort(np.where(spam, p, 2.0))[: min(15, int(spam.sum()))]
    return {
        "move": move,
        "flag": flag,
        "overall": overall,
        "by": by,
        "highest_ham": [_example(entries[i], subjects[i], p[i]) for i in worst],
        "lowest_spam": [_example(entries[i], subjects[i], p[i]) for i in missed],
    }


def _example(e: ManifestEntry, subject: str, p: float) -> dict[str, Any]:
    return {
        "p_spam": round(float(p), 4),
        "source": e.source,
        "category": e.category,
        "ref": f"{e.commit[:12]}:{e.path}",
        "subject": subject[:100],
    }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def print_table(r: dict[str, Any], title: str) -> None:
    o = r["overall"]
    print(f"\n{title}")
    print(f"{o['n_ham']} ham, {o['n_spam']} spam · move ≥ {r['move']:.2f}, flag ≥ {r['flag']:.2f}")
    print(
        f"  legitimate flagged (p ≥ flag)  {_pct(o.get('ham_flagged'))} ({o.get('ham_flagged_n')})"
    )
    print(f"  legitimate moved (p ≥ move)    {_pct(o.get('ham_moved'))} ({o.get('ham_moved_n')})")
    print(
        f"  transactional moved            {o['transactional_moved']} of {o['transactional_ham']}"
    )
    print(f"  spam recall at move            {_pct(o.get('spam_recall_at_move'))}")
    print(f"  recall at 1% FPR               {_pct(o['recall_at_1pct_fpr'])}")
    print(f"  recall at 0.1% FPR             {_pct(o['recall_at_0.1pct_fpr'])}")
    print(f"  ECE                            {o['ece']:.4f}")
    print(f"  ROC AUC                        {o.get('roc_auc', float('nan')):.5f}")
    for key in ("category", "source", "language"):
        print(f"\n  by {key}:")
        print(f"  {'':58} {'ham':>5} {'flag':>7} {'moved':>7} {'spam':>5} {'@move':>7}")
        for name, v in r["by"][key].items():
            print(
                f"  {name[-58:]:58} {v['n_ham']:5d} {_pct(v.get('ham_flagged')):>7} "
                f"{_pct(v.get('ham_moved')):>7} {v['n_spam']:5d} "
                f"{_pct(v.get('spam_recall_at_move')):>7}"
            )
    print("\n  highest-scoring legitimate mail:")
    for ex in r["highest_ham"][:10]:
        print(f"    {ex['p_spam']:.3f}  {ex['source'].split('/')[-1][:28]:28} {ex['subject'][:70]}")
    print("  lowest-scoring spam:")
    for ex in r["lowest_spam"][:10]:
        print(f"    {ex['p_spam']:.3f}  {ex['source'].split('/')[-1][:28]:28} {ex['subject'][:70]}")


def score(scorer: Any, messages: list[Any]) -> np.ndarray:
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    out: list[float] = []
    for i in range(0, len(messages), 64):
        out.extend(s.p_spam for s in scorer.score(messages[i : i + 64]))
    return np.asarray(out, dtype=np.float64)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from spamguard.scoring.assemble import load_default_scorer

    rows = load_manifest(args.manifest, args.corpus, None if args.split == "all" else args.split)
    entries = [e for e, _ in rows]
    messages = [it.message for _, it in rows]
    model_dir = Path(args.model) if args.model else ROOT / "models" / "default"
    scorer = load_default_scorer(model_dir, cascade=not args.no_cascade)
    head_version = json.loads((model_dir / "config.json").read_text("utf-8"))["version"]
    move = float(scorer.model.thresholds.get("move", 0.90))
    flag = float(scorer.model.thresholds.get("flag", 0.50))
    start = time.perf_counter()
    p = score(scorer, messages)
    elapsed = time.perf_counter() - start
    result = summarise(entries, [m.subject for m in messages], p, move, flag)
    result.update(
        model_version=head_version,
        scorer=scorer.version,
        model_dir=str(args.model or "default"),
        cascade=not args.no_cascade,
        split=args.split,
        manifest_sha256=file_sha256(args.manifest),
        seconds=elapsed,
    )
    half = "both halves" if args.split == "all" else f"{args.split} half"
    print_table(result, f"{head_version} ({scorer.version}) on the modern corpus, {half}")
    return result


def loso(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_default import (  # type: ignore[import-not-found]
        SPLIT,
        _LookupEncoder,
        train_default_model,
    )

    from spamguard.scoring.model import load_scorer

    rows = load_manifest(args.manifest, args.corpus)
    encoder = _LookupEncoder(args.embeddings) if args.embeddings else None
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, (e, _) in enumerate(rows):
        by_source[e.source].append(i)
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for src, idx in sorted(by_source.items()):
        if args.per_source and len(idx) > args.per_source:
            idx = sorted(rng.choice(idx, args.per_source, replace=False).tolist())
            by_source[src] = idx
        keep.extend(idx)
    p = np.full(len(rows), np.nan)
    per: dict[str, Any] = {}
    for src in sorted(by_source):
        train_rows = [rows[i] for i in keep if rows[i][0].source != src]
        t = time.perf_counter()
        with __import__("tempfile").TemporaryDirectory() as tmp:
            out = train_default_model(
                sa_corpus=args.sa_corpus,
                split=args.sa_split or SPLIT,
                modern=train_rows,
                out=Path(tmp) / "model",
                version=f"loso-{src.split('/')[-1]}",
                encoder=encoder,
                keep_neighbours=False,
            )
            scorer = load_scorer(out)
            idx = by_source[src]
            p[idx] = score(scorer, [rows[i][1].message for i in idx])
        per[src] = {"train_seconds": time.perf_counter() - t}
        if encoder is not None:
            encoder.save()
        print(
            f"  left out {src}: trained and scored in {per[src]['train_seconds']:.0f} s",
            file=sys.stderr,
        )
    y = np.asarray([e.is_spam for e, _ in rows], dtype=bool)
    src_of = np.asarray([e.source for e, _ in rows])
    scored = ~np.isnan(p)
    for src in sorted(by_source):
        mine = scored & (src_of == src)
        labels = set(y[mine].tolist())
        if labels == {True, False}:
            mask = mine
        else:
            other = scored & (src_of != src) & (y != next(iter(labels)))
            mask = mine | other
        per[src].update(
            n=int(mine.sum()),
            labels=sorted("spam" if v else "ham" for v in labels),
            roc_auc=auc(y[mask], p[mask]),
            ham_flagged=float((p[mine & ~y] >= 0.5).mean()) if (mine & ~y).any() else None,
            spam_recall_at_move=float((p[mine & y] >= 0.9).mean()) if (mine & y).any() else None,
        )
    pooled = auc(y[scored], p[scored])
    print("\nleave-one-source-out (each source scored by a model that never saw it)")
    print(f"  {'source':62} {'n':>5} {'AUC':>8} {'ham flag':>9} {'spam@move':>9}")
    for src, v in per.items():
        print(
            f"  {src[-62:]:62} {v['n']:5d} {v['roc_auc']:8.5f} {_pct(v['ham_flagged']):>9} "
            f"{_pct(v['spam_recall_at_move']):>9}"
        )
    lowest = min(v["roc_auc"] for v in per.values())
    print(f"  pooled AUC {pooled:.5f}; minimum per source {lowest:.5f}")
    return {
        "loso": per,
        "pooled_auc": pooled,
        "min_auc": min(v["roc_auc"] for v in per.values()),
        "per_source_cap": args.per_source,
        "manifest_sha256": file_sha256(args.manifest),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory (default: the shipped default)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--split", default="dev", choices=("dev", "train", "all"))
    ap.add_argument("--no-cascade", action="store_true")
    ap.add_argument("--loso", action="store_true", help="leave-one-source-out AUC (slow)")
    ap.add_argument(
        "--sa-corpus", type=Path, default=Path.home() / ".cache/spamguard/corpora/spamassassin"
    )
    ap.add_argument(
        "--sa-split",
        type=Path,
        help="with --loso: the SpamAssassin split TSV (default: ../shared/corpora/"
        "spamassassin-split.tsv beside the repository, as scripts/train_default.py)",
    )
    ap.add_argument("--per-source", type=int, default=0, help="with --loso: cap per source")
    ap.add_argument("--embeddings", type=Path, help="with --loso: encoder vector cache (.npz)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = loso(args) if args.loso else evaluate(args)
    version = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(result.get("model_version", "")))
    name = "modern-loso" if args.loso else f"modern-{args.split}-{version}"
    out = args.json or RESULTS / f"issue17-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n", "utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
