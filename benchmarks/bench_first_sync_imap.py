"""`spamguard bench --imap` on a private Dovecot seeded with SpamAssassin messages.

Not a test: prints the per-phase table (and writes JSON with --json). Starts a Dovecot,
APPENDs N messages (a fixed shuffle) of one half of the split (default the train half: this only
times, it reads no label), points an account at it and runs the same code as
`spamguard bench --imap` with the shipped model (or --model DIR).

    python benchmarks/bench_first_sync_imap.py [-n 1000] [--half train] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "mail"))

from _corpora import SPAMASSASSIN_SPLIT as SPLIT  # noqa: E402
from _corpora import spamassassin_corpus  # noqa: E402
from dovecot_server import PASSWORD, DovecotServer  # noqa: E402
from imap_helpers import settings_for  # noqa: E402

from spamguard.bench.imap import format_imap_bench, run_imap_bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--half", default="train", choices=["train", "test"])
    parser.add_argument("--model", help="model directory (default: the shipped cascade)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    corpus = spamassassin_corpus()
    with SPLIT.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == args.half]
    # A fixed shuffle: the split lists its groups one after another (easy ham first).
    random.Random(0).shuffle(rows)
    paths = [corpus / r["path"] for r in rows[: args.n]]

    from imapclient import IMAPClient

    from spamguard.scoring.assemble import load_default_scorer

    # What `spamguard run` scores with: the cascade (stage 0, then stage 1 for the uncertain).
    scorer = load_default_scorer(Path(args.model) if args.model else None)
    server = DovecotServer().start()
    try:
        user = server.add_user()
        with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60) as client:
            client.login(user, PASSWORD)
            for path in paths:
                client.append("INBOX", path.read_bytes())
        figures = run_imap_bench(settings_for(server, user), scorer, n=len(paths))
    finally:
        server.cleanup()
    print(f"{len(paths)} SpamAssassin {args.half}-half messages on a local Dovecot")
    print(format_imap_bench(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
