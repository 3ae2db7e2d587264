"""Account setup dialog: presets from the address, actionable errors, saving the account."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from spamguard_ui.account_dialog import AccountDialog

from spamguard.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


@pytest.fixture
def dialog(qtbot: Any, tmp_path: Path, plaintext_keyring: Any) -> AccountDialog:
    d = AccountDialog(tmp_path / "config.toml")
    qtbot.addWidget(d)
    d.show()
    return d


def wait_report(qtbot: Any, dialog: AccountDialog) -> Any:
    dialog.report = None
    dialog.test_button.click()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=30_000)
    return dialog.report


def test_address_picks_the_provider_preset(dialog: AccountDialog, qtbot: Any) -> None:
    qtbot.keyClicks(dialog.email, "someone@fastmail.com")
    assert dialog.provider.currentData() == "fastmail"
    assert dialog.host.text() == "imap.fastmail.com"
    assert dialog.port.value() == 993
    assert not dialog.host.isEnabled()
    assert "app password" in dialog.provider_note.text()
    assert dialog.username.text() == "someone@fastmail.com"
    assert dialog.name.text() == "fastmail"


def test_unknown_domain_is_manual(dialog: AccountDialog, qtbot: Any) -> None:
    qtbot.keyClicks(dialog.email, "me@example.org")
    assert dialog.provider.currentData() == ""
    assert dialog.host.isEnabled() and dialog.host.text() == "imap.example.org"


def test_refused_connection_says_what_to_check(dialog: AccountDialog, qtbot: Any) -> None:
    qtbot.keyClicks(dialog.email, "me@example.org")
    dialog.host.setText("127.0.0.1")
    dialog.security.setCurrentIndex(dialog.security.findData("plain"))
    dialog.port.setValue(closed_port())
    qtbot.keyClicks(dialog.password, "pw")
    report = wait_report(qtbot, dialog)
    assert not report.ok and report.kind == "unreachable"
    assert "Could not reach 127.0.0.1" in dialog.result.text()
    assert "Check the host name, the port" in dialog.result.text()


def test_wrong_password_against_dovecot(dialog: AccountDialog, qtbot: Any) -> None:
    from dovecot_server import DOVECOT, DovecotServer

    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    server = DovecotServer().start()
    try:
        user = server.add_user()
        dialog.email.setText(f"{user}@example.org")
        dialog.host.setText("127.0.0.1")
        dialog.security.setCurrentIndex(dialog.security.findData("plain"))
        dialog.port.setValue(server.port)
        dialog.username.setText(user)
        dialog.password.setText("not the password")
        report = wait_report(qtbot, dialog)
        assert not report.ok and report.kind == "auth"
        assert "refused the user name or password" in dialog.result.text()

        from dovecot_server import PASSWORD

        dialog.password.setText(PASSWORD)
        report = wait_report(qtbot, dialog)
        assert report.ok, report.message
        assert "INBOX" in report.folders
        assert dialog.junk.count() > 1
    finally:
        server.cleanup()


def test_add_account_writes_config_and_keyring(
    dialog: AccountDialog, qtbot: Any, plaintext_keyring: Any
) -> None:
    qtbot.keyClicks(dialog.email, "me@fastmail.com")
    qtbot.keyClicks(dialog.password, "app-password")
    dialog.ok_button.click()
    assert dialog.result.text() == "" or "✗" not in dialog.result.text()
    config = load_config(dialog.config_path)
    account = config.accounts["fastmail"]
    assert account.host == "imap.fastmail.com" and account.username == "me@fastmail.com"
    assert "app-password" not in dialog.config_path.read_text()
    assert plaintext_keyring.get_password("spamguard", account.keyring_user) == "app-password"


def test_duplicate_account_name_is_explained(dialog: AccountDialog, qtbot: Any) -> None:
    dialog.config_path.write_text('[accounts.fastmail]\nprovider = "fastmail"\nusername = "x"\n')
    qtbot.keyClicks(dialog.email, "me@fastmail.com")
    dialog.ok_button.click()
    assert "already an account called 'fastmail'" in dialog.result.text()
    assert dialog.isVisible()
