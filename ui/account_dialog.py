"""Account setup: address, provider preset or manual server, password or browser sign-in
(OAuth2) to the keyring, a connection test."""

from __future__ import annotations

import contextlib
import html
import ipaddress
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from spamguard.config import PRESETS, AccountSettings, load_config
from spamguard.config.edit import AccountKeys
from spamguard.engine.accounts import add_account, check_connection, preset_for_email
from spamguard.engine.session import ConnectionReport
from spamguard.errors import SpamGuardError

from .messages import SPAM_COLOUR

SECURITY = (("tls", "TLS (port 993)"), ("starttls", "STARTTLS (port 143)"), ("plain", "None"))
OAUTH_PROVIDERS = (
    ("google", "Google (Gmail, Workspace)"),
    ("microsoft", "Microsoft (365, Outlook.com)"),
)
# Which OAuth2 provider signs in to a preset's server.
PRESET_OAUTH = {"gmail": "google", "outlook": "microsoft"}
# Where a password account's password is kept.
STORES = (
    ("keyring", "In the system keyring"),
    ("file", "In an encrypted file, protected by a passphrase"),
    ("command", "Ask my password manager (a password command)"),
)
PASSWORD_COMMAND_EXAMPLES = (
    ("pass", "pass show mail/you@example.com"),
    ("GNOME secret-tool", "secret-tool lookup service imap user you@example.com"),
    ("1Password", 'op read "op://Personal/Mail/password"'),
    ("Bitwarden", "bw get password imap.example.com"),
)


def _is_local(host: str) -> bool:
    """Loopback: traffic that never leaves this computer."""
    if host.strip().lower() in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def _pin(fingerprint: str) -> str:
    """The config's form of a shown fingerprint ("sha256:AB:CD…" -> "sha256:abcd…")."""
    body = fingerprint.strip().lower().removeprefix("sha256:").replace(":", "")
    return "sha256:" + body


def _result_label(parent: QWidget) -> QLabel:
    """Where a dialog says how connecting or signing in went: room for three lines, links."""
    label = QLabel()
    label.setWordWrap(True)
    label.setOpenExternalLinks(True)
    label.setMinimumHeight(parent.fontMetrics().height() * 3)
    return label


def _outcome(ok: bool, text_html: str) -> str:
    """A green tick or a red cross before ``text_html`` (already escaped)."""
    colour, mark = ("#2e7d32", "✓") if ok else (SPAM_COLOUR.name(), "✗")
    return f'<span style="color:{colour}">{mark}</span> {text_html}'


class _Signals(QObject):
    done = Signal(object)


class _TestJob(QRunnable):
    """Runs the connection test off the GUI thread: DNS and TLS can take seconds."""

    def __init__(self, settings: AccountSettings, password: str) -> None:
        super().__init__()
        # Python owns the job: with auto-delete the pool frees it under the Python wrapper.
        self.setAutoDelete(False)
        self.settings, self.password = settings, password
        self.signals = _Signals()

    def run(self) -> None:
        try:
            # The password is used for this login only: a test stores nothing anywhere.
            report = check_connection(self.settings, password=self.password or None)
        except SpamGuardError as exc:
            report = ConnectionReport(False, str(exc), "credentials")
        self.signals.done.emit(report)


