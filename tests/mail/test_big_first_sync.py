"""The first sync of a big folder against a real Dovecot (issue 20 item 3): resumable after a
SIGKILL of the real `spamguard run` process, and no second read of what it moved to Junk.

Speed and memory at 20,000 messages are in benchmarks/bench_first_sync_big.py, not here.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dovecot_server import DovecotServer
from imap_helpers import (
    HeaderScorer,
    account_toml,
    append_all,
    bodies_served,
    mailbox_snapshot,
    make_mail,
    settings_for,
    with_message_id,
)

from spamguard.engine.service import AccountWorker
from spamguard.learn.labels import FeedbackWatcher
from spamguard.store import Store

pytestmark = pytest.mark.imap

HERE = Path(__file__).parent
REPO = HERE.parent.parent
FIXTURE_CORPUS = REPO / "tests" / "fixtures" / "corpus"


def test_junk_refresh_after_a_sync_fetches_only_mail_spamguard_did_not_move(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    """After a first sync moved thousands of messages, the learner's look at Junk must not
    download them all again (it did: every one, held in memory at once): what SpamGuard
    moved is known from the journal's COPYUID; only mail that got there otherwise is read."""
    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(30)]
    ham = [make_mail(100 + i, 0.05, subject=f"ham {i}") for i in range(10)]
    append_all(dovecot, user, spam + ham)
    filed = make_mail(200, 0.99, subject="filed into Junk by the server's own filter")
    append_all(dovecot, user, [filed], folder="Junk")
    worker = AccountWorker(settings_for(dovecot, user), scorer=HeaderScorer(), store=store)
    assert worker.run_once()
    moves = store.journal(account="work", states=["applied"], actions=["move_junk"])
    assert len(moves) == 30 and all(e.dst_uid is not None for e in moves)

    worker.open()  # finds Junk (and reads Inbox headers for the authserv-id)
    worker.mail.close()
    served = bodies_served(dovecot, user)
    worker.mail.connect()  # a session of its own, so the server counts just the refresh
    try:
        assert FeedbackWatcher().refresh_junk(worker) == []
    finally:
        worker.close()
    # The server's own count: one body, the message SpamGuard did not move there.
    assert bodies_served(dovecot, user) - served == 1

    seen = store.seen_in_folder("work", "Junk")
    assert len(seen) == 31
    ours = {e.dst_uid: (e.message_id, e.content_hash) for e in moves}
    for uid, row in seen.items():
        if uid in ours:
            assert (row.message_id, row.content_hash) == ours[uid]
        else:
            assert row.message_id == _mid(filed) and row.content_hash
    assert len(mailbox_snapshot(dovecot, user, ("Junk",))["Junk"]) == 31  # nothing moved


# -- SIGKILL halfway through a first sync ---------------------------------------------------


def _mid(raw: bytes) -> str:
    return raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()


