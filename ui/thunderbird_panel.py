"""The Thunderbird tab: is the add-on's native-messaging host installed, has the add-on
connected, and a button that installs the host (`spamguard thunderbird install`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from spamguard.engine.thunderbird import build_addon, install, status
from spamguard.errors import SpamGuardError

REFRESH_MS = 5000


class ThunderbirdPanel(QWidget):
    """Shows `spamguard.engine.thunderbird.status()` and offers to install the host."""

    def __init__(
        self, config_path: Path | None, target: Path | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.config_path = config_path
        self.target = target  # the manifest folder; None: where Thunderbird looks
        self.xpi: Path | None = None
        layout = QVBoxLayout(self)
        intro = QLabel(
            self.tr(
                "The SpamGuard add-on for Thunderbird shows each message's score and reasons "
                "next to the message, with Spam / Not spam buttons. It talks only to SpamGuard "
                "on this computer."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.state = QLabel()
        self.state.setWordWrap(True)
        layout.addWidget(self.state)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(self.detail.textInteractionFlags())
        layout.addWidget(self.detail)
        row = QHBoxLayout()
        self.install_button = QPushButton(self.tr("&Install for Thunderbird"))
        self.install_button.clicked.connect(self.install)
        row.addWidget(self.install_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(1)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.refresh()

    def _config(self) -> str | None:
        return str(self.config_path) if self.config_path and self.config_path.exists() else None

    def refresh(self) -> None:
        try:
            st = status(self._config(), target=self.target)
        except SpamGuardError as exc:
            self.state.setText(
                self.tr("Cannot read SpamGuard's settings: %1").replace("%1", str(exc))
            )
            return
        if st.installed and not st.problem and st.connected:
            self.state.setText(self.tr("✔ The add-on is connected."))
        elif st.installed and not st.problem:
            self.state.setText(self.tr("Installed; waiting for the add-on to connect."))
        else:
            self.state.setText(self.tr("✘ Not connected."))
        how = self.tr(
            "In Thunderbird: Add-ons and Themes → ⚙ → Install Add-on From File… and pick %1"
        ).replace("%1", str(self.xpi) if self.xpi else "spamguard-thunderbird.xpi")
        self.detail.setText(f"{st.summary()}\n{st.manifest}\n\n{how}")
        self.install_button.setText(
            self.tr("Re&install for Thunderbird")
            if st.installed
            else self.tr("&Install for Thunderbird")
        )

    def install(self) -> None:
        try:
            install(self._config(), target=self.target)
            self.xpi = build_addon(self._config())
        except SpamGuardError as exc:
            self.state.setText(self.tr("Could not install: %1").replace("%1", str(exc)))
            return
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh()
        self.timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)
