"""The app's Spam / Not spam buttons label through `feedback.apply_label`, like `spamguard label`:
the label keeps the bytes, the sender and the folder, so it can train."""

from __future__ import annotations

from pathlib import Path

from dovecot_server import DovecotServer
from header_scorer import HeaderScorer
from imap_helpers import append_all, mailbox_snapshot, make_mail, settings_for

from spamguard.engine.session import AccountSession
from spamguard.learn.labels import latest_labels
from spamguard.store import Store


def test_app_buttons_keep_the_bytes_sender_and_folder_of_what_they_label(
    dovecot: DovecotServer, user: str, store: Store, scorer: HeaderScorer, tmp_path: Path
) -> None:
    sent = [
        make_mail(1, 0.97, sender="friend@example.org"),
        make_mail(2, 0.97, sender="friend@example.org"),
        make_mail(3, 0.10, sender="news@example.org"),
    ]
    append_all(dovecot, user, sent)
    session = AccountSession(settings_for(dovecot, user), scorer=scorer, store=store)
    try:
        for _ in session.scan():
            pass
        rows = {r.subject: r for r in session.rows()}
        assert rows["message 1"].location == rows["message 2"].location == "Junk"
        assert rows["message 3"].location == "INBOX"

        session.mark(rows["message 1"].key, "ham")
        session.mark(rows["message 2"].key, "ham")
        session.mark(rows["message 3"].key, "spam")

        labels = latest_labels(store, "work")
        for subject, raw, label, sender in (
            ("message 1", sent[0], "ham", "friend@example.org"),
            ("message 2", sent[1], "ham", "friend@example.org"),
            ("message 3", sent[2], "spam", "news@example.org"),
        ):
            row = rows[subject]
            got = labels[(row.message_id, row.content_hash)]
            assert (got.label, got.source, got.from_addr, got.folder) == (
                label,
                "app button",
                sender,
                "INBOX",
            )
            # The bytes are kept at once: a retrain never has to find the message again.
            assert store.label_raw(row.content_hash) == raw
        # Not spam rescues the message for good: no later scan moves it again.
        for subject in ("message 1", "message 2"):
            row = rows[subject]
            assert store.is_rescued("work", row.message_id, row.content_hash)
        where = {f: [m for m, _, _ in msgs] for f, msgs in mailbox_snapshot(dovecot, user).items()}
        assert sorted(where["INBOX"]) == sorted(
            [rows["message 1"].message_id, rows["message 2"].message_id]
        )
        assert where["Junk"] == [rows["message 3"].message_id]
    finally:
        session.close()
