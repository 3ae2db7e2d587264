"""Issue 20 item 2: stage 0's character n-grams hashed in numpy, not one Python
string per n-gram, against scikit-learn's FeatureHasher on the same messages in the same run.

Not a test: checks that `spamguard.scoring.charhash` gives the very matrix scikit-learn gives
(every count equal) and prints both CPU times and the ratio, for one batch of all messages
and for batches of 64 (what `score` and a sync use) and of 1 (IDLE delivering one message).
Reads the train half only (timing, no labels).

    python benchmarks/bench_char_hash.py [-n 1500] [--stage0]

--stage0 also times the shipped stage-0 scorer as a whole (batches of 64), its chars block
through scikit-learn as before and through numpy, alternated twice, with the scores compared.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from typing import Any

from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from _corpora import spamassassin_corpus

from spamguard.message import parse_message
from spamguard.scoring.charhash import char_wb_counts
from spamguard.scoring.features import FeatureConfig, char_terms, char_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("--stage0", action="store_true", help="also time the stage-0 scorer")
    args = parser.parse_args()
    corpus = spamassassin_corpus()
    with SPLIT.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == "train"]
    random.Random(0).shuffle(rows)
    messages = [parse_message((corpus / r["path"]).read_bytes()) for r in rows[: args.n]]
    cfg = FeatureConfig()
    from sklearn.feature_extraction import FeatureHasher

    hasher = FeatureHasher(n_features=cfg.n_features, input_type="string", alternate_sign=False)
    grams = f"{cfg.char_ngram_min}-{cfg.char_ngram_max}"
    print(f"{len(messages)} train-half messages, character {grams}-grams")
    for batch in (len(messages), 64, 1):
        chunks = [messages[i : i + batch] for i in range(0, len(messages), batch)]
        if batch == 1:
            chunks = chunks[:300]
        done = sum(map(len, chunks))
        t = time.process_time()
        ref = [hasher.transform(char_terms(m, cfg) for m in c) for c in chunks]
        t_ref = time.process_time() - t
        t = time.process_time()
        new = [
            char_wb_counts(
                [char_text(m, cfg) for m in c],
                cfg.char_ngram_min,
                cfg.char_ngram_max,
                cfg.n_features,
            )
            for c in chunks
        ]
        t_new = time.process_time() - t
        same = all((a != b).nnz == 0 for a, b in zip(ref, new, strict=True))
        print(
            f"  batch {batch:5}: sklearn {t_ref * 1000 / done:.3f} CPU ms/msg, numpy "
            f"{t_new * 1000 / done:.3f}; numpy/sklearn {t_new / t_ref:.2f}; identical: {same}"
        )
        if not same:
            return 1
    if args.stage0:
        return _stage0(messages[:1000], hasher, cfg)
    return 0


def _stage0(messages: list[Any], hasher: Any, cfg: FeatureConfig) -> int:
    import spamguard.scoring.head as head
    from spamguard.scoring.assemble import default_cheap_dir
    from spamguard.scoring.model import load_scorer

    scorer = load_scorer(default_cheap_dir())
    from sklearn.feature_extraction.text import HashingVectorizer

    numpy_counts = head.char_wb_counts
    analyzer = HashingVectorizer(
        analyzer="char_wb", ngram_range=(cfg.char_ngram_min, cfg.char_ngram_max), lowercase=False
    ).build_analyzer()

    def sklearn_counts(texts: Any, min_n: int, max_n: int, n_features: int) -> Any:
        # The chars block as it was: `char_terms` is this analyzer over `char_text`.
        return hasher.transform(analyzer(t) for t in texts)

    results: dict[str, list[float]] = {"sklearn": [], "numpy": []}
    scores: dict[str, list[float]] = {}
    scorer.score(messages[:64])  # load the model before timing
    for _ in range(2):
        for name, counts in (("sklearn", sklearn_counts), ("numpy", numpy_counts)):
            head.char_wb_counts = counts  # type: ignore[assignment]
            out = []
            t = time.process_time()
            for i in range(0, len(messages), 64):
                out += [s.p_spam for s in scorer.score(messages[i : i + 64])]
            results[name].append(round((time.process_time() - t) * 1000 / len(messages), 3))
            scores[name] = out
    head.char_wb_counts = numpy_counts
    worst = max(abs(a - b) for a, b in zip(scores["sklearn"], scores["numpy"], strict=True))
    old, new = min(results["sklearn"]), min(results["numpy"])
    print(
        f"stage 0 scorer, {len(messages)} messages in batches of 64: sklearn chars "
        f"{results['sklearn']} CPU ms/msg, numpy chars {results['numpy']}; "
        f"best {new:.3f} vs {old:.3f} ({new / old - 1:+.0%}); max |dp| {worst:.1e}"
    )
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
