"""100 moves to Junk as one batch vs as 100 single moves, journal included, on one real Dovecot.

Not a test: prints figures and the ratio (and writes JSON with --json). Each round appends
2 x N fresh messages to a private Dovecot's INBOX, then moves N of them with
`Executor.apply` one message at a time (a journal transaction before and after each UID MOVE)
and the other N with `Executor.apply_batch` (one journal transaction, one UID MOVE over the
UID set, one settling transaction). The order alternates between rounds so neither side
always meets a warm server. Issue 20's target: batch <= 5% of singles.

    python benchmarks/bench_batch_moves.py [-n 100] [--rounds 3] [--no-move] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "mail"))

from dovecot_server import DovecotServer  # noqa: E402
from imap_helpers import append_all, junk_batch, make_mail, settings_for  # noqa: E402

from spamguard.mail.executor import Executor  # noqa: E402
from spamguard.mail.imap import ImapMailStore  # noqa: E402
from spamguard.store import Store  # noqa: E402

_NO_MOVE = "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS SPECIAL-USE"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="moves per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-move", action="store_true", help="a server without MOVE (UID COPY + UID EXPUNGE)"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    server = DovecotServer(capabilities=_NO_MOVE if args.no_move else None).start()
    # The journal on disk, as for a user: synchronous=FULL, so every commit is an fsync.
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-batch-", dir=str(HERE)))
    single_s: list[float] = []
    batch_s: list[float] = []
    try:
        user = server.add_user()
        settings = settings_for(server, user)
        with Store(tmp / "state.sqlite3") as store, ImapMailStore(settings) as mail:
            executor = Executor(mail, store, settings, junk_folder="Junk")
            for r in range(args.rounds):
                append_all(server, user, [make_mail(i, 0.99) for i in range(2 * args.n)])
                status = mail.select("INBOX")
                uids = mail.uids("INBOX")
                assert len(uids) == 2 * args.n, len(uids)
                items = junk_batch(mail, uids, status.uidvalidity, model="bench")
                singles, batch = items[: args.n], items[args.n :]
                sides = ["single", "batch"] if r % 2 == 0 else ["batch", "single"]
                for side in sides:
                    start = time.perf_counter()
                    if side == "single":
                        results = [a for s, p, f in singles for a in executor.apply(s, p, f)]
                        single_s.append(time.perf_counter() - start)
                    else:
                        results = [a for _, a in executor.apply_batch(batch)]
                        batch_s.append(time.perf_counter() - start)
                    assert [a.state for a in results] == ["applied"] * args.n, results
                assert mail.uids("INBOX") == [], "every message should have left INBOX"
                assert store.journal(states=["planned"]) == []
            junk = mail.select("Junk").exists
            assert junk == 2 * args.n * args.rounds, junk
    finally:
        server.cleanup()
        for path in sorted(tmp.glob("*"), reverse=True):
            path.unlink()
        tmp.rmdir()

    single = statistics.median(single_s)
    batch = statistics.median(batch_s)
    figures = {
        "moves": args.n,
        "rounds": args.rounds,
        "server": "Dovecot without MOVE (COPY+UIDPLUS)" if args.no_move else "Dovecot (MOVE)",
        "single_ms": [round(s * 1000, 1) for s in single_s],
        "batch_ms": [round(s * 1000, 1) for s in batch_s],
        "single_ms_median": round(single * 1000, 1),
        "batch_ms_median": round(batch * 1000, 1),
        "batch_over_single": round(batch / single, 4),
    }
    print(f"{figures['server']}: {args.n} moves to Junk, journal included, {args.rounds} rounds")
    print(f"  100 single moves: {figures['single_ms']} ms (median {figures['single_ms_median']})")
    print(f"  one batch:        {figures['batch_ms']} ms (median {figures['batch_ms_median']})")
    print(
        f"  batch / single = {batch / single:.2%} (target <= 5%); "
        f"{args.n / single:.0f} vs {args.n / batch:.0f} moves/s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
