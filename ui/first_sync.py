"""Learning from an account's existing mail, with a progress bar and a Cancel button.

The engine's `first_sync_steps` runs in a QThread with its own read-only connection; the
dialog only shows what it reports. Cancel stops it after the current batch, and what was
read so far stays in the store, so starting it again continues where it stopped.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from spamguard.config import AccountSettings, load_config
from spamguard.engine.runtime import model_registry
from spamguard.errors import SpamGuardError
from spamguard.learn.first_sync import FirstSyncOptions, FirstSyncResult
from spamguard.learn.registry import ModelRegistry
from spamguard.learn.warm import Cancelled
from spamguard.store import Store

STEP_TEXT = {
    "looking": "Looking at the folders…",
    "reading": "Reading messages (nothing is moved or marked)…",
    "features": "Reading what the messages say…",
}


class FirstSyncRunner(QThread):
    """Runs first-sync learning for one account; results arrive as queued signals."""

    progressed = Signal(str, int, int)  # step, done, total
    finishedWith = Signal(object)  # FirstSyncResult
    cancelled = Signal(int)  # messages read so far (kept for the next run)
    failed = Signal(str)

    def __init__(
        self,
        settings: AccountSettings,
        store: Store,
        registry: ModelRegistry,
        options: FirstSyncOptions | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.registry = registry
        self.options = options or FirstSyncOptions()
        self.cancel_event = threading.Event()
        self.setObjectName(f"spamguard-first-sync-{settings.name}")

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:
        from spamguard.learn.first_sync import learn_existing
        from spamguard.mail.connect import open_mailstore

        try:
            mail = open_mailstore(self.settings, read_only=True)
            mail.connect()
            try:
                result = learn_existing(
                    mail,
                    self.settings,
                    self.store,
                    self.registry,
                    self.options,
                    cancel=self.cancel_event,
                    on_progress=lambda p: self.progressed.emit(p.step, p.done, p.total),
                )
            finally:
                mail.close()
        except Cancelled:
            self.cancelled.emit(self.store.first_sync_count(self.settings.name))
            return
        except SpamGuardError as exc:
            self.failed.emit(str(exc))
            return
        self.finishedWith.emit(result)


class FirstSyncDialog(QDialog):
    """Shows first-sync learning for one account: step, progress, Cancel, what it learned."""

    def __init__(
        self,
        settings: AccountSettings,
        store: Store,
        registry: ModelRegistry,
        options: FirstSyncOptions | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Learning from %1").replace("%1", settings.name))
        self.result: FirstSyncResult | None = None
        layout = QVBoxLayout(self)
        intro = QLabel(
            self.tr(
                "SpamGuard reads the newest messages in this account's Junk folder as spam "
                "and the mail you have read as not spam. Nothing is moved or marked."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.status = QLabel(self.tr("Connecting…"))
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(self.fontMetrics().height() * 3)
        layout.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy until the first count arrives
        layout.addWidget(self.progress)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        cancel = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        assert isinstance(cancel, QPushButton)
        self.cancel_button = cancel
        layout.addWidget(self.buttons)
        self.runner = FirstSyncRunner(settings, store, registry, options)
        self.runner.progressed.connect(self._progressed)
        self.runner.finishedWith.connect(self._finished)
        self.runner.cancelled.connect(self._cancelled)
        self.runner.failed.connect(self._failed)
        self.buttons.rejected.connect(self._cancel_or_close)
        self.resize(460, self.sizeHint().height())

    def start(self) -> None:
        self.runner.start()

    def _progressed(self, step: str, done: int, total: int) -> None:
        text = STEP_TEXT.get(step)
        if text is None:
            text = self.tr("Training and checking the new model (%1)…").replace("%1", step)
        else:
            text = self.tr(text)
        if total > 1:
            text += f" {done:,} / {total:,}"
        self.status.setText(text)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))

    def _done(self, text: str) -> None:
        self.status.setText(text)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.disconnect()
        self.buttons.rejected.connect(self.reject)

    def _finished(self, result: FirstSyncResult) -> None:
        self.result = result
        self._done(result.message[:1].upper() + result.message[1:] + ".")

    def _cancelled(self, kept: int) -> None:
        self._done(
            self.tr(
                "Stopped. %1 messages read so far are kept; learning again continues from there."
            ).replace("%1", f"{kept:,}")
        )

    def _failed(self, text: str) -> None:
        self._done(self.tr("Could not learn from this account: %1").replace("%1", text))

    def _cancel_or_close(self) -> None:
        if self.runner.isRunning():
            self.status.setText(self.tr("Stopping after the current batch…"))
            self.cancel_button.setEnabled(False)
            self.runner.cancel()
            return
        self.reject()

    def done(self, result: int) -> None:
        self.runner.cancel()
        self.runner.wait()
        super().done(result)


def dialog_for(
    config_path: Path, account: str, store: Store, parent: QWidget | None = None
) -> FirstSyncDialog:
    """The dialog for ``account`` of the config at ``config_path``, not started yet."""
    config = load_config(config_path)
    registry = model_registry(config)
    return FirstSyncDialog(config.account(account), store, registry, parent=parent)
