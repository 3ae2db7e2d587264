"""Account setup dialog: presets from the address, actionable errors, saving the account."""

from __future__ import annotations

import dataclasses
import html
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QLabel
from spamguard_ui.account_dialog import AccountDialog

from spamguard.config import load_config
from spamguard.config.edit import AccountKeys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))

from oauth_servers import oauth_servers_fixture  # noqa: F401  (the oauth_servers fixture)


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


def wait_report(qtbot: Any, dialog: AccountDialog, button: Any = None) -> Any:
    dialog.report = None
    (button or dialog.test_button).click()
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


# -- browser sign-in (OAuth2) ----------------------------------------------------------------


@pytest.fixture
def local_google(oauth_servers: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The "google" OAuth preset pointed at the local authorization server."""
    from spamguard.mail import oauth

    authz, dovecot = oauth_servers
    authz.state.reset()
    local = dataclasses.replace(
        oauth.GOOGLE,
        authorize_url=f"{authz.base}/authorize",
        token_url=f"{authz.base}/token",
        extra_authorize_params=(),
    )
    monkeypatch.setitem(oauth.PRESETS, "google", local)  # type: ignore[index]
    return authz, dovecot


def fill_oauth_account(dialog: AccountDialog, port: int) -> None:
    from oauth_servers import CLIENT_ID, EMAIL

    dialog.email.setText(EMAIL)
    dialog.host.setText("127.0.0.1")
    dialog.security.setCurrentIndex(dialog.security.findData("plain"))
    dialog.port.setValue(port)
    dialog.auth.setCurrentIndex(dialog.auth.findData("oauth2"))
    dialog.oauth_provider.setCurrentIndex(dialog.oauth_provider.findData("google"))
    dialog.client_id.setText(CLIENT_ID)


def sign_in(qtbot: Any, dialog: AccountDialog) -> Any:
    return wait_report(qtbot, dialog, dialog.sign_in_button)


def test_outlook_address_offers_browser_sign_in(dialog: AccountDialog, qtbot: Any) -> None:
    qtbot.keyClicks(dialog.email, "someone@outlook.com")
    assert dialog.auth.currentData() == "oauth2"
    assert dialog.oauth_provider.currentData() == "microsoft"
    assert not dialog.form.isRowVisible(dialog.password)
    assert dialog.form.isRowVisible(dialog.client_id)
    assert not dialog.form.isRowVisible(dialog.client_secret)  # Microsoft: public client
    assert dialog.sign_in_button.isVisible() and not dialog.sign_in_button.isEnabled()
    dialog.client_id.setText("some-client")
    assert dialog.sign_in_button.isEnabled()
    assert not dialog.ok_button.isEnabled()  # not signed in yet: it could not log in


def test_browser_sign_in_tests_and_adds_the_account(
    dialog: AccountDialog, qtbot: Any, local_google: Any
) -> None:
    from oauth_servers import CLIENT_ID, EMAIL, Browser

    from spamguard.mail import oauth

    authz, dovecot = local_google
    fill_oauth_account(dialog, dovecot.port)
    browser = Browser()
    dialog.browser.open_url = browser
    report = sign_in(qtbot, dialog)
    assert report.ok, report.message
    assert "Signed in to 127.0.0.1" in dialog.result.text()
    assert "INBOX" in report.folders
    (callback,) = browser.callbacks  # the provider sent the browser back to our loopback
    assert callback.startswith("http://127.0.0.1:") and "/callback?" in callback
    first_name = dialog.name.text()
    assert oauth.load_tokens(first_name) is not None
    assert dialog.ok_button.isEnabled()

    dialog.name.setText("work")  # renamed after signing in: the tokens follow
    dialog.ok_button.click()
    assert not dialog.isVisible(), dialog.result.text()
    account = load_config(dialog.config_path).accounts["work"]
    assert account.auth == "oauth2" and account.username == EMAIL
    assert dict(account.oauth) == {"provider": "google", "client_id": CLIENT_ID}
    assert oauth.load_tokens("work") is not None and oauth.load_tokens(first_name) is None
    text = dialog.config_path.read_text()
    assert not [s for s in authz.state.secrets if s and s in text]  # no token in the config


def test_denied_sign_in_is_explained_and_adds_nothing(
    dialog: AccountDialog, qtbot: Any, local_google: Any
) -> None:
    from oauth_servers import Browser

    from spamguard.mail import oauth

    authz, dovecot = local_google
    authz.state.deny = True
    fill_oauth_account(dialog, dovecot.port)
    dialog.browser.open_url = Browser()
    report = sign_in(qtbot, dialog)
    assert not report.ok
    assert "Access was denied at the provider" in dialog.result.text()
    assert oauth.load_tokens(dialog.name.text()) is None
    assert not dialog.ok_button.isEnabled()
    assert dialog.sign_in_button.text() == "&Sign in with browser…"


def test_waiting_sign_in_can_be_cancelled(
    dialog: AccountDialog, qtbot: Any, local_google: Any
) -> None:
    _authz, dovecot = local_google
    fill_oauth_account(dialog, dovecot.port)
    opened: list[str] = []
    dialog.browser.open_url = opened.append  # a browser the user never finishes signing in with
    dialog.report = None
    dialog.sign_in_button.click()
    qtbot.waitUntil(lambda: bool(opened), timeout=10_000)
    assert "open the sign-in page" in dialog.result.text()
    assert opened[0] in html.unescape(dialog.result.text())  # the link, for a browser that
    assert dialog.sign_in_button.text() == "&Cancel sign-in"  # did not open
    dialog.sign_in_button.click()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=10_000)
    assert "cancelled" in dialog.result.text()
    assert dialog.sign_in_button.text() == "&Sign in with browser…"
    assert not dialog.ok_button.isEnabled()


def test_app_asks_to_sign_in_again_and_recovers(
    local_google: Any, make_app: Any, qtbot: Any, tmp_path: Path, plaintext_keyring: Any
) -> None:
    """An OAuth2 account without usable tokens: a banner link, the browser, the scan resumes."""
    from oauth_servers import CLIENT_ID, EMAIL, Browser

    from spamguard.mail import oauth

    _authz, dovecot = local_google
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "plain"\n'
        f'username = "{EMAIL}"\nauth = "oauth2"\noauth_provider = "google"\n'
        f'oauth_client_id = "{CLIENT_ID}"\n'
    )
    app = make_app(demo=False, config_path=config)
    app.start(show_window=True)
    banner = app.window.banner
    qtbot.waitUntil(lambda: "Sign in again…" in banner.text(), timeout=30_000)
    assert banner.isVisible() and "work can no longer be read" in banner.text()
    assert "spamguard account login work" in banner.toolTip()  # the engine's own words

    banner.linkActivated.emit("signin:work")  # the user follows the banner's link
    dialog = app.sign_in_dialog
    assert dialog is not None and dialog.isVisible()
    assert EMAIL in dialog.findChildren(QLabel)[0].text()
    dialog.browser.open_url = Browser()
    with qtbot.waitSignal(app.scanDone, timeout=30_000) as scanned:
        dialog.sign_in_button.click()
    assert scanned.args[0] == "work"
    assert dialog.report is not None and dialog.report.ok, dialog.report
    assert not dialog.isVisible() and not banner.isVisible()
    assert oauth.load_tokens("work") is not None


@pytest.mark.parametrize(
    "index,limits",
    [(0, (500, 30)), (1, (500, 0)), (2, (0, 30)), (3, (0, 0))],
)
def test_first_scan_choice_goes_to_the_config_in_words(
    dialog: AccountDialog, qtbot: Any, index: int, limits: tuple[int, int]
) -> None:
    qtbot.keyClicks(dialog.email, "me@fastmail.com")
    qtbot.keyClicks(dialog.password, "app-password")
    dialog.backlog.setCurrentIndex(index)
    dialog.ok_button.click()
    account = load_config(dialog.config_path).accounts["fastmail"]
    assert (account.backlog_messages, account.backlog_days) == limits
    text = dialog.config_path.read_text()
    # The default writes nothing; a choice is written as the words a person would read.
    assert ("backlog" in text) == (index != 0)
    if index:
        assert f'backlog = "{dialog.backlog.itemData(index)}"' in text


def test_known_sender_protection_is_a_setting_of_the_account(
    dialog: AccountDialog, qtbot: Any, plaintext_keyring: Any
) -> None:
    """Issue 17 item 5: `protect_known_senders` (on by default) in the dialog; unticked it is
    written to the config, the edit dialog shows it, and ticking it again removes the line."""
    assert dialog.protect_known.isChecked()  # on unless the user says otherwise
    qtbot.keyClicks(dialog.email, "me@fastmail.com")
    qtbot.keyClicks(dialog.password, "app-password")
    dialog.protect_known.setChecked(False)
    dialog.ok_button.click()
    path = dialog.config_path
    assert "protect_known_senders = false" in path.read_text()
    account = load_config(path).accounts["fastmail"]
    assert account.protect_known_senders is False
    path.write_text(path.read_text() + 'block = ["spam.example"]\n')

    edit = AccountDialog(path, account=account)
    qtbot.addWidget(edit)
    edit.show()
    assert not edit.protect_known.isChecked() and edit.protect_known.isVisible()
    edit.protect_known.setChecked(True)
    edit.ok_button.click()
    assert "protect_known_senders" not in path.read_text()
    account = load_config(path).accounts["fastmail"]
    assert account.protect_known_senders is True and account.block == ("spam.example",)


# -- no keyring, nothing half-added, certificates (issue 22) ---------------------------------


@pytest.fixture
def dovecot() -> Any:
    from dovecot_server import DOVECOT, DovecotServer

    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    server = DovecotServer(tls=True).start()
    yield server
    server.cleanup()


@pytest.fixture
def no_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A machine without a Secret Service: keyring's own fail backend; the encrypted file in
    a temp dir; the file store locked again afterwards."""
    import keyring
    from keyring.backends import fail

    from spamguard.mail import credentials

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    monkeypatch.setenv(credentials.SECRETS_FILE_ENV, str(tmp_path / "secrets.cfg"))
    monkeypatch.delenv(credentials.PASSPHRASE_ENV, raising=False)
    yield tmp_path / "secrets.cfg"
    credentials.lock_file_store()
    keyring.set_keyring(previous)


@pytest.fixture
def bare_dialog(qtbot: Any, tmp_path: Path, no_keyring: Any) -> AccountDialog:
    d = AccountDialog(tmp_path / "config.toml")
    qtbot.addWidget(d)
    d.show()
    return d


def screenshot(qtbot: Any, dialog: AccountDialog, name: str) -> None:
    """With SPAMGUARD_SCREENSHOTS=DIR, save the dialog as it is now (README pictures)."""
    import os

    folder = os.environ.get("SPAMGUARD_SCREENSHOTS")
    if folder:
        dialog.adjustSize()
        qtbot.wait(200)
        assert dialog.grab().save(str(Path(folder) / f"{name}.png"))


def fill_dovecot_account(dialog: AccountDialog, server: Any, *, tls: bool = False) -> str:
    user = str(server.add_user())
    dialog.email.setText(f"{user}@example.org")
    dialog.host.setText("127.0.0.1")
    dialog.security.setCurrentIndex(dialog.security.findData("tls" if tls else "plain"))
    dialog.port.setValue(server.tls_port if tls else server.port)
    dialog.username.setText(user)
    return user


def test_without_keyring_a_password_command_ends_in_a_working_account(
    bare_dialog: AccountDialog, qtbot: Any, dovecot: Any, tmp_path: Path
) -> None:
    from dovecot_server import PASSWORD

    from spamguard.engine.accounts import check_connection

    dialog = bare_dialog
    assert dialog.keyring_note.isVisible()
    assert "No system keyring is running" in dialog.keyring_note.text()
    keyring_item = dialog.store.model().item(dialog.store.findData("keyring"))  # type: ignore[attr-defined]
    assert not keyring_item.isEnabled()  # the dead end is not offered
    fill_dovecot_account(dialog, dovecot)
    dialog.store.setCurrentIndex(dialog.store.findData("command"))
    assert not dialog.form.isRowVisible(dialog.password)
    examples = dialog.command_examples.text()
    for tool in ("pass show", "secret-tool lookup", "op read", "bw get password"):
        assert tool in html.unescape(examples)
    assert not dialog.ok_button.isEnabled()  # no command yet
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(PASSWORD + "\n")
    dialog.password_command.setText(f"cat {secret_file}")
    report = wait_report(qtbot, dialog)
    assert report.ok, report.message
    screenshot(qtbot, dialog, "account-dialog-no-keyring-command")
    dialog.ok_button.click()
    assert not dialog.isVisible(), dialog.result.text()
    account = load_config(dialog.config_path).accounts[dialog.name.text()]
    assert account.password_command == f"cat {secret_file}"
    assert PASSWORD not in dialog.config_path.read_text()
    assert check_connection(account).ok  # the engine signs in with it, as a scan would


def test_without_keyring_the_encrypted_file_ends_in_a_working_account(
    bare_dialog: AccountDialog, qtbot: Any, dovecot: Any, no_keyring: Path
) -> None:
    from dovecot_server import PASSWORD

    from spamguard.engine.accounts import check_connection
    from spamguard.mail import credentials

    dialog = bare_dialog
    assert dialog.store.currentData() == "file"  # the way through, chosen for the user
    fill_dovecot_account(dialog, dovecot)
    dialog.password.setText(PASSWORD)
    report = wait_report(qtbot, dialog)
    assert report.ok, report.message
    assert not no_keyring.exists()  # testing stored nothing
    screenshot(qtbot, dialog, "account-dialog-no-keyring")
    dialog.ok_button.click()
    assert "Choose a passphrase" in dialog.result.text() and not dialog.config_path.exists()
    dialog.passphrase.setText("correct horse")
    dialog.passphrase_again.setText("correct hose")
    dialog.ok_button.click()
    assert "passphrases differ" in dialog.result.text() and dialog.isVisible()
    assert not dialog.config_path.exists()
    dialog.passphrase_again.setText("correct horse")
    with qtbot.waitSignal(dialog.accepted, timeout=60_000):
        dialog.ok_button.click()
        # The key derivation runs in a thread: the dialog says so and holds its buttons;
        # Escape meanwhile does not close it (the save could not be taken back).
        assert dialog.saving and credentials.file_store_locked(), dialog.result.text()
        assert "Saving" in dialog.result.text() and not dialog.buttons.isEnabled()
        dialog.reject()
        assert dialog.isVisible()
    assert not dialog.isVisible(), dialog.result.text()
    account = load_config(dialog.config_path).accounts[dialog.name.text()]
    assert account.password_store == "file" and account.password_command is None
    assert PASSWORD not in dialog.config_path.read_text()
    assert PASSWORD not in no_keyring.read_text()  # encrypted, not a plaintext file
    assert check_connection(account).ok  # unlocked in this process by the dialog

    credentials.lock_file_store()  # a new process: locked until it is given the passphrase
    locked = check_connection(account)
    assert not locked.ok and "locked" in locked.message
    with pytest.raises(Exception, match="wrong passphrase"):
        credentials.unlock_file_store("not it")
    credentials.unlock_file_store("correct horse")
    assert check_connection(account).ok


def test_test_connection_stores_nothing_and_cancel_leaves_nothing(
    dialog: AccountDialog, qtbot: Any, dovecot: Any, plaintext_keyring: Any
) -> None:
    from dovecot_server import PASSWORD

    user = fill_dovecot_account(dialog, dovecot)
    dialog.password.setText(PASSWORD)
    report = wait_report(qtbot, dialog)
    assert report.ok, report.message
    assert plaintext_keyring.get_password("spamguard", f"{user}@127.0.0.1") is None
    dialog.reject()
    assert not dialog.config_path.exists()
    assert plaintext_keyring.get_password("spamguard", f"{user}@127.0.0.1") is None


def test_add_account_is_config_and_secret_together_or_nothing(
    tmp_path: Path, plaintext_keyring: Any, no_keyring: Any
) -> None:
    import keyring

    from spamguard.engine.accounts import add_account
    from spamguard.errors import SpamGuardError

    config = tmp_path / "config.toml"
    keys = AccountKeys(username="me", host="imap.example.org", port=993, security="tls")
    # No keyring: the secret cannot be kept, so no section is written either.
    with pytest.raises(SpamGuardError, match="No system keyring"):
        add_account(config, "home", keys, secret="pw")
    assert not config.exists()
    # The secret was stored but the config cannot be written: the secret goes again.
    keyring.set_keyring(plaintext_keyring)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    with pytest.raises(SpamGuardError, match="nothing was added"):
        add_account(blocked / "config.toml", "home", keys, secret="pw")
    assert plaintext_keyring.get_password("spamguard", "me@imap.example.org") is None
    add_account(config, "home", keys, secret="pw")
    assert plaintext_keyring.get_password("spamguard", "me@imap.example.org") == "pw"


def test_self_signed_certificate_is_trusted_through_the_dialog(
    dialog: AccountDialog, qtbot: Any, dovecot: Any, plaintext_keyring: Any
) -> None:
    from dovecot_server import PASSWORD

    from spamguard.engine.accounts import check_connection

    fill_dovecot_account(dialog, dovecot, tls=True)
    dialog.password.setText(PASSWORD)
    report = wait_report(qtbot, dialog)
    assert not report.ok and report.kind == "tls"
    assert dialog.cert_box.isVisible()
    info = html.unescape(dialog.cert_info.text())
    assert "CN=localhost" in info  # subject and issuer of the fixture's certificate
    assert "Valid:" in info and "until" in info
    assert report.fingerprint.removeprefix("sha256:") in info.replace("<br>", "")
    assert dialog.trust_cert.text() == "&Trust this certificate for this account"
    assert not dialog.ok_button.isEnabled()  # an untrusted certificate is not added
    screenshot(qtbot, dialog, "account-dialog-certificate")
    dialog.report = None
    dialog.trust_cert.setChecked(True)  # trusting tests again with the pin
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=30_000)
    assert dialog.report.ok, dialog.report.message
    dialog.ok_button.click()
    assert not dialog.isVisible(), dialog.result.text()
    account = load_config(dialog.config_path).accounts[dialog.name.text()]
    assert account.tls_fingerprint == "sha256:" + report.fingerprint[7:].replace(":", "").lower()
    assert check_connection(account).ok  # the saved pin lets the engine in


