"""Recording labels: repeats ignored, a change of mind kept, rescues and the learned allow list."""

from __future__ import annotations

from pathlib import Path

from spamguard.learn.labels import latest_labels, record_label
from spamguard.message import parse_message
from spamguard.store import Store


def _mail(i: int, sender: str = "a@example.org") -> bytes:
    return (
        f"From: <{sender}>\r\nTo: me@example.net\r\nSubject: s{i}\r\n"
        f"Message-ID: <{i}@t>\r\n\r\nbody {i}\r\n"
    ).encode()


def test_repeats_are_ignored_and_the_newest_label_wins(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        raw = _mail(1)
        msg = parse_message(raw)
        key = (msg.message_id, msg.content_hash)
        first = record_label(store, "acc", *key, "spam", "moved to Junk", message=msg, raw=raw)
        assert first is not None and first.label == "spam"
        assert record_label(store, "acc", *key, "spam", "keyword $Junk in INBOX") is None
        changed = record_label(store, "acc", *key, "ham", "app button", message=msg)
        assert changed is not None
        assert latest_labels(store, "acc")[key].label == "ham"
        assert store.label_raw(msg.content_hash) == raw


def test_second_rescue_from_a_sender_makes_them_a_correspondent(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        recs = []
        for i in range(2):
            raw = _mail(10 + i, sender="Club@Example.org")
            msg = parse_message(raw)
            recs.append(
                record_label(
                    store,
                    "acc",
                    msg.message_id,
                    msg.content_hash,
                    "ham",
                    "moved out of Junk to INBOX",
                    message=msg,
                    raw=raw,
                    folder="INBOX",
                    rescued=True,
                )
            )
            assert store.is_rescued("acc", msg.message_id, msg.content_hash)
        assert recs[0] is not None and recs[0].allowed_sender == ""
        assert recs[1] is not None and recs[1].allowed_sender == "club@example.org"
        assert store.is_correspondent("acc", "club@example.org")
