"""Retrain stage 0 (the cascade's cheap head) on the SpamAssassin train half plus the modern
train half, and choose its band so that neither corpus loses anything to it (issue 20).

    .venv/bin/python scripts/train_stage0.py --full-oof OOF.npz --full-modern SCORES.npz \\
        [--modern-weight 1] [--language-weight ja=0 ...] [--out DIR] [--bands-out FILE]

Why: the shipped stage 0 learnt from 2002 mail only, so on today's mail it is rarely sure and
hands 40% of a modern mailbox to the encoder (a 20,000-message first sync: 8,133 messages at
stage 1, against 5% of the SpamAssassin test half). Stage 0 decides only where it agrees
with the full head on training data, so teaching it modern mail makes the cascade faster
without changing what the shipped full head (models/default) is.

How, on train halves only (no test or dev half is read):
- stage 0 keeps its blocks and C (models/stage0/config.json) and is trained on the
  SpamAssassin train half + the modern train half (phishing_pot left out: CC BY-NC), with
  5-fold cross-validation whose folds keep each modern SOURCE together, so its out-of-fold
  scores on a list are those of a stage 0 that never saw that list;
- the full head's scores: on the SpamAssassin train half its out-of-fold scores
  (`train_default.py --no-modern --oof-out`, default-3's recipe), on the modern train half
  the shipped full head's own scores (it never trained on the modern corpus, so they are
  out-of-sample) — `--full-modern` computes and caches them;
- the band is the widest decided share at which the cascade keeps, on EACH corpus
  separately, AUC within the slack and recall at 0.1% and 1% FPR no lower than the full head
  alone, and no more legitimate messages flagged or moved (`choose_band(groups=...)`).
The padded-mail edge (`padded_ham_at_or_below`) depends on stage 0's scores: re-choose it with
benchmarks/cascade_padded_edge.py afterwards; until then this script leaves it out (safe:
padded-looking mail then always goes to stage 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_default import (  # noqa: E402
    MANIFEST,
    SPLIT,
    modern_training_rows,
    modern_weights,
    parse_language_weights,
)

HONEYPOT = "rf-peixoto/phishing_pot"


def full_modern_scores(modern: list, cache: Path, embeddings: Path | None) -> object:
    """The shipped full head's probabilities for the modern train rows (views as shipped),
    cached in ``cache`` by message reference."""
    import numpy as np

    refs = [it.ref for _, it in modern]
    known: dict[str, float] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            known = dict(zip(data["refs"].tolist(), data["p"].tolist(), strict=True))
    todo = [(r, it.message) for r, (_, it) in zip(refs, modern, strict=True) if r not in known]
    if todo:
        from evasion import _MemoEncoder

        from spamguard.scoring.encoder import load_encoder
        from spamguard.scoring.model import load_scorer

        enc = _MemoEncoder(load_encoder("int8"), embeddings)
        scorer = load_scorer(ROOT / "models" / "default", encoder=enc)
        scorer.top_evidence = 0
        scorer.n_neighbours = 0
        for start in range(0, len(todo), 64):
            chunk = todo[start : start + 64]
            for (ref, _), s in zip(chunk, scorer.score([m for _, m in chunk]), strict=True):
                known[ref] = s.p_spam
            print(f"  full head {start + len(chunk)}/{len(todo)}", file=sys.stderr)
        np.savez(cache, refs=np.asarray(list(known)), p=np.asarray(list(known.values())))
    return np.asarray([known[r] for r in refs])


def main() -> int:
    import numpy as np

    from spamguard.learn.corpus import load_split
    from spamguard.learn.fit import TrainOptions, train
    from spamguard.scoring.cascade import choose_band
    from spamguard.scoring.model import save_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", type=Path, default=SPLIT)
    ap.add_argument(
        "--corpus", type=Path, default=Path.home() / ".cache/spamguard/corpora/spamassassin"
    )
    ap.add_argument(
        "--modern-corpus", type=Path, default=Path.home() / ".cache/spamguard/corpora/modern"
    )
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--modern-weight", type=float, default=1.0)
    ap.add_argument("--language-weight", action="append", default=[], metavar="LANG=W")
    ap.add_argument(
        "--modern-spam-weight",
        type=float,
        default=1.0,
        help="factor on the modern train half's spam (0: stage 0 learns what modern "
        "legitimate mail looks like, and its spam only counts in choosing the band)",
    )
    ap.add_argument(
        "--full-oof",
        type=Path,
        required=True,
        help="the full head's out-of-fold scores of the SpamAssassin train half "
        "(train_default.py --no-modern --no-measure --oof-out FILE)",
    )
    ap.add_argument(
        "--full-modern",
        type=Path,
        required=True,
        help="cache of the shipped full head's scores of the modern train rows (made if absent)",
    )
    ap.add_argument("--embeddings", type=Path, help="sentence-vector cache (speed only)")
    ap.add_argument("--auc-slack", type=float, default=0.0002)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "stage0")
    ap.add_argument("--bands-out", type=Path, default=ROOT / "models" / "cascade.json")
    ap.add_argument("--oof-out", type=Path, help="save both heads' scores and the groups")
    ap.add_argument(
        "--band-only",
        action="store_true",
        help="keep the shipped stage 0 and choose only its band, per corpus (its out-of-fold "
        "scores on the SpamAssassin half as `spamguard cascade fit` makes them, its own "
        "scores on the modern half, which it never trained on); the padded-mail edge is kept",
    )
    args = ap.parse_args()

    sa = load_split(args.split, args.corpus, "train")
    modern = modern_training_rows(args.manifest, args.modern_corpus, exclude=(HONEYPOT,))
    with np.load(args.full_oof, allow_pickle=False) as data:
        if "modern" in data.files and bool(np.asarray(data["modern"]).any()):
            raise SystemExit(f"{args.full_oof}: holds modern rows; give the --no-modern OOF")
        oof_refs = data["ref"].tolist()
        oof_p = np.asarray(data["p"], dtype=np.float64)
    index = {r: i for i, r in enumerate(oof_refs)}
    missing = [it.ref for it in sa if it.ref not in index]
    if missing:
        raise SystemExit(f"{args.full_oof}: no score for {len(missing)} train messages")
    p_full_sa = oof_p[[index[it.ref] for it in sa]]
    p_full_modern = full_modern_scores(modern, args.full_modern, args.embeddings)

    cheap_config = json.loads((ROOT / "models" / "stage0" / "config.json").read_text("utf-8"))
    if args.band_only:
        return _band_only(args, sa, modern, p_full_sa, p_full_modern)
    items = sa + [it for _, it in modern]
    weights = np.concatenate(
        [
            np.ones(len(sa)),
            modern_weights(
                modern, args.modern_weight, parse_language_weights(args.language_weight)
            ),
        ]
    )
    is_modern_spam = np.asarray([False] * len(sa) + [e.is_spam for e, _ in modern])
    weights = np.where(is_modern_spam, weights * args.modern_spam_weight, weights)
    groups = [it.ref for it in sa] + [e.source for e, _ in modern]
    print(f"stage 0 on {len(sa)} SpamAssassin + {len(modern)} modern messages", file=sys.stderr)
    cheap = train(
        items,
        TrainOptions(
            version="stage0-modern",
            blocks=tuple(cheap_config["blocks"].items()),
            C=float(cheap_config["training"]["C"]),
            keep_neighbours=False,
        ),
        sample_weight=weights,
        cv_groups=groups,
        source=(
            f"{args.split.name} train half + {args.manifest.name} train half "
            f"(without {HONEYPOT}; weight {args.modern_weight:g}, its spam x"
            f"{args.modern_spam_weight:g}"
            + "".join(f", {s}" for s in args.language_weight)
            + "; folds grouped by modern source)"
        ),
        on_progress=lambda p: print(f"  stage0 {p.step} {p.done}/{p.total}", file=sys.stderr),
    )
    p_cheap = np.asarray(cheap.oof_p, dtype=np.float64)
    p_full = np.concatenate([p_full_sa, p_full_modern])
    y = np.asarray([it.is_spam for it in items])
    corpus = np.asarray(["spamassassin"] * len(sa) + ["modern"] * len(modern))
    if args.oof_out:
        np.savez_compressed(
            args.oof_out,
            p_cheap=p_cheap,
            p_full=p_full,
            y=y,
            corpus=corpus,
            source=np.asarray(["spamassassin"] * len(sa) + [e.source for e, _ in modern]),
            refs=np.asarray([it.ref for it in items]),
        )
    band, info = choose_band(p_cheap, p_full, y, auc_slack=args.auc_slack, groups=corpus)
    save_model(cheap, args.out)
    spec = json.loads(args.bands_out.read_text("utf-8")) if args.bands_out.is_file() else {}
    full_version = json.loads((ROOT / "models/default/config.json").read_text("utf-8"))["version"]
    spec.update(
        for_models={"cheap": cheap.version, "full": full_version},
        bands=[band.to_json(), *spec.get("bands", [])[1:]],
        stacker=spec.get("stacker"),
        chosen_on={
            "split": f"{args.split.name} train half + {args.manifest.name} train half "
            "(stage 0: out-of-fold, folds grouped by modern source; full head: out-of-fold "
            "on the SpamAssassin half, out-of-sample on the modern half)",
            "half": "train",
            "cv_folds": 5,
            **info,
        },
    )
    args.bands_out.write_text(json.dumps(spec, indent=2) + "\n", "utf-8")
    _report(info)
    print(f"band {band}; decided {info.get('decided_share', 0):.1%}", file=sys.stderr)
    print(args.out)
    return 0


def _report(info: dict) -> None:
    """Per corpus: what stage 0 decides and the cascade's figures against the full head's."""
    for name, g in info.get("groups", {}).items():
        ref = g["reference"]
        print(
            f"{name}: stage 0 decides {g['decided_share']:.1%}; AUC {g['auc']:.5f} "
            f"(full {ref['auc']:.5f}); ham flagged/moved {g['ham_flagged']}/{g['ham_moved']} "
            f"(full {ref['ham_flagged']}/{ref['ham_moved']})",
            file=sys.stderr,
        )


def _band_only(
    args: argparse.Namespace, sa: list, modern: list, p_full_sa: object, p_full_modern: object
) -> int:
    """The shipped stage 0, its band chosen per corpus (see --band-only)."""
    import numpy as np

    from spamguard.learn.bands import cross_val_decisions
    from spamguard.scoring.cascade import choose_band
    from spamguard.scoring.model import load_model, load_scorer

    shipped = ROOT / "models" / "stage0"
    cheap = load_model(shipped)
    print("stage 0 cross-validated on the SpamAssassin train half...", file=sys.stderr)
    p_sa = cross_val_decisions(sa, cheap.featurizer.weights, C=cheap.head.C)
    scorer = load_scorer(shipped)
    scorer.top_evidence = 0
    messages = [it.message for _, it in modern]
    p_mod: list[float] = []
    for start in range(0, len(messages), 256):
        p_mod += [s.p_spam for s in scorer.score(messages[start : start + 256])]
    p_cheap = np.concatenate([p_sa, np.asarray(p_mod)])
    p_full = np.concatenate([p_full_sa, p_full_modern])  # type: ignore[list-item]
    y = np.asarray([it.is_spam for it in sa] + [e.is_spam for e, _ in modern])
    corpus = np.asarray(["spamassassin"] * len(sa) + ["modern"] * len(modern))
    if args.oof_out:
        np.savez_compressed(args.oof_out, p_cheap=p_cheap, p_full=p_full, y=y, corpus=corpus)
    band, info = choose_band(p_cheap, p_full, y, auc_slack=args.auc_slack, groups=corpus)
    spec = json.loads(args.bands_out.read_text("utf-8"))
    old = spec["bands"][0]
    new = band.to_json()
    if "padded_ham_at_or_below" in old:
        new["padded_ham_at_or_below"] = min(old["padded_ham_at_or_below"], band.ham_at_or_below)
    spec["bands"] = [new, *spec["bands"][1:]]
    spec["chosen_on"] = {
        "split": f"{args.split.name} train half (both heads out-of-fold) + {args.manifest.name} "
        "train half without phishing_pot (both shipped heads' own scores: neither trained on "
        "it); held per corpus (choose_band groups)",
        "half": "train",
        "cv_folds": 5,
        **info,
    }
    args.bands_out.write_text(json.dumps(spec, indent=2) + "\n", "utf-8")
    _report(info)
    print(f"band {old} -> {new}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