def test_no_security_warns_except_for_this_computer(dialog: AccountDialog, qtbot: Any) -> None:
    qtbot.keyClicks(dialog.email, "me@example.org")
    dialog.security.setCurrentIndex(dialog.security.findData("plain"))
    assert dialog.plain_warning.isVisible() and "unencrypted" in dialog.plain_warning.text()
    screenshot(qtbot, dialog, "account-dialog-no-security")
    assert not dialog.ok_button.isEnabled() and not dialog.test_button.isEnabled()
    dialog.allow_plaintext.setChecked(True)
    assert dialog.ok_button.isEnabled()
    dialog.host.setText("127.0.0.1")
    assert not dialog.plain_warning.isVisible() and dialog.ok_button.isEnabled()
    dialog.host.setText("mail.example.org")
    dialog.allow_plaintext.setChecked(True)
    qtbot.keyClicks(dialog.password, "pw")
    dialog.ok_button.click()
    account = load_config(dialog.config_path).accounts[dialog.name.text()]
    assert account.allow_plaintext and account.security == "plain"


def test_app_waits_for_the_passphrase_then_scans(
    make_app: Any, qtbot: Any, tmp_path: Path, dovecot: Any, no_keyring: Path
) -> None:
    """A restart with the password in the encrypted file: the account waits, the banner asks
    for the passphrase (a wrong one is said so), then the scan runs."""
    from dovecot_server import PASSWORD

    from spamguard.mail import credentials

    user = dovecot.add_user()
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.home]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_store = "file"\n'
    )
    account = load_config(config).accounts["home"]
    credentials.unlock_file_store("correct horse")
    credentials.store_password(account, PASSWORD)
    credentials.lock_file_store()  # as after a restart

    app = make_app(demo=False, config_path=config)
    app.start(show_window=True)
    banner = app.window.banner
    assert banner.isVisible() and "Enter the passphrase…" in banner.text()
    assert "home" not in app.runners  # no worker that could only fail to sign in

    banner.linkActivated.emit("unlock:")
    app.unlock_dialog.setTextValue("not it")
    app.unlock_dialog.accept()
    # Checked in a thread (Argon2: a second, more on a busy machine); then asked again.
    qtbot.waitUntil(
        lambda: app.unlock_dialog is not None and app.unlock_dialog.isVisible(), timeout=60_000
    )
    assert "Wrong passphrase" in app.unlock_dialog.labelText()
    assert "home" not in app.runners
    with qtbot.waitSignal(app.scanDone, timeout=30_000) as scanned:
        app.unlock_dialog.setTextValue("correct horse")
        app.unlock_dialog.accept()
        # The key derivation (about a second) runs in a thread: the window is back at once,
        # saying what it does, and the file is not open yet.
        assert credentials.file_store_locked()
        assert app.unlocker is not None and app.unlocker.isRunning()
        assert "Unlocking the password file" in banner.text()
    assert scanned.args[0] == "home"
    assert not banner.isVisible()


