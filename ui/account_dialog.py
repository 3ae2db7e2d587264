"""Account setup: address, provider preset or manual server, password to the keyring, a test."""

from __future__ import annotations

import html
import re
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtWidgets import (
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


class AccountDialog(QDialog):
    """Adds one account to the config file; the password goes to the system keyring only."""

    def __init__(self, config_path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_path = config_path
        self.report: ConnectionReport | None = None
        self._jobs: list[_TestJob] = []
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
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setToolTip(
            self.tr("Stored in the system keyring, never in SpamGuard's config file")
        )
        self.provider_note = QLabel()
        self.provider_note.setWordWrap(True)
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
        form.addRow(self.tr("Pass&word:"), self.password)
        layout.addLayout(form)

        test_row = QHBoxLayout()
        self.test_button = QPushButton(self.tr("&Test connection"))
        self.test_button.setToolTip(
            self.tr("Sign in once and look for the Junk folder (saves the password in the keyring)")
        )
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        layout.addLayout(test_row)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setMinimumHeight(self.fontMetrics().height() * 3)
        layout.addWidget(self.result)
        junk_form = QFormLayout()
        self.junk = QComboBox()
        self.junk.setEditable(True)
        self.junk.addItem(self.tr("Find it automatically"), "auto")
        self.junk.setToolTip(self.tr("Where messages above the move threshold go"))
        junk_form.addRow(self.tr("&Junk folder:"), self.junk)
        layout.addLayout(junk_form)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(self.tr("&Add account"))
        layout.addWidget(self.buttons)

        self.email.textChanged.connect(self._email_changed)
        self.provider.currentIndexChanged.connect(self._provider_changed)
        self.security.currentIndexChanged.connect(self._security_changed)
        self.test_button.clicked.connect(self.test)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        for widget in (self.email, self.host, self.username, self.name):
            widget.textChanged.connect(self._validate)
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
        if preset.oauth2:
            notes.append(
                self.tr("Browser sign-in (OAuth2) is set up with `spamguard account login`.")
            )
        self.provider_note.setText(" ".join(notes))

    def _security_changed(self) -> None:
        default = {"tls": 993, "starttls": 143, "plain": 143}[self.security.currentData()]
        if self.port.value() in (993, 143):
            self.port.setValue(default)

    def _validate(self) -> None:
        ready = all(w.text().strip() for w in (self.host, self.username, self.name))
        self.test_button.setEnabled(ready)
        self.ok_button.setEnabled(ready)

    def settings(self) -> AccountSettings:
        return AccountSettings(
            name=self.name.text().strip(),
            host=self.host.text().strip(),
            port=self.port.value(),
            security=self.security.currentData(),
            username=self.username.text().strip(),
            provider=self.provider.currentData() or None,
            timeout=15.0,
        )

    # -- testing ---------------------------------------------------------------------------

    def test(self) -> None:
        self.test_button.setEnabled(False)
        self.result.setText(self.tr("Connecting to %1…").replace("%1", self.host.text()))
        job = _TestJob(self.settings(), self.password.text())
        job.signals.done.connect(self._tested)
        self._jobs.append(job)
        QThreadPool.globalInstance().start(job)

    def _tested(self, report: ConnectionReport) -> None:
        self.report = report
        self._jobs = [j for j in self._jobs if j.signals is not self.sender()]
        self.test_button.setEnabled(True)
        if report.ok:
            self.result.setText(
                f'<span style="color:#2e7d32">✓</span> {html.escape(report.message, quote=False)}'
            )
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
        self.result.setText(f'<span style="color:{SPAM_COLOUR.name()}">✗</span> {text}')

    def accept(self) -> None:
        settings = self.settings()
        junk = self.junk.currentData() or self.junk.currentText().strip() or "auto"
        try:
            add_account(
                self.config_path,
                settings.name,
                username=settings.username,
                host=settings.host,
                port=settings.port,
                security=settings.security,
                provider=settings.provider,
                junk_folder=junk,
            )
            if self.password.text() and (self.report is None or not self.report.ok):
                from spamguard.mail.credentials import store_password

                store_password(settings, self.password.text())
        except SpamGuardError as exc:
            problem = html.escape(str(exc), quote=False)
            self.result.setText(f'<span style="color:{SPAM_COLOUR.name()}">✗</span> {problem}')
            return
        super().accept()
