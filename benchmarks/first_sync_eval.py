"""First-sync learning on a simulated account (issue 17, item 4).

Mail from one source is split at random (seeded) into what the account already holds, put
into a private, real Dovecot (spam in Junk; ham in the Inbox, read and older than the age
limit), and the rest, which the account has not received yet. First-sync learning then runs
exactly as `spamguard learn existing` does (read-only IMAP, held-back checks, a new model
version). Reported: on the rest, the share of legitimate mail flagged (p >= flag) and moved
(p >= move) and the spam recall at the move threshold, before and after; then
`ModelRegistry.rollback()` and the same mail scored again, which must give the old scores.

Input: any folders of ham and spam files (--ham DIR --spam DIR, repeatable), groups of a
split file (--split TSV --corpus DIR --ham-group G --spam-group G [--half test|train]), or
sources of a corpus manifest (--manifest TSV --corpus DIR --ham-source S --spam-source S
[--half dev]; the modern corpus's layout). --max N keeps N of each class (seeded).
The source should be one the active model was not trained on. Prints a table and writes
JSON (--json). Needs dovecot (apt-get install dovecot-imapd) and the model's encoder.

    nice -n 10 python benchmarks/first_sync_eval.py --split S.tsv --corpus DIR \
        --ham-group hard-ham-1 --spam-group spam-2 --half test --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "mail"))

from dovecot_server import PASSWORD, DovecotServer  # noqa: E402
from imap_helpers import settings_for  # noqa: E402

from spamguard.learn.corpus import iter_message_files  # noqa: E402
from spamguard.message import parse_message  # noqa: E402


def _manifest_inputs(args: argparse.Namespace) -> tuple[list[bytes], list[bytes], str]:
    """Messages of the named sources from a corpus manifest (columns source, commit, path,
    label, split, ...), laid out as the modern corpus's fetcher writes them:
    CORPUS/<owner>+<repo>/<commit>/<path>."""
    import csv

    ham: list[bytes] = []
    spam: list[bytes] = []
    with open(args.manifest, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if args.half and row.get("split") != args.half:
                continue
            wanted = args.ham_source if row["label"] == "ham" else args.spam_source
            if row["source"] not in wanted:
                continue
            path = Path(args.corpus) / row["source"].replace("/", "+", 1) / row["commit"]
            (ham if row["label"] == "ham" else spam).append((path / row["path"]).read_bytes())
    where = f"{Path(args.manifest).name} {args.half or 'all'}: ham {args.ham_source}, "
    return ham, spam, where + f"spam {args.spam_source}"


def load_inputs(args: argparse.Namespace) -> tuple[list[bytes], list[bytes], str]:
    if args.manifest:
        return _manifest_inputs(args)
    if args.split:
        import csv

        ham: list[bytes] = []
        spam: list[bytes] = []
        with open(args.split, encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if args.half and row["split"] != args.half:
                    continue
                if row["group"] in args.ham_group:
                    ham.append((Path(args.corpus) / row["path"]).read_bytes())
                elif row["group"] in args.spam_group:
                    spam.append((Path(args.corpus) / row["path"]).read_bytes())
        where = f"{Path(args.split).name} {args.half or 'both halves'}: ham {args.ham_group}, "
        return ham, spam, where + f"spam {args.spam_group}"
    ham = [p.read_bytes() for d in args.ham for p in iter_message_files(Path(d))]
    spam = [p.read_bytes() for d in args.spam for p in iter_message_files(Path(d))]
    return ham, spam, f"ham {', '.join(args.ham)}; spam {', '.join(args.spam)}"


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def score(model_dir: Path, raws: list[bytes]) -> list[float]:
    from spamguard.scoring.assemble import load_default_scorer

    scorer = load_default_scorer(model_dir)
    messages = [parse_message(r) for r in raws]
    out: list[float] = []
    for i in range(0, len(messages), 64):
        out.extend(s.p_spam for s in scorer.score(messages[i : i + 64]))
    return out


def rates(p_ham: list[float], p_spam: list[float], flag: float, move: float) -> dict[str, Any]:
    return {
        "ham_flagged": sum(p >= flag for p in p_ham) / max(len(p_ham), 1),
        "ham_moved": sum(p >= move for p in p_ham) / max(len(p_ham), 1),
        "n_ham_flagged": sum(p >= flag for p in p_ham),
        "n_ham_moved": sum(p >= move for p in p_ham),
        "spam_recall_at_move": sum(p >= move for p in p_spam) / max(len(p_spam), 1),
        "spam_recall_at_flag": sum(p >= flag for p in p_spam) / max(len(p_spam), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ham", action="append", default=[], metavar="DIR")
    ap.add_argument("--spam", action="append", default=[], metavar="DIR")
    ap.add_argument("--split", metavar="TSV")
    ap.add_argument("--corpus", metavar="DIR")
    ap.add_argument("--ham-group", action="append", default=[])
    ap.add_argument("--spam-group", action="append", default=[])
    ap.add_argument("--manifest", metavar="TSV", help="a corpus manifest (with --corpus DIR)")
    ap.add_argument("--ham-source", action="append", default=[], help="manifest source")
    ap.add_argument("--spam-source", action="append", default=[], help="manifest source")
    ap.add_argument("--half", help="only this split/half (train, test, dev)")
    ap.add_argument("--max", type=int, default=0, help="at most this many of each class")
    ap.add_argument("--model", metavar="DIR", help="the model before (default: the shipped one)")
    ap.add_argument("--held", type=float, default=0.5, help="share of each class the account holds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--keep", action="store_true", help="keep the temp store and versions")
    args = ap.parse_args()
    if not (
        (args.ham and args.spam)
        or (args.split and args.corpus and args.ham_group)
        or (args.manifest and args.corpus and args.ham_source)
    ):
        ap.error(
            "give --ham DIR --spam DIR, --split TSV --corpus DIR --ham-group G ..., or "
            "--manifest TSV --corpus DIR --ham-source S --spam-source S"
        )

    from spamguard.learn.first_sync import learn_existing
    from spamguard.learn.registry import ModelRegistry
    from spamguard.mail.connect import open_mailstore
    from spamguard.scoring.model import default_model_dir, load_model
    from spamguard.store import Store

    ham, spam, source = load_inputs(args)
    rng = random.Random(args.seed)
    rng.shuffle(ham)
    rng.shuffle(spam)
    if args.max:
        ham, spam = ham[: args.max], spam[: args.max]
    k_ham, k_spam = int(len(ham) * args.held), int(len(spam) * args.held)
    inbox, rest_ham = ham[:k_ham], ham[k_ham:]
    junk, rest_spam = spam[:k_spam], spam[k_spam:]
    print(f"source: {source}")
    print(
        f"account holds {len(junk)} spam in Junk and {len(inbox)} read ham in the Inbox; "
        f"measured on the other {len(rest_ham)} ham and {len(rest_spam)} spam"
    )

    work = Path(tempfile.mkdtemp(prefix="sg-first-sync-"))
    registry = ModelRegistry(work / "models")
    base_dir = Path(args.model) if args.model else default_model_dir()
    base = registry.register_dir(base_dir, activate=True)
    thresholds = load_model(base_dir).thresholds
    flag, move = float(thresholds.get("flag", 0.5)), float(thresholds.get("move", 0.9))

    t0 = time.perf_counter()
    before_ham, before_spam = (
        score(registry.active_dir(), rest_ham),
        score(registry.active_dir(), rest_spam),
    )
    t_score = time.perf_counter() - t0
    before = rates(before_ham, before_spam, flag, move)

    server = DovecotServer().start()
    try:
        from imapclient import IMAPClient

        user = server.add_user()
        old = datetime.now(UTC) - timedelta(days=30)
        with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=120) as client:
            client.login(user, PASSWORD)
            for raw in junk:
                client.append("Junk", crlf(raw), msg_time=old)
            for raw in inbox:
                client.append("INBOX", crlf(raw), flags=["\\Seen"], msg_time=old)
        settings = settings_for(server, user)
        t1 = time.perf_counter()
        with Store(work / "spamguard.sqlite3") as store:
            mail = open_mailstore(settings, read_only=True)
            mail.connect()
            try:
                result = learn_existing(mail, settings, store, registry)
            finally:
                mail.close()
        t_learn = time.perf_counter() - t1
    finally:
        server.cleanup()
    print(f"first sync: {result.message} ({t_learn:.1f} s)")

    after_version = registry.active
    after = None
    restored = None
    if result.state == "learned":
        after_ham = score(registry.active_dir(), rest_ham)
        after_spam = score(registry.active_dir(), rest_spam)
        after = rates(after_ham, after_spam, flag, move)
        previous = registry.rollback()
        again = score(registry.active_dir(), rest_ham)
        restored = {
            "active_after_rollback": previous,
            "is_the_base": previous == base,
            "max_abs_score_change_vs_before": max(
                (abs(a - b) for a, b in zip(again, before_ham, strict=True)), default=0.0
            ),
        }

    def pct(x: float) -> str:
        return f"{100 * x:6.2f}%"

    print(f"\n{'on the mail the account had not received yet':46} {'before':>9} {'after':>9}")
    for key, name in (
        ("ham_flagged", f"legitimate flagged (p >= {flag:.2f})"),
        ("ham_moved", f"legitimate moved (p >= {move:.2f})"),
        ("spam_recall_at_move", f"spam recall at move (p >= {move:.2f})"),
        ("spam_recall_at_flag", f"spam recall at flag (p >= {flag:.2f})"),
    ):
        a = pct(after[key]) if after else "   -"
        print(f"{name:46} {pct(before[key]):>9} {a:>9}")
    if after:
        ratio = after["ham_flagged"] / before["ham_flagged"] if before["ham_flagged"] else 0.0
        print(f"flag rate after / before: {ratio:.2f} (goal: at most 0.50)")
    if restored:
        print(
            f"rollback: active {restored['active_after_rollback']} "
            f"({'the model before' if restored['is_the_base'] else 'NOT the model before'}); "
            f"largest score change against before: "
            f"{restored['max_abs_score_change_vs_before']:.2e}"
        )
    report = {
        "source": source,
        "seed": args.seed,
        "held_share": args.held,
        "account": {"junk": len(junk), "inbox_read": len(inbox)},
        "measured_on": {"ham": len(rest_ham), "spam": len(rest_spam)},
        "model_before": base,
        "model_after": after_version if result.state == "learned" else None,
        "first_sync": {
            "state": result.state,
            "message": result.message,
            "n_spam": result.n_spam,
            "n_ham": result.n_ham,
            "n_provider_spam": result.n_provider_spam,
            "held_back": (result.outcome.metrics.get("held_back") if result.outcome else None),
            "seconds": round(t_learn, 1),
        },
        "thresholds": {"flag": flag, "move": move},
        "before": before,
        "after": after,
        "rollback": restored,
        "seconds_scoring_once": round(t_score, 1),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}")
    if args.keep:
        print(f"kept the store and model versions in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
