"""Learning from a second IMAP client on a real Dovecot: moves and keywords become labels,
rescued mail stays put, and K labels train a version that is shadow-tested and promoted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imap_helpers import (
    PASSWORD,
    HeaderScorer,
    account_toml,
    append_all,
    mailbox_snapshot,
    make_mail,
    settings_for,
)
from imapclient import IMAPClient

from spamguard.engine.service import AccountWorker
from spamguard.engine.session import AccountSession
from spamguard.learn.loop import Learner, LearnOptions
from spamguard.learn.registry import ModelRegistry
from spamguard.learn.warm import WarmStartOptions
from spamguard.store import Store

pytestmark = pytest.mark.imap


@pytest.fixture
def registry(tmp_path: Path, fixture_model: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    reg.register_dir(fixture_model, activate=True)
    return reg


def _learner(store: Store, registry: ModelRegistry, k: int, shadow: int = 1) -> Learner:
    options = LearnOptions(
        retrain_after=k,
        shadow_messages=shadow,
        background=False,
        warm=WarmStartOptions(folds=3),
    )
    return Learner(store, registry=registry, options=options)


class Phone:
    """The user's other mail client."""

    def __init__(self, port: int, user: str) -> None:
        self.client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
        self.client.login(user, PASSWORD)

    def uid_of(self, folder: str, subject: str) -> int:
        self.client.select_folder(folder)
        uids = self.client.search(["SUBJECT", subject])
        assert len(uids) == 1, (folder, subject, uids)
        return int(uids[0])

    def move(self, src: str, subject: str, dst: str) -> None:
        uid = self.uid_of(src, subject)
        self.client.move([uid], dst)

    def keyword(self, folder: str, subject: str, keyword: str) -> None:
        uid = self.uid_of(folder, subject)
        self.client.add_flags([uid], [keyword])

    def close(self) -> None:
        self.client.logout()


@pytest.fixture
def phone(dovecot, user: str) -> Iterator[Phone]:  # type: ignore[no-untyped-def]
    p = Phone(dovecot.port, user)
    yield p
    p.close()


def _folders_of(dovecot, user: str, raw: bytes) -> list[str]:  # type: ignore[no-untyped-def]
    mid = next(
        line.split(b":", 1)[1].strip().decode()
        for line in raw.split(b"\r\n")
        if line.lower().startswith(b"message-id:")
    )
    snap = mailbox_snapshot(dovecot, user)
    return [folder for folder, rows in snap.items() for m, _, _ in rows if m == mid]


def test_moved_out_of_junk_is_ham_rescued_and_retrains(
    dovecot, user: str, store: Store, registry: ModelRegistry, phone: Phone
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(dovecot, user)
    learner = _learner(store, registry, k=2)
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store, learner=learner)
    ours = make_mail(1, 0.97, subject="invoice from a friend", body="see the invoice attached")
    servers = make_mail(2, 0.98, subject="newsletter you wanted", body="weekly digest of news")
    append_all(dovecot, user, [ours])
    append_all(dovecot, user, [servers], folder="Junk")  # filed by the server's own filter
    assert worker.run_once()
    assert _folders_of(dovecot, user, ours) == ["Junk"]  # SpamGuard moved it

    phone.move("Junk", "invoice from a friend", "INBOX")
    phone.move("Junk", "newsletter you wanted", "INBOX")
    assert worker.run_once()
    assert worker.run_once()  # and again: nothing moves it back

    assert _folders_of(dovecot, user, ours) == ["INBOX"]
    assert _folders_of(dovecot, user, servers) == ["INBOX"]
    rows = store.feedback_rows(settings.name)
    assert [(r.label, r.source) for r in rows] == [
        ("ham", "moved out of Junk to INBOX"),
        ("ham", "moved out of Junk to INBOX"),
    ]
    for raw in (ours, servers):
        mid = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        assert any(
            r.message_id == mid and store.is_rescued(r.account, mid, r.content_hash) for r in rows
        )

    # K = 2 labels: a version was trained from the fixture head and put in shadow ...
    assert len(learner.outcomes) == 1, learner.outcomes
    outcome = learner.outcomes[0]
    info = registry.get(outcome.version)
    assert info.parent == "fixture-head" and info.n_labels == 2
    assert outcome.state in ("shadow", "rejected"), outcome
    if outcome.state == "shadow":
        # ... and one new message later it is promoted (or rejected, with the reason).
        append_all(dovecot, user, [make_mail(3, 0.1, subject="lunch?")])
        assert worker.run_once()
        info = registry.get(outcome.version)
        assert info.state in ("active", "rejected") and info.reason
        assert info.shadow["seen"] >= 1
        if info.state == "active":
            assert registry.active == outcome.version
    else:
        assert info.reason