def _checkpoint(db: Path) -> int:
    """The Inbox's committed uidnext in the running engine's store (0 before there is one)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT uidnext FROM folder_state WHERE account = 'work' AND folder = 'INBOX'"
            ).fetchone()
    except sqlite3.OperationalError:
        return 0  # the engine is still creating its tables
    return int(row[0]) if row else 0


def _scored_by(log: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = collections.defaultdict(list)
    for line in log.read_text().splitlines():
        pid, content_hash = line.split()
        out[int(pid)].append(content_hash)
    return out


def test_first_sync_sigkilled_halfway_resumes_every_message_once(
    dovecot_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The real CLI and the shipped model on 480 messages (the fixture corpus repeated, each
    with a fresh Message-ID), SIGKILLed once half the folder is checkpointed, then run
    again: every message ends up exactly once on the server, has exactly one recorded
    verdict, nothing recorded before the kill is scored again, nothing is skipped, each
    message in Junk was moved exactly once, and the journal matches the server."""
    from spamguard.scoring.encoder import default_cache_dir

    server = dovecot_factory()
    user = server.add_user()
    files = sorted(FIXTURE_CORPUS.glob("*/*.eml"))
    n = 480
    messages = [
        with_message_id(files[i % len(files)].read_bytes(), f"resume-{i}@first-sync.invalid")
        for i in range(n)
    ]
    assert server.seed_maildir(user, messages) == n
    ids = {f"<resume-{i}@first-sync.invalid>" for i in range(n)}

    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n'
        + account_toml(server, user, extra='backlog = "everything"\n')
    )
    scored_log = tmp_path / "scored.log"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")]),
        SPAMGUARD_SCORER="counting_scorer:factory",
        TEST_SCORED_LOG=str(scored_log),
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
        # The machine's encoder export, not a second one (~1 GB of torch) in the temp HOME.
        SPAMGUARD_CACHE_DIR=str(default_cache_dir().parent),
    )
    env.pop("SPAMGUARD_FAILPOINT", None)
    cmd = [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"]
    db = tmp_path / "data" / "spamguard.sqlite3"

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if _checkpoint(db) > n // 2:
            break
        time.sleep(0.02)  # polling another process's progress, bounded by the deadline
    proc.kill()  # SIGKILL, in whatever batch it is in
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -9, f"the first run ended by itself: {err.decode()[-2000:]}"

    with Store(db) as store:
        recorded_before = {s.content_hash for s in store.scored_messages("work", limit=10 * n)}
        moved_before = len(store.journal(account="work", actions=["move_junk"]))
    assert n // 2 <= len(recorded_before) < n, len(recorded_before)

    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]

    # Every message exactly once on the server: none lost, none duplicated.
    snapshot = mailbox_snapshot(server, user)
    where: dict[str, list[str]] = collections.defaultdict(list)
    flagged: set[str] = set()
    for folder, rows in snapshot.items():
        for message_id, _, flags in rows:
            assert "\\Deleted" not in flags, message_id
            where[message_id].append(folder)
            if "\\Flagged" in flags:
                flagged.add(message_id)
    assert sorted(where) == sorted(ids)
    assert all(len(folders) == 1 for folders in where.values()), where

    by_process = _scored_by(scored_log)
    assert len(by_process) == 2, by_process.keys()  # the killed run and the finishing one
    first, second = (set(v) for v in by_process.values())
    with Store(db) as store:
        recorded = store.scored_messages("work", limit=10 * n)
        journal = store.journal(account="work")
    # One recorded verdict per message, none skipped.
    assert len(recorded) == n and len({s.message_id for s in recorded}) == n
    assert {s.message_id for s in recorded} == ids
    # Nothing recorded before the kill was scored again; what the kill interrupted was.
    assert not second & recorded_before
    assert {s.content_hash for s in recorded} == first | second
    assert all(len(v) == len(set(v)) for v in by_process.values())  # none twice in one run

    # The journal: settled, one move per message in Junk, one flag per flagged message.
    assert [e for e in journal if e.state == "planned"] == []
    moves = collections.Counter(e.message_id for e in journal if e.action == "move_junk")
    assert set(moves.values()) <= {1}
    assert set(moves) == {m for m, f in where.items() if f == ["Junk"]}
    assert all(e.state == "applied" for e in journal if e.action == "move_junk")
    flags = collections.Counter(e.message_id for e in journal if e.action == "flag")
    assert set(flags.values()) <= {1}
    assert set(flags) == flagged
    # Each applied move's COPYUID names those very bytes in Junk.
    junk_hash = {m: h for m, h, _ in snapshot["Junk"]}
    for e in journal:
        if e.action == "move_junk":
            assert junk_hash[e.message_id] == e.content_hash
    # The verdicts agree with where the mail is: what the plan moved is in Junk, only that.
    for s in recorded:
        assert (where[s.message_id] == ["Junk"]) == s.plan.startswith("move to Junk"), s
    # The kill landed in the middle of the work: mail had been moved before it, not after.
    assert 0 < moved_before < len(moves), (moved_before, len(moves))
