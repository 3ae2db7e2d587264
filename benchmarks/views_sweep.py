"""Compare scoring-view settings of a shipped model on TRAIN halves only: ham cost and evasion.

    python benchmarks/views_sweep.py VARIANTS.json ham [--sets modern_train,sa_train] --out OUT.json
    python benchmarks/views_sweep.py VARIANTS.json spam --set modern|sa --every 40 --out OUT.json
        [--tricks words-paragraph,words-newsletter,subject-long]

VARIANTS.json maps a name to overrides of the model's own "views" block (config.json), e.g.
``{"shipped": {}, "off": {"enabled": false}, "b-0.5": {"body_margin": -0.5}}``. Each
variant scores, with the model's full head (no cascade):

- ``ham``: every legitimate message of the modern corpus's train part (not trained on by
  default-3's files, so out of sample for the shipped default-3g) and of the SpamAssassin
  train half (in sample): how many cross the flag (0.50) and move (0.90) thresholds, how
  many have a view the gates let through (`message_views`) or that the cascade's stage 0
  would defer (`looks_padded`), and how many texts the encoder was asked for (the whole
  messages plus the winning views scored with their own vector; less "off"'s count: the
  views' encoder calls);
- ``spam``: every N-th spam of a train half, untouched and under the evasion benchmark's
  tricks (benchmarks/evasion.py), and the points of recall lost at the move threshold.

No test or dev half is read: this is where view settings are chosen before the one
measurement on the test halves (benchmarks/evasion.py, `spamguard eval`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import evasion as ev  # noqa: E402

MODERN_SPLIT = ROOT / "data/modern/manifest.tsv"
MODERN_CORPUS = Path.home() / ".cache/spamguard/corpora/modern"


class _Counting(ev._MemoEncoder):
    """The memo encoder, counting the texts asked for (cached or not)."""

    asked = 0

    def encode(self, texts: list[str], batch_size: int = 1) -> np.ndarray:
        _Counting.asked += len(texts)
        return super().encode(texts, batch_size)


def _rows(split: Path, half: str, label: str) -> list[str]:
    with split.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == half]
    return [ev._local_path(r) for r in rows if r["label"] == label]


def _score(scorer: Any, messages: list[Any]) -> np.ndarray:
    out: list[float] = []
    for start in range(0, len(messages), 64):
        out += [s.p_spam for s in scorer.score(messages[start : start + 64])]
    return np.asarray(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", type=Path)
    ap.add_argument("what", choices=("ham", "spam"))
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--sets", default="modern_train,sa_train")
    ap.add_argument("--set", choices=("modern", "sa"), default="modern")
    ap.add_argument("--every", type=int, default=40)
    ap.add_argument(
        "--source",
        help="spam: only this modern source's train spam (e.g. rf-peixoto/phishing_pot, whose "
        "train part is the same honeypot as the dev half, earlier)",
    )
    ap.add_argument("--tricks", default="words-paragraph,words-newsletter,subject-long")
    ap.add_argument("--embeddings-cache", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from spamguard.message import parse_message
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import load_scorer
    from spamguard.scoring.views import ViewConfig, looks_padded, message_views

    variants: dict[str, dict[str, Any]] = json.loads(args.variants.read_text("utf-8"))
    memo = _Counting(load_encoder("int8", threads=1), args.embeddings_cache)
    scorer = load_scorer(Path(args.model) if args.model else None, encoder=memo)
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    shipped = scorer.model.views.to_json()
    result: dict[str, Any] = {"model": scorer.version, "shipped_views": shipped, "what": args.what}
    if args.what == "ham":
        sources = {
            "modern_train": (MODERN_SPLIT, MODERN_CORPUS),
            "sa_train": (ev.SPLIT, ev.CORPUS),
        }
        sets = {}
        for name in args.sets.split(","):
            split, corpus = sources[name]
            paths = _rows(split, "train", "ham")
            sets[name] = (paths, [parse_message((corpus / p).read_bytes()) for p in paths])
        for vname, over in variants.items():
            cfg = ViewConfig.from_json({**shipped, **over})
            scorer.model.views = cfg
            result[vname] = {}
            for sname, (paths, msgs) in sets.items():
                t0 = time.time()
                _Counting.asked = 0
                p = _score(scorer, msgs)
                row = {
                    "n": len(msgs),
                    "flagged": int((p >= ev.FLAG).sum()),
                    "moved": int((p >= ev.MOVE).sum()),
                    "with_views": sum(1 for m in msgs if message_views(m, cfg)),
                    "looks_padded": sum(1 for m in msgs if looks_padded(m, cfg)),
                    "encoder_texts": _Counting.asked,
                    "flagged_paths": [q for q, x in zip(paths, p, strict=True) if x >= ev.FLAG],
                }
                result[vname][sname] = row
                print(
                    f"{vname:28s} {sname:13s} n={row['n']} flagged {row['flagged']} moved "
                    f"{row['moved']} | with views {row['with_views']} looks padded "
                    f"{row['looks_padded']} encoder texts {row['encoder_texts']} | "
                    f"{time.time() - t0:.0f} s",
                    flush=True,
                )
                memo.save()
    else:
        split, corpus = (
            (MODERN_SPLIT, MODERN_CORPUS) if args.set == "modern" else (ev.SPLIT, ev.CORPUS)
        )
        spam = ev.spam_of(split, corpus, "train", None, args.every, source=args.source)
        raws = [r for _, r in spam]
        tricks = args.tricks.split(",")
        sets2: dict[str, tuple[list[int], list[Any]]] = {
            "untouched": (list(range(len(raws))), [parse_message(r) for r in raws])
        }
        for t in tricks:
            idx, msgs = [], []
            for i, raw in enumerate(raws):
                try:
                    new = ev.TRICKS[t](raw)
                except Exception:  # a message the standard library cannot rewrite
                    continue
                if new is not None:
                    idx.append(i)
                    msgs.append(parse_message(new))
            sets2[t] = (idx, msgs)
        result["n_spam"], result["every"], result["set"] = len(raws), args.every, args.set
        result["source"] = args.source
        for vname, over in variants.items():
            scorer.model.views = ViewConfig.from_json({**shipped, **over})
            scores = {t: _score(scorer, msgs) for t, (_, msgs) in sets2.items()}
            base = scores["untouched"]
            row2: dict[str, Any] = {"untouched_recall_move": float(np.mean(base >= ev.MOVE))}
            for t in tricks:
                idx = sets2[t][0]
                row2[t] = {
                    "n": len(idx),
                    "delta_move_points": float(
                        100 * (np.mean(scores[t] >= ev.MOVE) - np.mean(base[idx] >= ev.MOVE))
                    ),
                }
            result[vname] = row2
            print(
                f"{vname:28s} n={len(raws)} untouched {100 * row2['untouched_recall_move']:.1f}% | "
                + " | ".join(f"{t} {row2[t]['delta_move_points']:+.1f}" for t in tricks),
                flush=True,
            )
            memo.save()
    args.out.write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
