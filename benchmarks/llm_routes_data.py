"""The sets and the head's scores that benchmarks/llm_routes.py measures the LLM routes on.

    python benchmarks/llm_routes_data.py [--cache DIR]

Writes DIR/heads.npz (default /tmp/spamguard-routes): for every message of the four sets,
its content hash, label, set name and the cascade's score as `spamguard score` gives it
(stage 0, then stage 1 in stage 0's band):

- ``sa-train``: the SpamAssassin train half, scored OUT OF FOLD (stage 0 and stage 1 retrained
  with the shipped recipes and 5-fold CV on the train half, so no message is scored by a
  head that saw it);
- ``modern-train``: the modern corpus's train half, scored by the shipped head (default-3
  never trained on the modern corpus, so these scores are honest);
- ``sa-test``: the SpamAssassin test half and ``modern-dev``: the modern dev half, both
  scored by the shipped cascade. These two are for reporting only.

The train sets choose everything (bands, stacker, decision); the test/dev sets only report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _corpora import SPAMASSASSIN_SPLIT as SPLIT

ROOT = Path(__file__).resolve().parents[1]
SA_CORPUS = Path.home() / ".cache" / "spamguard" / "corpora" / "spamassassin"
MODERN_CORPUS = Path.home() / ".cache" / "spamguard" / "corpora" / "modern"
MANIFEST = ROOT / "data" / "modern" / "manifest.tsv"
CACHE = Path("/tmp/spamguard-routes")
SETS = ("sa-train", "modern-train", "sa-test", "modern-dev")
TRAIN_SETS = ("sa-train", "modern-train")


def load_sets(
    sa_corpus: Path = SA_CORPUS,
    modern_corpus: Path = MODERN_CORPUS,
    only: str | None = None,
    only_sets: set[str] | None = None,
) -> dict[str, list[Any]]:
    """set name -> list of LabelledMessage (SpamAssassin halves, modern halves)."""
    from spamguard.learn.corpus import load_manifest, load_split

    loaders = {
        "sa-train": lambda: load_split(SPLIT, sa_corpus, "train"),
        "modern-train": lambda: [it for _, it in load_manifest(MANIFEST, modern_corpus, "train")],
        "sa-test": lambda: load_split(SPLIT, sa_corpus, "test"),
        "modern-dev": lambda: [it for _, it in load_manifest(MANIFEST, modern_corpus, "dev")],
    }
    names = only_sets if only_sets is not None else set(SETS if only is None else [only])
    return {name: fn() for name, fn in loaders.items() if name in names}


def _score(scorer: Any, messages: list[Any]) -> np.ndarray:
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    out: list[float] = []
    for i in range(0, len(messages), 64):
        out.extend(s.p_spam for s in scorer.score(messages[i : i + 64]))
    return np.asarray(out, dtype=np.float64)


def oof_cascade(items: list[Any], encoder: Any) -> np.ndarray:
    """Out-of-fold cascade scores of the train half: both stages retrained with 5-fold CV."""
    from spamguard.learn.fit import TrainOptions, train
    from spamguard.scoring.cascade import Band

    spec = json.loads((ROOT / "models" / "cascade.json").read_text("utf-8"))
    band = Band(**spec["bands"][0])
    cheap_cfg = json.loads((ROOT / "models" / "stage0" / "config.json").read_text("utf-8"))
    full_cfg = json.loads((ROOT / "models" / "default" / "config.json").read_text("utf-8"))
    oof = {}
    for name, cfg, enc in (("stage0", cheap_cfg, None), ("stage1", full_cfg, encoder)):
        t = time.perf_counter()
        model = train(
            items,
            TrainOptions(
                version=f"{cfg['version']}-oof",
                blocks=tuple(cfg["blocks"].items()),
                keep_neighbours=False,
            ),
            encoder=enc,
            source="routes benchmark: out-of-fold scores of the train half",
        )
        oof[name] = np.asarray(model.oof_p, dtype=np.float64)[: len(items)]
        print(f"  {name} out-of-fold in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    p0, p1 = oof["stage0"], oof["stage1"]
    decided = (p0 <= band.ham_at_or_below) | (p0 >= band.spam_at_or_above)
    return np.where(decided, p0, p1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--embeddings", type=Path, help="MiniLM vector cache (.npz texts/vectors)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_default import _LookupEncoder  # type: ignore[import-not-found]

    from spamguard.scoring.assemble import load_default_scorer

    encoder = _LookupEncoder(args.embeddings or args.cache / "minilm.npz")
    scorer = load_default_scorer(ROOT / "models" / "default", cascade=True)
    for name in args.sets:
        out = args.cache / f"heads-{name}.npz"
        if out.is_file():
            continue
        items = load_sets(only=name)[name]
        t = time.perf_counter()
        scores = (
            oof_cascade(items, encoder)
            if name == "sa-train"
            else _score(scorer, [it.message for it in items])
        )
        print(
            f"{name}: {len(items)} messages scored in {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
        )
        np.savez_compressed(
            out,
            hash=np.asarray([it.message.content_hash for it in items]),
            y=np.asarray([bool(it.is_spam) for it in items]),
            set=np.asarray([name] * len(items)),
            p=scores,
            head=np.asarray(scorer.version),
        )
        encoder.save()
    parts = [args.cache / f"heads-{name}.npz" for name in SETS]
    if all(f.is_file() for f in parts):
        merged: dict[str, list[np.ndarray]] = {}
        for f in parts:
            with np.load(f) as d:
                for k in ("hash", "y", "set", "p"):
                    merged.setdefault(k, []).append(d[k])
                head = d["head"]
        np.savez_compressed(
            args.cache / "heads.npz",
            head=head,
            **{k: np.concatenate(v) for k, v in merged.items()},
        )
        print(args.cache / "heads.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
