"""The IMAP engine against a real Dovecot: backlog, IDLE, fallbacks, faults (issue 5 acceptance)."""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from dovecot_server import DovecotServer
from imap_helpers import (
    PASSWORD,
    HeaderScorer,
    Recorder,
    append_all,
    mailbox_snapshot,
    make_mail,
    settings_for,
)

from spamguard.engine.events import ActionApplied, ConnectionState, Error, MessageScored, Progress
from spamguard.engine.service import AccountWorker, Service
from spamguard.errors import AuthError, TLSError
from spamguard.mail.base import FetchedMessage
from spamguard.mail.executor import Executor
from spamguard.mail.imap import ImapMailStore
from spamguard.store import Store

pytestmark = pytest.mark.imap

CORPUS = Path.home() / ".cache/spamguard/corpora/spamassassin"
SPLIT = Path("/work/shared/corpora/spamassassin-split.tsv")


def _by_id(snapshot: dict[str, list[tuple[str, str, frozenset[str]]]]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = collections.defaultdict(list)
    for folder, rows in snapshot.items():
        for message_id, _, flags in rows:
            if "\\Deleted" not in flags:
                where[message_id].append(folder)
    return where


def _idle(events: Sequence[object]) -> bool:
    return any(isinstance(e, ConnectionState) and e.state == "idle" for e in events)


def _applied(subject: str) -> Callable[[Sequence[object]], bool]:
    """The worker has moved (or flagged) the message with this subject on the server."""
    return lambda events: any(
        isinstance(e, ActionApplied) and e.subject == subject and e.state == "applied"
        for e in events
    )


def _run_backlog(
    server: DovecotServer, user: str, store: Store, messages: list[bytes], expected: dict[str, str]
) -> None:
    """Seed, run once, check: scored once each, spam in Junk, flag band marked, \\Seen kept."""
    seen_ids = {m for i, m in enumerate(expected) if i % 3 == 0}
    append_all(
        server, user, [m for m, mid in zip(messages, expected, strict=True) if mid not in seen_ids]
    )
    append_all(
        server,
        user,
        [m for m, mid in zip(messages, expected, strict=True) if mid in seen_ids],
        flags=["\\Seen"],
    )
    scorer = HeaderScorer()
    settings = settings_for(server, user, backlog_messages=1000)
    worker = AccountWorker(settings, scorer=scorer, store=store)
    events = Recorder()
    worker.events.subscribe(events)
    switch = sys.getswitchinterval()
    assert worker.run_once(), events.of(Error)
    assert len(scorer.scored) == len(messages) == len(set(scorer.scored))
    # The pipelined first sync shortens the GIL's switch interval while it runs, not after.
    assert sys.getswitchinterval() == switch
    where = _by_id(mailbox_snapshot(server, user))
    flags = {mid: f for rows in mailbox_snapshot(server, user).values() for mid, _, f in rows}
    for message_id, verdict in expected.items():
        assert where[message_id] == (["Junk"] if verdict == "spam" else ["INBOX"]), message_id
        assert ("\\Seen" in flags[message_id]) == (message_id in seen_ids), message_id
        marked = "\\Flagged" in flags[message_id] and "$SpamGuardFlag" in flags[message_id]
        assert marked == (verdict == "flag"), message_id
    progress = events.of(Progress)
    assert progress[-1].done == progress[-1].total == len(messages)
    # A rescan costs nothing: everything is handled, nothing is scored again.
    again = HeaderScorer()
    assert AccountWorker(settings, scorer=again, store=store).run_once()
    assert again.scored == []


def test_backlog_of_500_generated(dovecot: DovecotServer, user: str, store: Store) -> None:
    rng = random.Random(5)
    messages, expected = [], {}
    for i in range(500):
        p = rng.choice([0.02, 0.3, 0.55, 0.7, 0.93, 0.99])
        raw = make_mail(i, p)
        messages.append(raw)
        mid = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        expected[mid] = "spam" if p >= 0.9 else "flag" if p >= 0.5 else "ham"
    _run_backlog(dovecot, user, store, messages, expected)


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.exists(), reason="the shared SpamAssassin corpus is not fetched")
def test_backlog_of_500_from_the_corpus_test_half(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    rows = [line.split("\t") for line in SPLIT.read_text().splitlines()[1:]]
    test_half = [(path, label) for path, label, _, split in rows if split == "test"]
    rng = random.Random(500)
    chosen, ids = [], set()
    for path, label in rng.sample(test_half, 700):
        raw = (CORPUS / path).read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1]
        header_end = raw.find(b"\n\n")
        head = raw[:header_end].lower()
        mid_at = head.find(b"\nmessage-id:")
        if mid_at < 0 or header_end < 0:
            continue
        mid = raw[mid_at + 12 : raw.find(b"\n", mid_at + 1)].strip().decode("latin-1")
        if mid in ids or not mid.startswith("<"):
            continue
        ids.add(mid)
        # The scorer is not under test here: the label decides, via the test header.
        p = 0.97 if label == "spam" else rng.choice([0.1, 0.6])
        chosen.append((raw.replace(b"\n", b"\r\n", 1).replace(b"\r\r\n", b"\r\n"), mid, p))
        if len(chosen) == 500:
            break
    messages = [b"X-Test-Score: " + str(p).encode() + b"\r\n" + raw for raw, _, p in chosen]
    expected = {mid: "spam" if p >= 0.9 else "flag" if p >= 0.5 else "ham" for _, mid, p in chosen}
    _run_backlog(dovecot, user, store, messages, expected)