class _SaveJob(QRunnable):
    """Saves the account off the GUI thread when the encrypted password file is involved:
    its key derivation (Argon2) takes a second or more, and the dialog must not freeze."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.work = work
        self.signals = _Signals()

    def run(self) -> None:
        try:
            self.work()
        except SpamGuardError as exc:
            self.signals.done.emit(str(exc))
            return
        self.signals.done.emit("")


class _SignInSignals(QObject):
    open_url = Signal(str)
    done = Signal(object)


class _SignInJob(QRunnable):
    """Browser sign-in (OAuth2 with PKCE and a loopback redirect), then the connection test.

    Runs off the GUI thread: it waits for the browser for up to five minutes, or until
    ``cancel`` is set (the Cancel button, closing the dialog). The tokens go to the keyring
    under the account's name.
    """

    def __init__(self, settings: AccountSettings) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.settings = settings
        self.cancel = threading.Event()
        self.signals = _SignInSignals()

    def run(self) -> None:
        from spamguard.mail import oauth
        from spamguard.mail.credentials import oauth_settings

        try:
            oauth.authorize(
                self.settings.name,
                oauth_settings(self.settings),
                open_browser=self.signals.open_url.emit,
                login_hint=self.settings.username,
                cancel=self.cancel,
            )
            report = check_connection(self.settings)
        except SpamGuardError as exc:
            report = ConnectionReport(False, str(exc), "auth")
        self.signals.done.emit(report)


class BrowserSignIn(QObject):
    """A dialog's browser sign-in: one at a time, its button doubling as Cancel, the link of
    the sign-in page shown in the dialog's result label in case no browser opened.

    ``open_url`` shows the provider's page (the system browser; tests put a scripted
    browser there). ``finished`` carries the `ConnectionReport` of the test that follows.
    """

    finished = Signal(object)

    def __init__(self, button: QPushButton, result: QLabel, parent: QObject) -> None:
        super().__init__(parent)
        self.button, self.result = button, result
        self.job: _SignInJob | None = None
        self.settings: AccountSettings | None = None  # of the last sign-in started
        self.open_url: Callable[[str], object] = lambda url: QDesktopServices.openUrl(QUrl(url))

    @property
    def running(self) -> bool:
        return self.job is not None

    def toggle(self, settings: AccountSettings) -> bool:
        """Start signing in with ``settings``, or cancel the sign-in that is waiting.
        True when one started."""
        if self.job is not None:
            self.cancel()
            self.button.setEnabled(False)  # until the job reports back
            return False
        job = _SignInJob(settings)
        self.settings = settings
        job.signals.open_url.connect(self._open)
        job.signals.done.connect(self._done)
        self.job = job
        self.button.setText(self.tr("&Cancel sign-in"))
        self.result.setText(self.tr("Opening the sign-in page in your browser…"))
        QThreadPool.globalInstance().start(job)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    def _open(self, url: str) -> None:
        link = f'<a href="{html.escape(url, quote=True)}">' + self.tr("open the sign-in page")
        self.result.setText(
            self.tr("Finish signing in in your browser. If no browser window opened, %1.").replace(
                "%1", link + "</a>"
            )
        )
        self.open_url(url)

    def _done(self, report: ConnectionReport) -> None:
        self.job = None
        self.button.setText(self.tr("&Sign in with browser…"))
        self.button.setEnabled(True)
        self.finished.emit(report)


class SignInDialog(QDialog):
    """Signs an OAuth2 account in again when its tokens expired or were revoked."""

    def __init__(self, settings: AccountSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.report: ConnectionReport | None = None
        self.setWindowTitle(self.tr("Sign in to %1").replace("%1", settings.name))
        layout = QVBoxLayout(self)
        intro = QLabel(
            self.tr(
                "SpamGuard can no longer read %1 as %2: its sign-in expired or was withdrawn. "
                "Sign in again in your browser; SpamGuard never sees your password."
            )
            .replace("%1", html.escape(settings.name))
            .replace("%2", html.escape(settings.username))
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.sign_in_button = QPushButton(self.tr("&Sign in with browser…"))
        row = QHBoxLayout()
        row.addWidget(self.sign_in_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.result = _result_label(self)
        layout.addWidget(self.result)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.browser = BrowserSignIn(self.sign_in_button, self.result, self)
        self.browser.finished.connect(self._finished)
        self.sign_in_button.clicked.connect(self.sign_in)
        self.resize(max(self.sizeHint().width(), 460), self.sizeHint().height())

    def sign_in(self) -> None:
        if self.browser.toggle(self.settings):
            self.report = None

    def _finished(self, report: ConnectionReport) -> None:
        self.report = report
        self.result.setText(_outcome(report.ok, html.escape(report.message, quote=False)))
        if report.ok:
            self.accept()

    def done(self, result: int) -> None:
        self.browser.cancel()  # closing abandons a sign-in still waiting for the browser
        super().done(result)


class AccountDialog(QDialog):
    """Adds one account to the config file; the password goes to the system keyring only."""

    def __init__(
        self,
        config_path: Path,
        parent: QWidget | None = None,
        *,
        account: AccountSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self.config_path = config_path
        self.editing = account  # None: adding a new account
        self.report: ConnectionReport | None = None
        self._jobs: list[_TestJob] = []
        self._signed_in_as: str | None = None  # the account name the keyring tokens are under
        self._added = False
        self.setWindowTitle(self.tr("Add a mail account"))
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.email = QLineEdit()
        self.email.setPlaceholderText("you@example.com")
        self.email.setToolTip(self.tr("Your e-mail address; it picks the server settings"))
        self.name = QLineEdit()
        self.name.setToolTip(self.tr("A short name for this account (letters, digits, - and _)"))
        self.provider = QComboBox()
        self.provider.addItem(self.tr("Other (enter server below)"), "")
        for name in sorted({p.name for p in PRESETS.values()}):
            self.provider.addItem(name.capitalize() if name != "mailbox.org" else name, name)
        self.provider.setToolTip(self.tr("Known providers fill in server, port and security"))
        self.host = QLineEdit()
        self.host.setPlaceholderText("imap.example.com")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(993)
        self.security = QComboBox()
        for key, text in SECURITY:
            self.security.addItem(self.tr(text), key)
        self.security.setToolTip(self.tr("TLS protects your password on the way to the server"))
        self.username = QLineEdit()
        self.auth = QComboBox()
        self.auth.addItem(self.tr("Password or app password"), "password")
        self.auth.addItem(self.tr("Browser sign-in (OAuth2)"), "oauth2")
        self.auth.setToolTip(
            self.tr("Gmail and Microsoft accounts can sign in in the browser instead of a password")
        )
        self.oauth_provider = QComboBox()
        for key, text in OAUTH_PROVIDERS:
            self.oauth_provider.addItem(self.tr(text), key)
        self.client_id = QLineEdit()
        self.client_id.setPlaceholderText(self.tr("from your desktop OAuth client registration"))
        self.client_id.setToolTip(
            self.tr(
                "Register a desktop OAuth client with Google Cloud or Microsoft Entra and paste "
                "its client ID (README: With OAuth2)"
            )
        )
        self.client_secret = QLineEdit()
        self.client_secret.setToolTip(
            self.tr(
                "Google gives desktop clients a secret that is not confidential; it is kept "
                "in the config file with the client ID. Your own tokens go to the keyring."
            )
        )
        self.sign_in_button = QPushButton(self.tr("&Sign in with browser…"))
        self.sign_in_button.setToolTip(
            self.tr("Opens the provider's sign-in page; SpamGuard never sees your password")
        )
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setToolTip(
            self.tr("Kept in the system keyring or the encrypted file, never in the config file")
        )
        # Where the password is kept; without a system keyring, the other two ways through.
        self.keyring_problem = self._keyring_problem()
        self.keyring_note = QLabel()
        self.keyring_note.setWordWrap(True)
        self.store = QComboBox()
        for key, text in STORES:
            self.store.addItem(self.tr(text), key)
        if self.keyring_problem:
            self.keyring_note.setText(
                html.escape(self.keyring_problem)
                + " "
                + self.tr(
                    "Choose another way to keep it below: an encrypted file that asks for a "
                    "passphrase, or the password manager you already use."
                )
            )
            item = self.store.model().item(0)  # type: ignore[attr-defined]
            item.setEnabled(False)
            item.setToolTip(self.keyring_problem)
            self.store.setCurrentIndex(self.store.findData("file"))
        self.keyring_note.setVisible(bool(self.keyring_problem))
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setToolTip(
            self.tr(
                "Protects the encrypted password file; SpamGuard asks for it when it starts. "
                "It cannot be recovered: choose one you will remember."
            )
        )
        self.passphrase_again = QLineEdit()
        self.passphrase_again.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_command = QLineEdit()
        self.password_command.setPlaceholderText("pass show mail/you@example.com")
        self.password_command.setToolTip(
            self.tr("A command that prints the password; SpamGuard runs it at each sign-in")
        )
        self.command_examples = QLabel(
            self.tr("Examples:")
            + "<br>"
            + "<br>".join(
                f"{html.escape(tool)}: <code>{html.escape(cmd)}</code>"
                for tool, cmd in PASSWORD_COMMAND_EXAMPLES
            )
        )
        self.command_examples.setTextInteractionFlags(
            self.command_examples.textInteractionFlags()
            | Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.provider_note = QLabel()
        self.provider_note.setWordWrap(True)
        self.provider_note.setMinimumHeight(self.fontMetrics().height() * 2)
        form.addRow(self.tr("&E-mail address:"), self.email)
        form.addRow(self.tr("Account &name:"), self.name)
        form.addRow(self.tr("&Provider:"), self.provider)
        form.addRow("", self.provider_note)
        form.addRow(self.tr("IMAP &server:"), self.host)
        server_row = QHBoxLayout()
        server_row.addWidget(self.port)
        server_row.addWidget(self.security, 1)
        # A layout cannot take the mnemonic's focus: point the label at the port field.
        port_label = QLabel(self.tr("P&ort and security:"))
        port_label.setBuddy(self.port)
        form.addRow(port_label, server_row)
        form.addRow(self.tr("&User name:"), self.username)
        form.addRow(self.tr("Sign-&in method:"), self.auth)
        form.addRow("", self.keyring_note)
        form.addRow(self.tr("&Keep the password:"), self.store)
        form.addRow(self.tr("Pass&word:"), self.password)
        form.addRow(self.tr("Passp&hrase:"), self.passphrase)
        form.addRow(self.tr("Passphrase a&gain:"), self.passphrase_again)
        form.addRow(self.tr("Password co&mmand:"), self.password_command)
        form.addRow("", self.command_examples)
        form.addRow(self.tr("OAuth pro&vider:"), self.oauth_provider)
        form.addRow(self.tr("OAuth &client ID:"), self.client_id)
        form.addRow(self.tr("Client s&ecret:"), self.client_secret)
        self.form = form
        layout.addLayout(form)
        # "None" security to anything but this computer: the password crosses the network bare.
        self.plain_warning = QLabel(
            self.tr(
                "<b>No security:</b> your password and your mail would cross the network "
                "unencrypted, readable by anyone on the way. Use TLS or STARTTLS unless the "
                "server is on a network you fully trust."
            )
        )
        self.plain_warning.setWordWrap(True)
        self.plain_warning.setStyleSheet(f"color: {SPAM_COLOUR.name()}")
        self.allow_plaintext = QCheckBox(self.tr("Send my password &unencrypted anyway"))
        layout.addWidget(self.plain_warning)
        layout.addWidget(self.allow_plaintext)

        test_row = QHBoxLayout()
        self.test_button = QPushButton(self.tr("&Test connection"))
        self.test_button.setToolTip(
            self.tr("Sign in once and look for the Junk folder (saves the password in the keyring)")
        )
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.sign_in_button)
        test_row.addStretch(1)
        layout.addLayout(test_row)
        self.result = _result_label(self)
        layout.addWidget(self.result)
        # An unverified certificate: what it is, and the user's decision to trust it.
        self.cert_box = QFrame()
        self.cert_box.setFrameShape(QFrame.Shape.StyledPanel)
        cert_layout = QVBoxLayout(self.cert_box)
        self.cert_info = QLabel()
        self.cert_info.setWordWrap(True)
        self.cert_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.trust_cert = QCheckBox(self.tr("&Trust this certificate for this account"))
        self.trust_cert.setToolTip(
            self.tr(
                "Only if the fingerprint matches your server's certificate. SpamGuard then "
                "accepts exactly this certificate for this account and refuses any other."
            )
        )
        cert_layout.addWidget(self.cert_info)
        cert_layout.addWidget(self.trust_cert)
        self.cert_box.setVisible(False)
        self._untrusted: str | None = None  # fingerprint of the certificate shown, not trusted
        layout.addWidget(self.cert_box)
        self.browser = BrowserSignIn(self.sign_in_button, self.result, self)
        junk_form = QFormLayout()
        self.junk = QComboBox()
        self.junk.setEditable(True)
        self.junk.addItem(self.tr("Find it automatically"), "auto")
        self.junk.setToolTip(self.tr("Where messages above the move threshold go"))
        junk_form.addRow(self.tr("&Junk folder:"), self.junk)
        # How much old mail the first scan looks at: the config's `backlog`, in words.
        self.backlog = QComboBox()
        for label, value in (
            (self.tr("The newest 500 messages of the last 30 days"), ""),
            (self.tr("The newest 500 messages"), "newest 500"),
            (self.tr("The last 30 days"), "last 30 days"),
            (self.tr("Everything (a large mailbox takes a while)"), "everything"),
        ):
            self.backlog.addItem(label, value)
        self.backlog.setToolTip(
            self.tr(
                "Which of the messages already in the account SpamGuard scores and sorts when "
                "it first connects; new mail is always scanned"
            )
        )
        junk_form.addRow(self.tr("&First scan:"), self.backlog)
        self.junk_form = junk_form
        layout.addLayout(junk_form)
        # Off unless the user says yes: reading their mailbox to learn is their choice.
        self.learn_existing = QCheckBox(
            self.tr("&Learn from the mail already in this account (read-only)")
        )
        self.learn_existing.setChecked(False)
        self.learn_existing.setToolTip(
            self.tr(
                "After adding the account, SpamGuard reads the newest 2,000 messages in its "
                "Junk folder as spam and up to 2,000 messages you have read or answered as not "
                "spam, and learns from them. Nothing is moved or marked; you can stop it, and "
                "undo what it learned with one rollback."
            )
        )
        layout.addWidget(self.learn_existing)
        # The safe moving policy (issue 17 item 5): on by default, as in the config.
        self.protect_known = QCheckBox(
            self.tr("&Never move mail from people I know to Junk (flag it at most)")
        )
        self.protect_known.setChecked(True)
        self.protect_known.setToolTip(
            self.tr(
                "Mail from someone you have written to, or from an authenticated sender whose "
                "earlier mail you kept, is at most flagged, however spam-like it looks; the "
                "explanation says when this applied. Untick to let SpamGuard move such mail "
                "to Junk too."
            )
        )
        layout.addWidget(self.protect_known)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(self.tr("&Add account"))
        layout.addWidget(self.buttons)

        self.email.textChanged.connect(self._email_changed)
        self.provider.currentIndexChanged.connect(self._provider_changed)
        self.security.currentIndexChanged.connect(self._security_changed)
        self.auth.currentIndexChanged.connect(self._auth_changed)
        self.oauth_provider.currentIndexChanged.connect(self._auth_changed)
        self.store.currentIndexChanged.connect(self._auth_changed)
        self.trust_cert.toggled.connect(self._trust_toggled)
        self.allow_plaintext.toggled.connect(self._validate)
        self.host.textChanged.connect(self._security_changed)
        self.test_button.clicked.connect(self.test)
        self.sign_in_button.clicked.connect(self.sign_in)
        self.browser.finished.connect(self._signed_in)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        for widget in (
            self.email,
            self.host,
            self.username,
            self.name,
            self.client_id,
            self.password_command,
        ):
            widget.textChanged.connect(self._validate)
        self._auth_changed()
        self._security_changed()
        if account is not None:
            self._fill_from(account)

    def _fill_from(self, account: AccountSettings) -> None:
        """Edit mode: the account's settings in the fields; its name stays (the worker, the
        journal and the sign-in tokens are filed under it)."""
        self.setWindowTitle(self.tr("Edit %1").replace("%1", account.name))
        self.ok_button.setText(self.tr("&Save"))
        self.email.blockSignals(True)
        self.email.setText(account.username if "@" in account.username else "")
        self.email.blockSignals(False)
        self.name.setText(account.name)
        self.name.setReadOnly(True)
        self.provider.setCurrentIndex(max(0, self.provider.findData(account.provider or "")))
        self.host.setText(account.host)
        self.port.setValue(account.port)
        self.security.setCurrentIndex(self.security.findData(account.security))
        self.username.setText(account.username)
        self.auth.setCurrentIndex(self.auth.findData(account.auth))
        raw = dict(account.oauth)
        if "provider" in raw:
            self.oauth_provider.setCurrentIndex(self.oauth_provider.findData(raw["provider"]))
        self.client_id.setText(raw.get("client_id", ""))
        self.client_secret.setText(raw.get("client_secret", ""))
        if account.auth == "oauth2":
            self._signed_in_as = account.name  # its tokens are already there
        if account.password_command:
            self.store.setCurrentIndex(self.store.findData("command"))
            self.password_command.setText(account.password_command)
        else:
            self.store.setCurrentIndex(self.store.findData(account.password_store))
        self.password.setPlaceholderText(self.tr("unchanged (leave empty to keep it)"))
        if account.tls_fingerprint:
            self._untrusted = account.tls_fingerprint
            self.trust_cert.blockSignals(True)
            self.trust_cert.setChecked(True)
            self.trust_cert.blockSignals(False)
        self.allow_plaintext.setChecked(account.allow_plaintext)
        self.protect_known.setChecked(account.protect_known_senders)
        if account.junk_folder != "auto":
            self.junk.addItem(account.junk_folder, account.junk_folder)
            self.junk.setCurrentIndex(self.junk.count() - 1)
        # The first scan and the first-sync learning are behind this account already.
        self.junk_form.setRowVisible(self.backlog, False)
        self.learn_existing.setVisible(False)
        self._validate()

    # -- form logic ------------------------------------------------------------------------

    def _email_changed(self, text: str) -> None:
        user, _, domain = text.partition("@")
        if not self.username.isModified():
            self.username.setText(text)
        if not self.name.isModified():
            self.name.setText(re.sub(r"[^A-Za-z0-9_-]+", "-", (domain.split(".")[0] or user)))
        preset = preset_for_email(text)
        index = self.provider.findData(preset.name) if preset else 0
        self.provider.setCurrentIndex(max(0, index))
        if preset is None and domain and not self.host.isModified():
            self.host.setText(f"imap.{domain}")

    def _provider_changed(self) -> None:
        preset = PRESETS.get(self.provider.currentData() or "")
        manual = preset is None
        for widget in (self.host, self.port, self.security):
            widget.setEnabled(manual)
        if preset is None:
            self.provider_note.clear()
            return
        self.host.setText(preset.host)
        self.port.setValue(preset.port)
        self.security.setCurrentIndex(self.security.findData(preset.security))
        notes = []
        if preset.note:
            notes.append(self.tr("This provider needs %1.").replace("%1", preset.note))
        oauth_provider = PRESET_OAUTH.get(preset.name)
        if oauth_provider:
            self.oauth_provider.setCurrentIndex(self.oauth_provider.findData(oauth_provider))
            if preset.name == "outlook":  # Microsoft turned password sign-in off for IMAP
                self.auth.setCurrentIndex(self.auth.findData("oauth2"))
        self.provider_note.setText(" ".join(notes))
        self._fit()

    def _fit(self) -> None:
        """Grow the dialog to what rows and notes now need (a wrapped note asks for height)."""
        self.layout().activate()
        self.resize(self.width(), max(self.height(), self.sizeHint().height()))

    @staticmethod
    def _keyring_problem() -> str | None:
        from spamguard.mail.credentials import keyring_problem

        return keyring_problem()

    def _auth_changed(self) -> None:
        oauth2 = self.auth.currentData() == "oauth2"
        store = self.store.currentData()
        self.form.setRowVisible(self.store, not oauth2)
        self.form.setRowVisible(self.keyring_note, not oauth2 and bool(self.keyring_problem))
        self.form.setRowVisible(self.password, not oauth2 and store != "command")
        from spamguard.mail.credentials import secrets_file

        self.form.setRowVisible(self.passphrase, not oauth2 and store == "file")
        # A new file is made with the passphrase typed twice; an existing one only opened.
        self.form.setRowVisible(
            self.passphrase_again, not oauth2 and store == "file" and not secrets_file().exists()
        )
        for widget in (self.password_command, self.command_examples):
            self.form.setRowVisible(widget, not oauth2 and store == "command")
        for widget in (self.oauth_provider, self.client_id):
            self.form.setRowVisible(widget, oauth2)
        self.form.setRowVisible(
            self.client_secret, oauth2 and self.oauth_provider.currentData() == "google"
        )
        self.sign_in_button.setVisible(oauth2)
        self._fit()
        self._validate()

    def _security_changed(self) -> None:
        default = {"tls": 993, "starttls": 143, "plain": 143}[self.security.currentData()]
        if self.sender() is self.security and self.port.value() in (993, 143):
            self.port.setValue(default)
        exposed = self._plaintext_exposed()
        if not exposed:
            self.allow_plaintext.setChecked(False)
        self.plain_warning.setVisible(exposed)
        self.allow_plaintext.setVisible(exposed)
        self._fit()
        self._validate()

    def _plaintext_exposed(self) -> bool:
        return self.security.currentData() == "plain" and not _is_local(self.host.text())

    def _trust_toggled(self, checked: bool) -> None:
        self._validate()
        if checked and self.test_button.isEnabled():
            self.test()  # see at once that the pinned certificate lets SpamGuard in

    def _validate(self) -> None:
        ready = all(w.text().strip() for w in (self.host, self.username, self.name))
        if self.auth.currentData() == "oauth2":
            ready = ready and bool(self.client_id.text().strip())
            self.sign_in_button.setEnabled(ready or self.browser.running)
            # The account is added once it has tokens: it could not log in without them.
            self.test_button.setEnabled(ready and self._signed_in_as is not None)
            self.ok_button.setEnabled(ready and self._signed_in_as is not None)
            return
        if self.store.currentData() == "command":
            ready = ready and bool(self.password_command.text().strip())
        if self._plaintext_exposed():
            ready = ready and self.allow_plaintext.isChecked()
        self.test_button.setEnabled(ready)
        # An untrusted certificate on the last test: adding it would only fail at every scan.
        self.ok_button.setEnabled(
            ready and (self._untrusted is None or self.trust_cert.isChecked())
        )

    def oauth_keys(self) -> dict[str, str]:
        """The account's ``oauth_*`` config keys (the app registration, not the user's tokens)."""
        if self.auth.currentData() != "oauth2":
            return {}
        keys = {"provider": self.oauth_provider.currentData(), "client_id": self.client_id.text()}
        if self.oauth_provider.currentData() == "google" and self.client_secret.text().strip():
            keys["client_secret"] = self.client_secret.text()
        return {k: v.strip() for k, v in keys.items()}

    def settings(self) -> AccountSettings:
        return AccountSettings(
            name=self.name.text().strip(),
            host=self.host.text().strip(),
            port=self.port.value(),
            security=self.security.currentData(),
            username=self.username.text().strip(),
            auth=self.auth.currentData(),
            provider=self.provider.currentData() or None,
            timeout=15.0,
            oauth=self.oauth_keys(),
            password_command=self._password_command(),
            password_store="file" if self._store() == "file" else "keyring",
            tls_fingerprint=self._pinned(),
            allow_plaintext=self.allow_plaintext.isChecked(),
        )

    def _store(self) -> str | None:
        """keyring, file or command for a password account; None for browser sign-in."""
        return None if self.auth.currentData() == "oauth2" else self.store.currentData()

    def _password_command(self) -> str | None:
        command = self.password_command.text().strip()
        return command if self._store() == "command" and command else None

    def _pinned(self) -> str | None:
        if self._untrusted and self.trust_cert.isChecked():
            return _pin(self._untrusted)
        return None

    # -- browser sign-in -------------------------------------------------------------------

    def sign_in(self) -> None:
        """Start the browser sign-in, or cancel the one that is waiting."""
        if self.browser.toggle(self.settings()):
            self._signed_in_as = None
            self._validate()

    def _signed_in(self, report: ConnectionReport) -> None:
        assert self.browser.settings is not None
        name = self.browser.settings.name  # the name the tokens went under
        if report.ok:
            self._signed_in_as = name
        elif report.kind != "auth":
            # Signed in, but the server test failed: the tokens are stored all the same.
            from spamguard.mail.oauth import load_tokens

            if load_tokens(name) is not None:
                self._signed_in_as = name
        self._tested(report)

    def done(self, result: int) -> None:
        self.browser.cancel()  # closing abandons a sign-in still waiting for the browser
        if not self._added and self._signed_in_as is not None:
            # Cancelled after signing in: the tokens belong to no account; leave nothing behind.
            from spamguard.mail import oauth

            # If the keyring went away meanwhile there is nothing more SpamGuard can remove.
            with contextlib.suppress(SpamGuardError):
                oauth.forget_tokens(self._signed_in_as)
            self._signed_in_as = None
        super().done(result)

    # -- testing ---------------------------------------------------------------------------

    def test(self) -> None:
        self.test_button.setEnabled(False)
        self.result.setText(self.tr("Connecting to %1…").replace("%1", self.host.text()))
        settings = self.settings()
        password = self.password.text() if self._store() in ("keyring", "file") else ""
        job = _TestJob(settings, password)
        job.signals.done.connect(self._tested)
        self._jobs.append(job)
        QThreadPool.globalInstance().start(job)

    def _tested(self, report: ConnectionReport) -> None:
        self.report = report
        self._jobs = [j for j in self._jobs if j.signals is not self.sender()]
        self._validate()
        if report.ok:
            self.result.setText(_outcome(True, html.escape(report.message, quote=False)))
            self.junk.clear()
            self.junk.addItem(self.tr("Find it automatically"), "auto")
            for folder in report.folders:
                self.junk.addItem(folder, folder)
            if report.junk_folder:
                self.junk.setCurrentIndex(self.junk.findData(report.junk_folder))
            return
        if report.kind == "tls" and report.fingerprint and report.fingerprint != "unknown":
            self._show_certificate(report)
            return
        self.result.setText(_outcome(False, html.escape(report.message, quote=False)))

    def _show_certificate(self, report: ConnectionReport) -> None:
        """The certificate could not be verified: show what it is and offer to trust it."""
        assert report.fingerprint is not None
        if report.fingerprint != self._untrusted:
            self.trust_cert.blockSignals(True)
            self.trust_cert.setChecked(False)
            self.trust_cert.blockSignals(False)
        self._untrusted = report.fingerprint
        cert = dict(report.certificate or {})
        pinned_before = "does not match the pinned" in report.message
        headline = (
            self.tr("The server now shows a different certificate from the one you trusted.")
            if pinned_before
            else self.tr(
                "%1 shows a certificate that this computer cannot verify (self-signed or from "
                "an unknown authority). SpamGuard did not send your password."
            ).replace("%1", html.escape(self.host.text().strip()))
        )
        rows = [
            (self.tr("Subject"), cert.get("subject", self.tr("(could not be read)"))),
            (self.tr("Issuer"), cert.get("issuer", self.tr("(could not be read)"))),
            (
                self.tr("Valid"),
                self.tr("from %1 until %2")
                .replace("%1", cert.get("not_before", "?"))
                .replace("%2", cert.get("not_after", "?")),
            ),
        ]
        pairs = report.fingerprint.removeprefix("sha256:")
        half = len(pairs) // 2 + 1  # two lines of 16 pairs: easier to compare, no wide dialog
        fingerprint = html.escape(pairs[:half]) + "<br>" + html.escape(pairs[half:])
        table = "".join(
            f"<tr><td><b>{html.escape(k)}:</b>&nbsp;</td><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        ) + (
            f"<tr><td><b>{html.escape(self.tr('SHA-256'))}:</b>&nbsp;</td>"
            f"<td><code>{fingerprint}</code></td></tr>"
        )
        advice = self.tr(
            "Trust it only if this is your own server and the fingerprint matches the one "
            "the server's administrator gave you."
        )
        self.cert_info.setText(f"{headline}<table>{table}</table>{html.escape(advice)}")
        self.cert_box.setVisible(True)
        self.result.setText(
            _outcome(False, html.escape(self.tr("The certificate is not trusted yet.")))
        )
        self._fit()
        self._validate()

    def accept(self) -> None:
        settings = self.settings()
        junk = self.junk.currentData() or self.junk.currentText().strip() or "auto"
        store = self._store()
        secret = self.password.text() if store in ("keyring", "file") else None
        if self.editing is not None:
            self._save_edit(settings, junk, store, secret)
            return
        try:
            self._check_new_name(settings.name)
            if store in ("keyring", "file") and not secret:
                self._fail(self.tr("Enter the password (or choose a password command)."))
                return
            if store == "file":
                from spamguard.mail.credentials import secrets_file

                if not self.passphrase.text():
                    self._fail(
                        self.tr(
                            "Choose a passphrase for the encrypted password file (or enter "
                            "the one you chose before)."
                        )
                    )
                    return
                if not secrets_file().exists() and (
                    self.passphrase.text() != self.passphrase_again.text()
                ):
                    self._fail(self.tr("The two passphrases differ; type the same one twice."))
                    return
            if settings.auth == "oauth2" and self._signed_in_as not in (None, settings.name):
                self._move_tokens(str(self._signed_in_as), settings.name)
        except SpamGuardError as exc:
            self._fail(str(exc))
            return
        passphrase = self.passphrase.text()
        backlog = self.backlog.currentData() or None
        protect = self.protect_known.isChecked()

        def save() -> None:
            if store == "file":
                from spamguard.mail.credentials import unlock_file_store

                unlock_file_store(passphrase)
            # Config and secret together: the section is checked, the secret stored, then the
            # file written; a failure on the way leaves neither behind.
            keys = replace(
                AccountKeys.of(settings),
                junk_folder=junk,
                backlog=backlog,
                protect_known_senders=protect,
            )
            add_account(self.config_path, settings.name, keys, secret=secret)

        self._save(save, slow=store == "file")

    def _save(self, work: Callable[[], object], *, slow: bool) -> None:
        """Run ``work`` (write the config and the secret); accept when it went through. With
        the encrypted file (``slow``) it runs in a thread while the dialog says so, its
        buttons held: a Cancel meanwhile could not take back what is being written."""
        if not slow:
            try:
                work()
            except SpamGuardError as exc:
                self._fail(str(exc))
                return
            self._saved("")
            return
        self.buttons.setEnabled(False)
        self.result.setText(self.tr("Saving; opening the encrypted password file takes a moment…"))
        job = _SaveJob(work)
        job.signals.done.connect(self._saved)
        self._jobs.append(job)
        QThreadPool.globalInstance().start(job)

    def reject(self) -> None:
        if self.saving:
            return  # Escape or the window's close button while saving: it finishes first
        super().reject()

    @property
    def saving(self) -> bool:
        return any(isinstance(j, _SaveJob) for j in self._jobs)

    def _saved(self, error: str) -> None:
        self._jobs = [j for j in self._jobs if not isinstance(j, _SaveJob)]
        self.buttons.setEnabled(True)
        if error:
            self._fail(error)
            self._validate()
            return
        self._added = True
        super().accept()

    def _save_edit(
        self, settings: AccountSettings, junk: str, store: str | None, secret: str | None
    ) -> None:
        """Edit mode: rewrite the account's section; the stored password follows it."""
        from spamguard.engine.accounts import update_account
        from spamguard.mail.credentials import file_store_locked, unlock_file_store

        before = self.editing.password_store if self.editing else "file"
        needs_file = store == "file" and (bool(secret) or before != "file")
        unlock = needs_file and bool(self.passphrase.text() or file_store_locked())
        passphrase = self.passphrase.text()
        protect = self.protect_known.isChecked()

        def save() -> None:
            if unlock:
                unlock_file_store(passphrase)
            keys = replace(
                AccountKeys.of(settings), junk_folder=junk, protect_known_senders=protect
            )
            update_account(self.config_path, settings.name, keys, secret=secret or None)

        self._save(save, slow=unlock or store == "file")

    def _fail(self, text: str) -> None:
        self.result.setText(_outcome(False, html.escape(text, quote=False)))

    def _check_new_name(self, name: str) -> None:
        """Refuse a taken name before anything is stored (add_account checks again)."""
        from spamguard.errors import ConfigError

        path = self.config_path
        if path.exists() and path.read_text("utf-8").strip() and name in load_config(path).accounts:
            raise ConfigError(f"there is already an account called {name!r} in {path}")

    def _move_tokens(self, old: str, new: str) -> None:
        """The account was renamed after signing in: its keyring tokens follow the name."""
        from spamguard.mail import oauth

        tokens = oauth.load_tokens(old)
        if tokens is not None:
            oauth.save_tokens(new, tokens)
            oauth.forget_tokens(old)
        self._signed_in_as = new
