"""The tray icon: state icons for light and dark panels, the menu, batched notifications."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QGuiApplication, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

STATES = ("idle", "scanning", "attention", "error", "paused")


def icon_dir() -> Path | None:
    """assets/icons in a checkout; spamguard_ui/icons when packaged with the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "icons", here.parent / "assets" / "icons"):
        if (candidate / "tray-idle-light.svg").is_file():
            return candidate
    return None


def panel_is_dark() -> bool:
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        if app.styleHints().colorScheme() == Qt.ColorScheme.Dark:
            return True
        return app.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return False


def state_icon(state: str, dark: bool | None = None, progress: float | None = None) -> QIcon:
    """The icon for ``state``; with ``progress`` a ring drawn over the scanning icon."""
    dark = panel_is_dark() if dark is None else dark
    folder = icon_dir()
    variant = "dark" if dark else "light"
    base = QIcon(str(folder / f"tray-{state}-{variant}.svg")) if folder else QIcon()
    if progress is None and not base.isNull():
        return base
    icon = QIcon()
    for size in (16, 22, 24, 32, 48, 64):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if not base.isNull():
            base.paint(painter, 0, 0, size, size)
        else:
            # No SVGs installed: a plain disc keeps the states apart.
            painter.setBrush(
                QColor({"error": "#c01c28", "attention": "#e66100"}.get(state, "#888"))
            )
            painter.drawEllipse(2, 2, size - 4, size - 4)
        if progress is not None:
            pen = QPen(QColor("#3584e4"), max(1.5, size / 12))
            painter.setPen(pen)
            inset = pen.widthF()
            rect = QRectF(inset, inset, size - 2 * inset, size - 2 * inset)
            painter.drawArc(rect, 90 * 16, -round(360 * 16 * max(0.0, min(1.0, progress))))
        painter.end()
        icon.addPixmap(pixmap)
    return icon