def test_idle_arrival_is_acted_on(dovecot: DovecotServer, user: str, store: Store) -> None:
    service = Service([settings_for(dovecot, user)], scorer=HeaderScorer(), store=store)
    events = Recorder()
    service.subscribe(events)
    service.start()
    try:
        events.wait_for(_idle)
        spam = make_mail(1, 0.97, subject="arrives while idle")
        dovecot.save(user, spam)
        events.wait_for(_applied("arrives while idle"), timeout=10)
    finally:
        service.stop()
        service.join(10)
    assert _by_id(mailbox_snapshot(dovecot, user))[
        spam.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    ] == ["Junk"]


def test_every_watched_folder_is_idled_on(dovecot: DovecotServer, user: str, store: Store) -> None:
    """Mail arriving in a second watched folder is acted on at once, not at the next poll."""

    dovecot.doveadm("mailbox", "create", "-u", user, "Lists")
    # A poll interval far longer than the wait below: only IDLE can explain the move.
    settings = settings_for(dovecot, user, watch_folders=("INBOX", "Lists"), poll_interval=600.0)
    service = Service([settings], scorer=HeaderScorer(), store=store)
    events = Recorder()
    service.subscribe(events)
    service.start()
    try:
        events.wait_for(_idle)
        deadline = time.monotonic() + 10
        while not any(t.name.endswith("-idle-Lists") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "no connection IDLEs on Lists"
            time.sleep(0.05)
        # Either IDLE reports it or, had it come before IDLE began, the catch-up look the
        # watcher asks for once its IDLE is up.
        spam = make_mail(2, 0.98, subject="arrives in Lists")
        dovecot.save(user, spam, folder="Lists")
        events.wait_for(_applied("arrives in Lists"), timeout=20)
        # The watcher is idle now and asks for no more catch-ups: only IDLE can report this.
        dovecot.save(user, make_mail(3, 0.99, subject="later in Lists"), folder="Lists")
        events.wait_for(_applied("later in Lists"), timeout=20)
    finally:
        service.stop()
        service.join(10)
    assert not [t for t in threading.enumerate() if "-idle-" in t.name]  # watchers stopped
    assert _by_id(mailbox_snapshot(dovecot, user))[
        spam.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    ] == ["Junk"]


@pytest.mark.parametrize(
    "capabilities",
    [
        pytest.param("IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS SPECIAL-USE CONDSTORE", id="no-MOVE"),
        pytest.param("IMAP4rev1 LITERAL+ SASL-IR IDLE SPECIAL-USE", id="no-MOVE-no-UIDPLUS"),
    ],
)
def test_servers_without_move(dovecot_factory, store: Store, capabilities: str) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory(capabilities=capabilities)
    user = server.add_user()
    messages = [make_mail(i, 0.99 if i % 2 else 0.1) for i in range(10)]
    append_all(server, user, messages)
    worker = AccountWorker(settings_for(server, user), scorer=HeaderScorer(), store=store)
    assert worker.run_once()
    snap = mailbox_snapshot(server, user)
    where = _by_id(snap)
    for i, raw in enumerate(messages):
        mid = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        assert where[mid] == (["Junk"] if i % 2 else ["INBOX"])
    deleted_left = [r for r in snap["INBOX"] if "\\Deleted" in r[2]]
    journal = store.journal(account="work", actions=["move_junk"])
    assert len(journal) == 5 and all(e.state == "applied" for e in journal)
    if "UIDPLUS" in capabilities:
        assert deleted_left == []  # UID EXPUNGE of exactly the moved copies
        assert {e.detail["method"] for e in journal} == {"copy+expunge"}
        assert all(e.dst_uid for e in journal)  # COPYUID recorded for undo
    else:
        assert len(deleted_left) == 5  # copied and marked; the user's client expunges
        assert {e.detail["method"] for e in journal} == {"copy+deleted"}
    # Undo finds the mail by COPYUID or Message-ID and is idempotent.
    executor_worker = AccountWorker(settings_for(server, user), scorer=HeaderScorer(), store=store)
    executor_worker.mail.connect()
    try:
        executor = Executor(
            executor_worker.mail, store, executor_worker.settings, junk_folder="Junk"
        )
        results = executor.undo(journal[:2])
        assert [r.outcome for r in results] == ["undone", "undone"]
        assert [r.outcome for r in executor.undo(journal[:2])] == ["already undone"] * 2
    finally:
        executor_worker.close()
    where = _by_id(mailbox_snapshot(server, user))
    for entry in journal[:2]:
        assert where[entry.message_id] == ["INBOX"]
    # Rescued by undo: never moved again.
    assert AccountWorker(settings_for(server, user), scorer=HeaderScorer(), store=store).run_once()
    where = _by_id(mailbox_snapshot(server, user))
    for entry in journal[:2]:
        assert where[entry.message_id] == ["INBOX"]


def test_wrong_password_gives_one_clear_error(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    settings = settings_for(dovecot, user, password_command="echo not-the-password")
    service = Service([settings], scorer=HeaderScorer(), store=store)
    events = Recorder()
    service.subscribe(events)
    service.start()
    service.join(15)
    errors = events.of(Error)
    assert len(errors) == 1 and errors[0].fatal and errors[0].kind == "AuthError"
    assert (
        "refused the password" in errors[0].message and "not-the-password" not in errors[0].message
    )
    states = [e.state for e in events.of(ConnectionState)]
    assert states.count("connecting") == 1 and states[-1] == "failed"
    failed = [
        line
        for line in dovecot.log().splitlines()
        if "auth failed" in line and f"user=<{user}>" in line
    ]
    assert len(failed) <= 1  # one attempt (the log line may still be on its way)
    with pytest.raises(AuthError):
        ImapMailStore(settings).connect()


def test_self_signed_tls_refused_until_pinned(dovecot_factory, store: Store) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory(tls=True)
    user = server.add_user()
    settings = settings_for(server, user, port=server.tls_port, security="tls")
    with pytest.raises(TLSError) as refused:
        ImapMailStore(settings).connect()
    fingerprint = refused.value.fingerprint
    assert (
        fingerprint
        and fingerprint in str(refused.value)
        and "tls_fingerprint" in str(refused.value)
    )
    assert PASSWORD not in str(refused.value)
    # No login was attempted over the unverified connection.
    assert f"user=<{user}>" not in server.log()
    from spamguard.config.schema import _normalise_fingerprint

    pinned = dataclasses.replace(settings, tls_fingerprint=_normalise_fingerprint(fingerprint))
    mail = ImapMailStore(pinned)
    mail.connect()
    assert mail.select("INBOX").uidvalidity > 0
    mail.close()
    wrong = dataclasses.replace(settings, tls_fingerprint="sha256:" + "00" * 32)
    with pytest.raises(TLSError, match="does not match"):
        ImapMailStore(wrong).connect()


class _CountingStore(ImapMailStore):
    fetched: list[FetchedMessage]

    def fetch(self, folder, uids, max_bytes):  # type: ignore[no-untyped-def]
        out = super().fetch(folder, uids, max_bytes)
        self.fetched = [*getattr(self, "fetched", []), *out]
        return out


def test_20_mb_message_costs_one_capped_fetch(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    attachment = os.urandom(15 * 1024 * 1024).hex()[: 20 * 1024 * 1024]
    body = "\r\n".join(attachment[i : i + 76] for i in range(0, len(attachment), 76))
    raw = make_mail(1, 0.95, subject="huge", body="see attachment\r\n" + body)
    assert len(raw) > 20_000_000
    dovecot.save(user, raw)
    settings = settings_for(dovecot, user)
    mail = _CountingStore(settings)
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store, mail=mail)
    assert worker.run_once()
    # Besides the first 8 KB read once to learn the account's authserv-id (its headers).
    [fetched] = [f for f in mail.fetched if f.size > 20_000_000 and len(f.raw) > 8 * 1024]
    assert len(fetched.raw) == settings.max_fetch_bytes and fetched.truncated
    mid = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    assert _by_id(mailbox_snapshot(dovecot, user))[mid] == ["Junk"]


def test_dry_run_changes_nothing(dovecot: DovecotServer, user: str, store: Store) -> None:
    append_all(dovecot, user, [make_mail(i, p) for i, p in enumerate([0.99, 0.6, 0.1])])
    before = mailbox_snapshot(dovecot, user)
    worker = AccountWorker(
        settings_for(dovecot, user), scorer=HeaderScorer(), store=store, dry_run=True
    )
    events = Recorder()
    worker.events.subscribe(events)
    assert worker.run_once()
    plans = [e.plan for e in events.of(MessageScored)]
    assert any(p.startswith("move to Junk") for p in plans) and any(
        p.startswith("flag") for p in plans
    )
    assert mailbox_snapshot(dovecot, user) == before
    assert store.journal() == [] and store.folder_states() == []


@pytest.mark.parametrize(
    "setting,scanned,scope",
    [
        ('backlog = "newest 2"', {"new 3", "new 4"}, "the newest 2 messages"),
        (
            'backlog = "last 30 days"',
            {f"new {i}" for i in range(5)},
            "the messages of the last 30 days",
        ),
        (
            'backlog = "everything"',
            {f"new {i}" for i in range(5)} | {"old 0", "old 1"},
            "every message",
        ),
        # An old config's 0 is "no limit" (it used to scan nothing), for messages as for days.
        (
            "backlog_messages = 0\nbacklog_days = 0",
            {f"new {i}" for i in range(5)} | {"old 0", "old 1"},
            "every message",
        ),
        (
            "backlog_messages = 0",
            {f"new {i}" for i in range(5)},
            "the messages of the last 30 days",
        ),
    ],
)
def test_first_sync_scans_what_the_backlog_setting_says(
    dovecot: DovecotServer, user: str, store: Store, setting: str, scanned: set[str], scope: str
) -> None:
    import datetime as dt

    from imap_helpers import account_toml
    from imapclient import IMAPClient

    from spamguard.config import parse_config

    with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as client:
        client.login(user, PASSWORD)
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
        for i in range(2):  # arrived 90 days ago (the server's INTERNALDATE)
            client.append("INBOX", make_mail(i, 0.1, subject=f"old {i}"), msg_time=long_ago)
        for i in range(5):
            client.append("INBOX", make_mail(10 + i, 0.1, subject=f"new {i}"))
    settings = parse_config(account_toml(dovecot, user, extra=setting + "\n")).accounts["work"]
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store)
    events = Recorder()
    worker.events.subscribe(events)
    assert worker.run_once(), events.of(Error)
    assert {e.subject for e in events.of(MessageScored)} == scanned
    progress = events.of(Progress)
    assert {(p.phase, p.scope, p.total) for p in progress} == {("backlog", scope, len(scanned))}
