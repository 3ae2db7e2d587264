"""Spam / Not spam from the Thunderbird add-on on a real Dovecot: the native host records the
label through `feedback.apply_label` (the `spamguard label` path) and moves the message on
the server, and the engine never moves a rescued message back."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from imap_helpers import HeaderScorer, account_toml, mailbox_snapshot, make_mail
from imapclient import IMAPClient

from spamguard.config import parse_config
from spamguard.engine.native_host import ADDON_ID, encode_frame, iter_frames
from spamguard.engine.service import AccountWorker
from spamguard.store import Store

pytestmark = pytest.mark.imap
ROOT = Path(__file__).resolve().parents[2]


def _host(config: Path, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spamguard",
            "--config",
            str(config),
            "thunderbird",
            "host",
            "manifest.json",
            ADDON_ID,
        ],
        input=b"".join(encode_frame(r) for r in requests),
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return list(iter_frames(proc.stdout))


def _folder_of(port: int, user: str, subject: str) -> list[str]:
    from imap_helpers import PASSWORD

    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
    client.login(user, PASSWORD)
    try:
        found = []
        for folder in ("INBOX", "Junk"):
            client.select_folder(folder, readonly=True)
            if client.search(["SUBJECT", subject]):
                found.append(folder)
        return found
    finally:
        client.logout()


def test_not_spam_and_spam_from_thunderbird_move_on_the_server_and_are_learnt(
    dovecot, user: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{data}"\n' + account_toml(dovecot, user), encoding="utf-8")
    settings = parse_config(config.read_text(), path=config).accounts["work"]
    spam = make_mail(1, 0.99, subject="Cheap pills today")
    ham = make_mail(2, 0.05, subject="Lunch on Friday")
    dovecot.save(user, spam)
    dovecot.save(user, ham)
    data.mkdir()
    store = Store(data / "spamguard.sqlite3")
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store)
    assert worker.run_once()
    assert _folder_of(dovecot.port, user, "Cheap pills today") == ["Junk"]
    spam_id = next(s.message_id for s in store.scored_messages("work") if "pills" in s.subject)
    ham_id = next(s.message_id for s in store.scored_messages("work") if "Lunch" in s.subject)
    account = {"name": "Work", "type": "imap", "emails": [f"{user}@example.org"]}

    looked, not_spam, spam_now = _host(
        config,
        {"id": 1, "type": "lookup", "message_id": spam_id.strip("<>"), "account": account},
        {"id": 2, "type": "label", "label": "ham", "message_id": spam_id, "account": account},
        {
            "id": 3,
            "type": "label",
            "label": "spam",
            "message_id": ham_id,
            "account": account,
            "raw": base64.b64encode(ham).decode(),
        },
    )
    assert looked["result"]["band"] == "spam"
    assert [a["action"] for a in looked["result"]["actions"]] == ["move_junk"]
    assert not_spam == {
        "id": 2,
        "ok": True,
        "recorded": True,
        "moved_by": "spamguard",
        "account": "work",
    }
    assert spam_now["moved_by"] == "spamguard" and spam_now["recorded"] is True
    assert _folder_of(dovecot.port, user, "Cheap pills today") == ["INBOX"]
    assert _folder_of(dovecot.port, user, "Lunch on Friday") == ["Junk"]

    labels = {(r.message_id, r.label, r.source) for r in store.feedback_rows("work")}
    assert (spam_id, "ham", "thunderbird add-on") in labels
    assert (ham_id, "spam", "thunderbird add-on") in labels
    # The engine runs again: the rescued message stays in the Inbox.
    assert worker.run_once()
    assert _folder_of(dovecot.port, user, "Cheap pills today") == ["INBOX"]
    snapshot = mailbox_snapshot(dovecot, user)
    assert sum(len(v) for v in snapshot.values()) == 2  # nothing lost, nothing doubled
    store.close()