class Tray(QObject):
    """Wraps QSystemTrayIcon so the app can set a state and queue notifications."""

    openRequested = Signal()
    scanRequested = Signal()
    pauseToggled = Signal(bool)
    settingsRequested = Signal(str)  # "accounts", "thresholds", "models" or "thunderbird"
    quitRequested = Signal()
    undoRequested = Signal(object)  # list of (account, journal id)

    BATCH_MS = 2500

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = "idle"
        self.progress: float | None = None
        self.icon = QSystemTrayIcon(self)
        self.menu = QMenu()
        self.open_action = QAction(self.tr("&Open SpamGuard"), self)
        self.scan_action = QAction(self.tr("&Scan now"), self)
        self.pause_action = QAction(self.tr("&Pause"), self)
        self.pause_action.setCheckable(True)
        self.undo_action = QAction(self.tr("&Undo last moves"), self)
        self.undo_action.setEnabled(False)
        # Settings: every page of settings, not only the thresholds.
        self.settings_action = QAction(self.tr("S&ettings"), self)
        self.settings_menu = QMenu()
        for page, text in (
            ("accounts", self.tr("&Accounts…")),
            ("thresholds", self.tr("&Thresholds…")),
            ("models", self.tr("&Models…")),
            ("thunderbird", self.tr("T&hunderbird…")),
        ):
            entry = self.settings_menu.addAction(text)
            entry.triggered.connect(lambda _=False, p=page: self.settingsRequested.emit(p))
        self.settings_action.setMenu(self.settings_menu)
        self.quit_action = QAction(self.tr("&Quit"), self)
        for action in (self.open_action, self.scan_action, self.pause_action):
            self.menu.addAction(action)
        self.menu.addAction(self.undo_action)
        self.menu.addSeparator()
        self.menu.addAction(self.settings_action)
        self.menu.addAction(self.quit_action)
        self.icon.setContextMenu(self.menu)
        self.open_action.triggered.connect(self.openRequested)
        self.scan_action.triggered.connect(self.scanRequested)
        self.pause_action.toggled.connect(self._pause_toggled)
        self.quit_action.triggered.connect(self.quitRequested)
        self.undo_action.triggered.connect(self._undo_last)
        self.icon.activated.connect(self._activated)
        self.icon.messageClicked.connect(self._undo_last)
        self._pending: list[tuple[str, int, str, str]] = []  # account, id, subject, Message-ID
        self._last_batch: list[tuple[str, int]] = []
        self._batch_messages: dict[tuple[str, int], str] = {}  # (account, id) -> Message-ID
        self.watching = True  # False while no mail account is set up
        self._batch_timer = QTimer(self)
        self._batch_timer.setSingleShot(True)
        self._batch_timer.setInterval(self.BATCH_MS)
        self._batch_timer.timeout.connect(self._flush)
        self.notifications: list[tuple[str, str]] = []  # (title, text) shown, for tests
        self.set_state("idle")

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    # -- state -----------------------------------------------------------------------------

    def set_state(
        self, state: str, detail: str = "", progress: float | None = None, tip: str = ""
    ) -> None:
        """Show ``state``; ``tip`` replaces the state's usual first line of the tooltip."""
        assert state in STATES, state
        self.state = state
        self.progress = progress if state == "scanning" else None
        self.icon.setIcon(state_icon(state, progress=self.progress))
        tips = {
            "idle": self.tr("SpamGuard: watching your mail")
            if self.watching
            else self.tr("SpamGuard: no mail account is set up yet"),
            "scanning": self.tr("SpamGuard: checking mail"),
            "attention": self.tr("SpamGuard: new mail was flagged or moved"),
            "error": self.tr("SpamGuard: needs your attention"),
            "paused": self.tr("SpamGuard: paused"),
        }
        tip = tip or tips[state]
        if progress is not None and state == "scanning":
            tip += f" ({progress * 100:.0f} %)"
        if detail:
            tip += "\n" + detail
        self.icon.setToolTip(tip)

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_action.setText(self.tr("&Resume") if paused else self.tr("&Pause"))
        self.pauseToggled.emit(paused)

    def set_paused(self, paused: bool) -> None:
        self.pause_action.setChecked(paused)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.openRequested.emit()

    # -- notifications ---------------------------------------------------------------------

    def note_moved(self, account: str, journal_id: int, subject: str, message_id: str = "") -> None:
        """Collect moves for a moment so a backlog gives one notification, not fifty."""
        self._pending.append((account, journal_id, subject, message_id))
        self._batch_timer.start()

    def flush_now(self) -> None:
        if self._pending:
            self._batch_timer.stop()
            self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._last_batch = [(a, i) for a, i, _, _ in batch]
        self._batch_messages = {(a, i): m for a, i, _, m in batch}
        n = len(batch)
        title = (
            self.tr("1 message moved to Junk")
            if n == 1
            else self.tr("%1 messages moved to Junk").replace("%1", str(n))
        )
        text = "\n".join(f"• {s}" for _, _, s, _ in batch[:3])
        if n > 3:
            text += "\n" + self.tr("and %1 more").replace("%1", str(n - 3))
        text += "\n" + self.tr("Click to undo.")
        self._show_undo_count()
        self.notifications.append((title, text))
        if self.icon.isVisible() and QSystemTrayIcon.supportsMessages():
            self.icon.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 8000)

    def _show_undo_count(self) -> None:
        n = len(self._last_batch)
        self.undo_action.setEnabled(n > 0)
        self.undo_action.setText(
            self.tr("&Undo last moves (%1)").replace("%1", str(n))
            if n
            else self.tr("&Undo last moves")
        )

    def forget(self, account: str, message_id: str) -> None:
        """The message is no longer in Junk by SpamGuard's move (rescued, undone, moved by
        hand): "Undo last moves" no longer counts it."""
        kept = [
            k
            for k in self._last_batch
            if not (k[0] == account and self._batch_messages.get(k) == message_id)
        ]
        if len(kept) != len(self._last_batch):
            self._last_batch = kept
            self._show_undo_count()

    def _undo_last(self) -> None:
        if not self._last_batch:
            return
        batch, self._last_batch = self._last_batch, []
        self.undo_action.setEnabled(False)
        self.undo_action.setText(self.tr("&Undo last moves"))
        self.undoRequested.emit(batch)
