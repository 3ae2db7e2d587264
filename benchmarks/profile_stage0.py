"""Stage 0's loop on the SpamAssassin test half, in this process: to run under a profiler, and
to check that a change leaves every score and explanation as it was.

Parses and scores the whole test half with the shipped stage-0 head in batches of 64 (what
the 'stage 0' row of benchmarks/bench_speed.py times), prints CPU-ms a message, and can write
each message's p_spam and evidence (--dump) or compare them with an earlier dump (--compare).
The test half is read for timing and this identity check only; nothing is tuned on it.
--half train runs the same loop on the train half (the identity check over both halves).

    PYTHONPATH=. py-spy record -r 250 -f raw -o prof.txt -- python benchmarks/profile_stage0.py
    PYTHONPATH=<old checkout> python benchmarks/profile_stage0.py --dump before.jsonl
    PYTHONPATH=. python benchmarks/profile_stage0.py --compare before.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from _corpora import spamassassin_corpus

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dump", metavar="JSONL", help="write p_spam and evidence per message")
    parser.add_argument("--compare", metavar="JSONL", help="compare with an earlier --dump")
    parser.add_argument(
        "--half", choices=("test", "train"), default="test", help="which half (default test)"
    )
    args = parser.parse_args()
    from spamguard.message import parse_message
    from spamguard.scoring.model import load_scorer

    corpus = spamassassin_corpus()
    with SPLIT.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == args.half]
    raws = [(corpus / r["path"]).read_bytes() for r in rows]
    import spamguard_models

    scorer = load_scorer(Path(spamguard_models.__file__).parent / "stage0")
    scorer.score([parse_message(r) for r in raws[:2]])  # lazy loads are not per message
    cpu, wall = time.process_time(), time.perf_counter()
    scores = []
    for i in range(0, len(raws), 64):
        scores += scorer.score([parse_message(r) for r in raws[i : i + 64]])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"{len(raws)} {args.half}-half messages: {len(raws) / wall:.0f} msgs/s, "
        f"{cpu * 1000 / len(raws):.3f} CPU-ms a message"
    )
    records = [
        {
            "path": r["path"],
            "p_spam": s.p_spam,
            "evidence": [[e.feature, e.weight] for e in s.evidence],
        }
        for r, s in zip(rows, scores, strict=True)
    ]
    if args.dump:
        Path(args.dump).write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    if args.compare:
        before = [json.loads(line) for line in Path(args.compare).read_text("utf-8").splitlines()]
        if [b["path"] for b in before] != [r["path"] for r in records]:
            print("the dump is of other messages")
            return 1
        dp = max(abs(b["p_spam"] - r["p_spam"]) for b, r in zip(before, records, strict=True))
        changed = sum(b["evidence"] != r["evidence"] for b, r in zip(before, records, strict=True))
        print(f"max |p_spam - before| = {dp:.3g}; evidence changed for {changed} messages")
        return 0 if dp <= 1e-6 and not changed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
