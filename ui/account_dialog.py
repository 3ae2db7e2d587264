"""Account setup: address, provider preset or manual server, password or browser sign-in
(OAuth2) to the keyring, a connection test."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from spamguard.app_api import ConnectionReport, add_account, check_connection, preset_for_email
from spamguard.config import PRESETS, AccountSettings
from spamguard.errors import SpamGuardError

from .messages import SPAM_COLOUR

SECURITY = (("tls", "TLS (port 993)"), ("starttls", "STARTTLS (port 143)"), ("plain", "None"))
OAUTH_PROVIDERS = (
    ("google", "Google (Gmail, Workspace)"),
    ("microsoft", "Microsoft (365, Outlook.com)"),
)
# Which OAuth2 provider signs in to a preset's server.
PRESET_OAUTH = {"gmail": "google", "outlook": "microsoft"}


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
        from spamguard.mail.credentials import store_password

        try:
            if self.password:
                store_password(self.settings, self.password)
            report = check_connection(self.settings)
        except SpamGuardError as exc:
            report = ConnectionReport(False, str(exc), "credentials")
        self.signals.done.emit(report)


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

    def __init__(self, config_path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_path = config_path
        self.report: ConnectionReport | None = None
        self._jobs: list[_TestJob] = []
        self._signed_in_as: str | None = None  # the account name the keyring tokens are under
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
            self.tr("Stored in the system keyring, never in SpamGuard's config file")
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
        form.addRow(self.tr("Pass&word:"), self.password)
        form.addRow(self.tr("OAuth pro&vider:"), self.oauth_provider)
        form.addRow(self.tr("OAuth &client ID:"), self.client_id)
        form.addRow(self.tr("Client s&ecret:"), self.client_secret)
        self.form = form
        layout.addLayout(form)

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
        self.test_button.clicked.connect(self.test)
        self.sign_in_button.clicked.connect(self.sign_in)
        self.browser.finished.connect(self._signed_in)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        for widget in (self.email, self.host, self.username, self.name, self.client_id):
            widget.textChanged.connect(self._validate)
        self._auth_changed()

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

    def _auth_changed(self) -> None:
        oauth2 = self.auth.currentData() == "oauth2"
        self.form.setRowVisible(self.password, not oauth2)
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
        if self.port.value() in (993, 143):
            self.port.setValue(default)

    def _validate(self) -> None:
        ready = all(w.text().strip() for w in (self.host, self.username, self.name))
        if self.auth.currentData() == "oauth2":
            ready = ready and bool(self.client_id.text().strip())
            self.sign_in_button.setEnabled(ready or self.browser.running)
            # The account is added once it has tokens: it could not log in without them.
            self.test_button.setEnabled(ready and self._signed_in_as is not None)
            self.ok_button.setEnabled(ready and self._signed_in_as is not None)
            return
        self.test_button.setEnabled(ready)
        self.ok_button.setEnabled(ready)

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
        )

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
        super().done(result)

    # -- testing ---------------------------------------------------------------------------

    def test(self) -> None:
        self.test_button.setEnabled(False)
        self.result.setText(self.tr("Connecting to %1…").replace("%1", self.host.text()))
        settings = self.settings()
        job = _TestJob(settings, self.password.text() if settings.auth == "password" else "")
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
        text = html.escape(report.message, quote=False)
        if report.kind == "tls" and report.fingerprint:
            text += "<br>" + html.escape(
                self.tr("Certificate fingerprint: %1").replace("%1", report.fingerprint)
            )
        self.result.setText(_outcome(False, text))

    def accept(self) -> None:
        settings = self.settings()
        junk = self.junk.currentData() or self.junk.currentText().strip() or "auto"
        try:
            if settings.auth == "oauth2" and self._signed_in_as not in (None, settings.name):
                self._move_tokens(str(self._signed_in_as), settings.name)
            add_account(
                self.config_path,
                settings.name,
                username=settings.username,
                host=settings.host,
                port=settings.port,
                security=settings.security,
                provider=settings.provider,
                junk_folder=junk,
                backlog=self.backlog.currentData() or None,
                auth=settings.auth,
                oauth=dict(settings.oauth),
            )
            if (
                settings.auth == "password"
                and self.password.text()
                and (self.report is None or not self.report.ok)
            ):
                from spamguard.mail.credentials import store_password

                store_password(settings, self.password.text())
        except SpamGuardError as exc:
            self.result.setText(_outcome(False, html.escape(str(exc), quote=False)))
            return
        super().accept()

    def _move_tokens(self, old: str, new: str) -> None:
        """The account was renamed after signing in: its keyring tokens follow the name."""
        from spamguard.mail import oauth

        tokens = oauth.load_tokens(old)
        if tokens is not None:
            oauth.save_tokens(new, tokens)
            oauth.forget_tokens(old)
        self._signed_in_as = new
