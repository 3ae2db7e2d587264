"""`spamguard run --once` on a real Dovecot with the shipped model: the GTUBE test line
(issue 21, item 9) goes to Junk, the same friendly note without it stays in the Inbox."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from dovecot_server import DovecotServer
from imap_helpers import account_toml, append_all, mailbox_snapshot, make_mail

from spamguard.scoring.rules import GTUBE

REPO = Path(__file__).parent.parent.parent
NOTE = "Hi Sam,\r\n\r\nTesting the new mail filter, please ignore.\r\n\r\n{}\r\n\r\nThanks, Alex"


def test_run_once_moves_the_gtube_test_message_to_junk(
    dovecot: DovecotServer, user: str, tmp_path: Path
) -> None:
    test = make_mail(1, None, subject="filter test", body=NOTE.format(GTUBE))
    note = make_mail(2, None, subject="filter test", body=NOTE.format("See you Monday."))
    append_all(dovecot, user, [test, note])
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n\n' + account_toml(dovecot, user))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["HOME"] = str(tmp_path)  # nothing of the real user's config, keyring or models
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env.pop("SPAMGUARD_SCORER", None)  # the shipped cascade, as a user runs it
    done = subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    where = {
        subject: folder
        for folder, rows in mailbox_snapshot(dovecot, user, ("INBOX", "Junk")).items()
        for subject, _, flags in rows
        if "\\Deleted" not in flags
    }
    assert where == {_mid(test): "Junk", _mid(note): "INBOX"}
    # The verdict on record is the rule's: p = 1.0, the reason named.
    db = sqlite3.connect(tmp_path / "data" / "spamguard.sqlite3")
    try:
        rows = {
            m: (p, e) for m, p, e in db.execute("SELECT message_id, p_spam, evidence FROM messages")
        }
    finally:
        db.close()
    assert rows[_mid(test)][0] == 1.0 and "rule:gtube" in rows[_mid(test)][1]
    assert rows[_mid(note)][0] < 0.9 and "rule:gtube" not in rows[_mid(note)][1]


def _mid(raw: bytes) -> str:
    return raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