def test_remove_account_asks_then_removes_config_and_secret(
    make_app: Any, qtbot: Any, tmp_path: Path, dovecot: Any, plaintext_keyring: Any
) -> None:
    from dovecot_server import PASSWORD
    from PySide6.QtWidgets import QMessageBox

    user = dovecot.add_user()
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.home]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "plain"\n'
        f'username = "{user}"\n\n[accounts.home.thresholds]\nmove = 0.95\n\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_command = "echo {PASSWORD}"\n'
    )
    plaintext_keyring.set_password("spamguard", f"{user}@127.0.0.1", PASSWORD)
    app = make_app(demo=False, config_path=config)
    with qtbot.waitSignal(app.scanDone, timeout=30_000):
        app.start(show_window=True)

    app.confirm_remove_account("home")
    box = app.remove_dialog
    assert "forgets its stored password" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()  # the default answer keeps it
    assert "home" in load_config(config).accounts and "home" in app.runners

    app.confirm_remove_account("home")
    remove = next(b for b in app.remove_dialog.buttons() if "Remove" in b.text())
    remove.click()
    remaining = load_config(config)
    assert list(remaining.accounts) == ["work"]  # the other account and its settings stay
    assert "thresholds" not in config.read_text()  # the removed account's sub-table went too
    assert plaintext_keyring.get_password("spamguard", f"{user}@127.0.0.1") is None
    assert "home" not in app.runners
    root = app.window.places.topLevelItem(0)
    assert [root.child(i).text(0) for i in range(root.childCount())] == ["work"]