def test_moved_into_junk_is_spam(
    dovecot, user: str, store: Store, registry: ModelRegistry, phone: Phone
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(dovecot, user)
    learner = _learner(store, registry, k=1, shadow=0)
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store, learner=learner)
    missed = make_mail(10, 0.05, subject="cheap meds online", body="buy cheap meds now")
    append_all(dovecot, user, [missed])
    assert worker.run_once()
    assert _folders_of(dovecot, user, missed) == ["INBOX"]
    phone.move("INBOX", "cheap meds online", "Junk")
    assert worker.run_once()
    rows = store.feedback_rows(settings.name)
    assert [(r.label, r.source) for r in rows] == [("spam", "moved to Junk")]
    # The app's row says who moved it and where it is now, though the journal never saw it.
    session = AccountSession(settings, scorer=HeaderScorer(), store=store)  # type: ignore[arg-type]
    row = next(r for r in session.rows() if r.subject == "cheap meds online")
    assert (row.moved_by, row.location, row.label) == ("another client", "Junk", "spam")
    # Shadow is off: the version is checked on held-back labels and promoted or rejected.
    assert len(learner.outcomes) == 1
    info = registry.get(learner.outcomes[0].version)
    assert info.state in ("active", "rejected") and info.reason
    # A message SpamGuard moved itself is no label.
    append_all(dovecot, user, [make_mail(11, 0.99, subject="spam by us")])
    assert worker.run_once() and worker.run_once()
    assert len(store.feedback_rows(settings.name)) == 1


def test_not_junk_keyword_is_ham_and_protects(
    dovecot, user: str, store: Store, registry: ModelRegistry, phone: Phone
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(dovecot, user)
    learner = _learner(store, registry, k=1)
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store, learner=learner)
    maybe = make_mail(20, 0.7, subject="maybe spam", body="a message from the club")
    append_all(dovecot, user, [maybe])
    assert worker.run_once()  # flag band: flagged, left in the Inbox
    phone.keyword("INBOX", "maybe spam", "$NotJunk")
    assert worker.run_once()
    rows = store.feedback_rows(settings.name)
    assert [(r.label, r.source) for r in rows] == [("ham", "keyword $NotJunk in INBOX")]
    assert store.is_rescued(settings.name, rows[0].message_id, rows[0].content_hash)
    assert store.label_raw(rows[0].content_hash) is not None  # kept for retraining
    assert len(learner.outcomes) == 1 and learner.outcomes[0].reason
    # A $Junk keyword from another client is a spam label.
    phone.keyword("INBOX", "maybe spam", "$Junk")
    assert worker.run_once()
    assert [r.label for r in store.feedback_rows(settings.name)] == ["ham", "spam"]
    assert _folders_of(dovecot, user, maybe) == ["INBOX"]


def test_repeated_rescues_put_the_sender_on_the_allow_list(
    dovecot, user: str, store: Store, registry: ModelRegistry, phone: Phone
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(dovecot, user)
    worker = AccountWorker(
        settings, scorer=HeaderScorer(), store=store, learner=_learner(store, registry, k=99)
    )
    sender = "club@example.org"
    first = [make_mail(30 + i, 0.97, subject=f"club news {i}", sender=sender) for i in range(2)]
    append_all(dovecot, user, first)
    assert worker.run_once()
    for i in range(2):
        phone.move("Junk", f"club news {i}", "INBOX")
    assert worker.run_once()
    assert store.is_correspondent(settings.name, sender)
    later = make_mail(40, 0.97, subject="club news later", sender=sender)
    append_all(dovecot, user, [later])
    assert worker.run_once()
    assert _folders_of(dovecot, user, later) == ["INBOX"]  # flagged, never moved


def test_a_button_label_without_bytes_is_backfilled_for_training(
    dovecot, user: str, store: Store, registry: ModelRegistry
) -> None:  # type: ignore[no-untyped-def]
    from spamguard.learn.labels import record_label
    from spamguard.message import parse_message

    settings = settings_for(dovecot, user)
    worker = AccountWorker(
        settings, scorer=HeaderScorer(), store=store, learner=_learner(store, registry, k=99)
    )
    raw = make_mail(50, 0.1, subject="button label")
    append_all(dovecot, user, [raw])
    assert worker.run_once()
    msg = parse_message(raw)
    # What the app's Spam button records: no bytes, just the message's identity.
    record_label(store, settings.name, msg.message_id, msg.content_hash, "spam", "app button")
    assert store.label_raw(msg.content_hash) is None
    assert worker.run_once()
    assert store.label_raw(msg.content_hash) == raw


def test_label_command_moves_and_records(dovecot, user: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    def main(argv: list[str]) -> int:
        # A child process: the CLI sets up logging for the whole process it runs in.
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
        cmd = [sys.executable, "-m", "spamguard", *argv]
        return subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode

    config = tmp_path / "config.toml"
    data = tmp_path / "data"
    config.write_text(f'data_dir = "{data}"\n\n' + account_toml(dovecot, user))
    settings = settings_for(dovecot, user)
    spam = make_mail(60, 0.1, subject="slipped through")
    ham = make_mail(61, 0.99, subject="wrongly junked")
    append_all(dovecot, user, [spam, ham])
    with Store(data / "spamguard.sqlite3") as store:
        assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
        row = next(m for m in store.scored_messages() if m.subject == "slipped through")
    mid = ham.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    assert main(["--config", str(config), "label", "spam", str(row.message_id)]) == 0
    assert main(["--config", str(config), "label", "ham", mid.strip("<>")]) == 0
    assert _folders_of(dovecot, user, spam) == ["Junk"]
    assert _folders_of(dovecot, user, ham) == ["INBOX"]
    with Store(data / "spamguard.sqlite3") as store:
        labels = [(r.label, r.source) for r in store.feedback_rows()]
        assert labels == [("spam", "spamguard label"), ("ham", "spamguard label")]
        rows = store.feedback_rows()
        assert store.is_rescued(settings.name, rows[1].message_id, rows[1].content_hash)
        assert all(store.label_raw(r.content_hash) for r in rows)
    assert main(["--config", str(config), "label", "ham", "<nope@x>"]) == 1
