"""The shipped cascade's scores, message by message, to compare two checkouts (issue 20).

    PYTHONPATH=<checkout> python benchmarks/cascade_identity.py dump OUT.jsonl [--modern-every 4]
    python benchmarks/cascade_identity.py compare BEFORE.jsonl AFTER.jsonl

``dump`` scores the SpamAssassin train half and every N-th message of the modern corpus's
train part (train data only) with the default scorer (the cascade, as `spamguard score`),
in batches of 64, and writes one line per message: its score, deciding stage, whether it
looks padded to the full head's gated views (`spamguard.scoring.views.looks_padded`), and
how many texts the sentence encoder read (the cost the scoring views add). ``compare``
prints, for the messages that look padded and those that do not apart, the largest score
difference and the verdicts (Junk at 0.90, flag at 0.50) and deciding stages that changed,
and both runs' encoder texts; it exits 1 when any message that does not look padded
changed (score by more than 1e-6, verdict or stage).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from _corpora import MODERN_MANIFEST as MANIFEST
from _corpora import SPAMASSASSIN_SPLIT as SPLIT
from _corpora import modern_corpus, spamassassin_corpus


class _Counting:
    """The int8 encoder, counting the texts it reads."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.texts = 0

    def encode(self, texts: list[str], batch_size: int = 1) -> Any:
        self.texts += len(texts)
        return self.encoder.encode(texts, batch_size=batch_size)


def messages(modern_every: int) -> list[tuple[str, str, Path]]:
    """(name, label, file) of the SpamAssassin train half and every N-th modern train message."""
    sa = spamassassin_corpus()
    out: list[tuple[str, str, Path]] = []
    with SPLIT.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["split"] == "train":
                out.append((f"sa:{r['path']}", r["label"], sa / r["path"]))
    modern = modern_corpus()
    with MANIFEST.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == "train"]
    for r in rows[::modern_every]:
        rel = f"{r['source'].replace('/', '+')}/{r['commit']}/{r['path']}"
        out.append((f"modern:{rel}", r["label"], modern / rel))
    return out


def dump(out: Path, modern_every: int) -> None:
    from spamguard.errors import NotMailError
    from spamguard.message import parse_message
    from spamguard.scoring.assemble import load_default_scorer
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.views import looks_padded

    encoder = _Counting(load_encoder("int8", threads=1))
    cascade = load_default_scorer(encoder=encoder)
    cfg = cascade.model.views
    todo = messages(modern_every)
    started, cpu = time.perf_counter(), time.process_time()
    with out.open("w", encoding="utf-8") as fh:
        for start in range(0, len(todo), 64):
            chunk, batch = [], []
            for item in todo[start : start + 64]:
                try:
                    batch.append(parse_message(item[2].read_bytes()))
                except NotMailError:  # a few files of the modern corpus are no mail
                    continue
                chunk.append(item)
            for (name, label, _), msg, s in zip(chunk, batch, cascade.score(batch), strict=True):
                row = {
                    "name": name,
                    "label": label,
                    "p": s.p_spam,
                    "stage": s.stage,
                    "padded": looks_padded(msg, cfg),
                }
                fh.write(json.dumps(row) + "\n")
        fh.write(
            json.dumps(
                {
                    "summary": True,
                    "messages": len(todo),
                    "encoder_texts": encoder.texts,
                    "stage_shares": cascade.stage_shares(),
                    "wall_seconds": time.perf_counter() - started,
                    "cpu_seconds": time.process_time() - cpu,
                }
            )
            + "\n"
        )
    print(out, f"{len(todo)} messages, {encoder.texts} encoder texts")


def _read(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {}
    for line in path.read_text("utf-8").splitlines():
        r = json.loads(line)
        if r.get("summary"):
            summary = r
        else:
            rows[r["name"]] = r
    return rows, summary


def compare(before: Path, after: Path) -> int:
    a, sa = _read(before)
    b, sb = _read(after)
    common = [n for n in a if n in b]
    if len(common) != len(a) or len(common) != len(b):
        # The manifest's train part grew between the runs: the messages both scored.
        print(f"{len(common)} messages in both runs ({len(a)} before, {len(b)} after)")
    failed = False
    for padded in (False, True):
        names = [n for n in common if a[n]["padded"] == padded]
        diff = max((abs(a[n]["p"] - b[n]["p"]) for n in names), default=0.0)
        verdicts = sum(1 for n in names for t in (0.9, 0.5) if (a[n]["p"] >= t) != (b[n]["p"] >= t))
        stages = sum(1 for n in names if a[n]["stage"] != b[n]["stage"])
        moved = {
            f"{a[n]['stage']}->{b[n]['stage']}": 0 for n in names if a[n]["stage"] != b[n]["stage"]
        }
        for n in names:
            if a[n]["stage"] != b[n]["stage"]:
                moved[f"{a[n]['stage']}->{b[n]['stage']}"] += 1
        by_label = {
            label: sum(
                1
                for n in names
                if a[n]["label"] == label
                and any((a[n]["p"] >= t) != (b[n]["p"] >= t) for t in (0.9, 0.5))
            )
            for label in ("ham", "spam")
        }
        print(
            f"{'looks padded' if padded else 'not padded':<13} {len(names):>6} messages: "
            f"max |dp| {diff:.2e}, verdict changes {verdicts} (messages by label {by_label}), "
            f"stage changes {stages} {moved}"
        )
        if not padded and (diff > 1e-6 or verdicts or stages):
            failed = True
    for label, s in (("before", sa), ("after", sb)):
        print(
            f"{label}: {s.get('encoder_texts')} encoder texts, stage shares "
            f"{ {k: round(v, 4) for k, v in s.get('stage_shares', {}).items()} }, "
            f"{s.get('cpu_seconds', 0):.1f} CPU-s"
        )
    print("FAIL: mail that does not look padded changed" if failed else "OK")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--modern-every", type=int, default=4)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.cmd == "dump":
        dump(args.out, args.modern_every)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
