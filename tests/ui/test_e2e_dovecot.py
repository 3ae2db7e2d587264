"""End to end against a real Dovecot, with the shipped default model.

Account configured → app running → a spam message arrives (IMAP APPEND to INBOX) → it is moved
to Junk, shown in the table with its probability and explanation, and a notification fires →
the user presses Not spam → the message is back in INBOX and labelled.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))

SPAM = (
    b'From: "Prize Department" <winner-notice@lucky-claims.biz>\r\n'
    b"To: user@example.net\r\n"
    b"Subject: CONGRATULATIONS!!! You have WON $1,000,000 - claim your prize NOW\r\n"
    b"Message-ID: <prize-e2e@lucky-claims.biz>\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><body><p>Dear Winner,</p><p>You have been selected to receive "
    b"<b>$1,000,000 CASH</b>! Act now, this offer expires in 24 hours. Click "
    b'<a href="http://198.51.100.7/claim">here</a> to claim your prize. Send your bank '
    b"account details and a processing fee of $99. 100% FREE, no risk, guaranteed! "
    b'Cheap meds, lose weight fast. <a href="http://bit.ly/win-now">CLAIM NOW</a></p>'
    b"<p>To unsubscribe click here.</p></body></html>\r\n"
)
MESSAGE_ID = "<prize-e2e@lucky-claims.biz>"


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from dovecot_server import DOVECOT, DovecotServer

    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    srv = DovecotServer().start()
    yield srv
    srv.cleanup()


def where(server: Any, user: str) -> dict[str, list[str]]:
    """{folder: [Message-ID, ...]} as the server has it (read-only, BODY.PEEK)."""
    from dovecot_server import PASSWORD
    from imapclient import IMAPClient

    out: dict[str, list[str]] = {}
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        for folder in ("INBOX", "Junk"):
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            data = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
            out[folder] = [
                next(iter(v for k, v in item.items() if k.startswith(b"BODY[")))
                .decode()
                .partition(":")[2]
                .strip()
                for item in data.values()
            ]
    return out


def test_spam_arrives_is_moved_shown_notified_and_rescued(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path, tray_host: None
) -> None:
    from dovecot_server import PASSWORD
    from imapclient import IMAPClient

    user = server.add_user()
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_command = "echo {PASSWORD}"\njunk_folder = "Junk"\n'
    )
    # The shipped default model (models/default): not the tests' tiny one, and not a personal
    # version a user of this machine may have promoted (what load_scorer(None) would pick).
    from spamguard_ui.messages import percent

    from spamguard.scoring.model import default_model_dir

    app = make_app(demo=False, model_dir=default_model_dir(), config_path=config)
    with qtbot.waitSignal(app.scansFinished, timeout=120_000):
        app.start(show_window=True)
    assert app.window.model.rowCount() == 0  # an empty mailbox to begin with

    # A spam message arrives; the account worker is in IDLE and picks it up.
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        client.append("INBOX", SPAM)
    model = app.window.model

    def row() -> Any:
        rows = [r for r in model.rows() if r.message_id == MESSAGE_ID]
        return rows[0] if rows else None

    qtbot.waitUntil(lambda: row() is not None and row().location == "Junk", timeout=120_000)
    spam = row()
    assert spam.p_spam >= 0.9 and spam.verdict == "spam" and spam.action == "moved to Junk"
    assert where(server, user) == {"INBOX": [], "Junk": [MESSAGE_ID]}

    # A notification fired (batched; a scan's end flushes it at once).
    qtbot.waitUntil(lambda: bool(app.tray.notifications), timeout=10_000)
    title, text = app.tray.notifications[-1]
    assert title == "1 message moved to Junk" and "CONGRATULATIONS" in text

    # Shown in the table with its probability, and the explanation in the detail pane.
    assert app.window.select_key(spam.key)
    pane = app.window.detail
    qtbot.waitUntil(lambda: pane.row is not None and pane.row.key == spam.key, timeout=5000)
    assert percent(spam.p_spam) in pane.score.text()
    from spamguard.llm.explain import plain_reasons

    assert pane.evidence_box.count() == len(plain_reasons(spam.evidence)) > 0
    reasons = pane.summary.text()
    assert "a link to a bare ip address" in reasons.lower() or "HTML" in reasons, reasons

    # The user presses Not spam: back in INBOX, labelled ham, never moved again.
    assert pane.ham_button.isEnabled()
    qtbot.mouseClick(pane.ham_button, _left())
    qtbot.waitUntil(lambda: row() is not None and row().label == "ham", timeout=30_000)
    assert row().location == "INBOX"
    assert where(server, user) == {"INBOX": [MESSAGE_ID], "Junk": []}
    # A later scan leaves the rescued message where the user put it.
    with qtbot.waitSignal(app.scanDone, timeout=60_000):  # GUI-thread signal, see test_tray
        app.scan_now()
    assert where(server, user) == {"INBOX": [MESSAGE_ID], "Junk": []}
    # The Models page shows the engine's counters: the shipped cascade, stage by stage.
    counters = app.models_page.counters.text()
    assert "stage0-cheap" in counters and "CPU-s per 1,000" in counters
    assert app.store is not None
    labels = app.store.feedback_rows("work", message=(MESSAGE_ID, spam.content_hash))
    assert labels and (labels[0].label, labels[0].source) == ("ham", "app button")
    assert {f.label for f in labels} == {"ham"}


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
