"""Arrival -> action latency while IDLE-ing: p50/p95 over N APPENDs to a private Dovecot.

Not a test: prints figures (and writes JSON with --json). Uses the header-driven test scorer
unless --model is given, so the figure is the engine's own cost (IDLE wake-up, fetch,
journal, MOVE) without a model; with --model it includes the real scorer.

    python benchmarks/bench_imap_latency.py [-n 100] [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "mail"))

from conftest import make_mail, settings_for  # noqa: E402
from dovecot_server import PASSWORD, DovecotServer  # noqa: E402
from header_scorer import HeaderScorer  # noqa: E402

from spamguard.engine.events import ActionApplied, ConnectionState, Event  # noqa: E402
from spamguard.engine.service import Service  # noqa: E402
from spamguard.store import Store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="arrivals to time")
    parser.add_argument(
        "--model", help="score with this model directory instead of the header scorer"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    if args.model:
        from spamguard.scoring.model import load_scorer

        scorer = load_scorer(Path(args.model))
    else:
        scorer = HeaderScorer()
    server = DovecotServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    try:
        user = server.add_user()
        applied: dict[str, float] = {}
        idle = threading.Event()
        cond = threading.Condition()

        def on_event(event: Event) -> None:
            if isinstance(event, ConnectionState) and event.state == "idle":
                idle.set()
            if isinstance(event, ActionApplied) and event.state == "applied":
                with cond:
                    applied[event.subject] = time.perf_counter()
                    cond.notify_all()

        with Store(tmp / "state.sqlite3") as store:
            service = Service([settings_for(server, user)], scorer=scorer, store=store)
            service.subscribe(on_event)
            service.start()
            if not idle.wait(30):
                raise SystemExit("the engine never reached IDLE")
            from imapclient import IMAPClient

            latencies = []
            with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
                client.login(user, PASSWORD)
                for i in range(args.n):
                    subject = f"bench {i}"
                    raw = make_mail(i, 0.99 if i % 2 else 0.7, subject=subject)
                    sent = time.perf_counter()
                    client.append("INBOX", raw)
                    with cond:
                        if not cond.wait_for(lambda s=subject: s in applied, timeout=30):
                            raise SystemExit(f"message {i} was never acted on")
                        latencies.append(applied[subject] - sent)
                    idle.clear()
                    idle.wait(5)  # the next arrival is timed from a fresh IDLE, as in real life
            service.stop()
            service.join(10)
    finally:
        server.cleanup()
    latencies.sort()
    figures = {
        "arrivals": len(latencies),
        "p50_s": round(statistics.median(latencies), 4),
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 4),
        "max_s": round(latencies[-1], 4),
        "scorer": getattr(scorer, "version", "?"),
        "goal_p95_s": 1.0,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