def test_edit_account_keeps_other_settings_and_moves_the_secret(
    make_app: Any, qtbot: Any, tmp_path: Path, dovecot: Any, plaintext_keyring: Any
) -> None:
    """Edit: the fields show the account; switching to a password command saves it, keeps the
    lines the dialog does not own, forgets the keyring copy and restarts the worker."""
    from dovecot_server import PASSWORD

    user = dovecot.add_user()
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.home]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "plain"\n'
        f'username = "{user}"\nwatch_folders = ["INBOX"]\n\n'
        "[accounts.home.thresholds]\nmove = 0.95\n"
    )
    plaintext_keyring.set_password("spamguard", f"{user}@127.0.0.1", PASSWORD)
    app = make_app(demo=False, config_path=config)
    with qtbot.waitSignal(app.scanDone, timeout=30_000):
        app.start(show_window=True)

    dialog = app.edit_account("home")
    assert dialog.name.text() == "home" and dialog.name.isReadOnly()
    assert dialog.host.text() == "127.0.0.1" and dialog.port.value() == dovecot.port
    assert dialog.username.text() == user and dialog.store.currentData() == "keyring"
    assert dialog.ok_button.text() == "&Save" and not dialog.learn_existing.isVisible()
    report = wait_report(qtbot, dialog)  # the stored password, nothing typed
    assert report.ok, report.message
    dialog.store.setCurrentIndex(dialog.store.findData("command"))
    dialog.password_command.setText(f"echo {PASSWORD}")
    with qtbot.waitSignal(app.scanDone, timeout=30_000) as scanned:
        dialog.ok_button.click()
    assert scanned.args[0] == "home"  # the worker runs again on the saved settings
    account = load_config(config).accounts["home"]
    assert account.password_command == f"echo {PASSWORD}"
    assert account.thresholds.move == 0.95 and account.watch_folders == ("INBOX",)
    assert plaintext_keyring.get_password("spamguard", f"{user}@127.0.0.1") is None


def test_update_account_moves_the_password_with_the_user_name(
    tmp_path: Path, plaintext_keyring: Any
) -> None:
    from spamguard.engine.accounts import add_account, update_account
    from spamguard.errors import SpamGuardError

    config = tmp_path / "config.toml"
    keys = AccountKeys(username="old", host="imap.example.org", port=993, security="tls")
    add_account(config, "home", keys, secret="pw")
    config.write_text(config.read_text() + 'block = ["spam.example"]\n')
    update_account(config, "home", dataclasses.replace(keys, username="new"))
    assert plaintext_keyring.get_password("spamguard", "new@imap.example.org") == "pw"
    assert plaintext_keyring.get_password("spamguard", "old@imap.example.org") is None
    account = load_config(config).accounts["home"]
    assert account.username == "new" and account.block == ("spam.example",)
    with pytest.raises(SpamGuardError, match="no account called 'work'"):
        update_account(config, "work", dataclasses.replace(keys, username="x"))


def test_cancel_after_browser_sign_in_leaves_no_tokens(
    dialog: AccountDialog, qtbot: Any, local_google: Any
) -> None:
    from oauth_servers import Browser

    from spamguard.mail import oauth

    _authz, dovecot = local_google
    fill_oauth_account(dialog, dovecot.port)
    dialog.browser.open_url = Browser()
    report = sign_in(qtbot, dialog)
    assert report.ok, report.message
    assert oauth.load_tokens(dialog.name.text()) is not None
    dialog.reject()
    assert oauth.load_tokens(dialog.name.text()) is None
    assert not dialog.config_path.exists()
