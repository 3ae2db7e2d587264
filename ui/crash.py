"""Uncaught exceptions in the tray app: logged (redacted), a dialog naming the log file."""

from __future__ import annotations

import faulthandler
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

from spamguard.logs import current_log_file, redact, setup_logging

__all__ = ["CrashHandler", "install_excepthook"]

log = logging.getLogger("spamguard.crash")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class CrashHandler(QObject):
    """Receives uncaught exceptions from any thread; shows one dialog at a time in the GUI thread.

    The action journal needs nothing from here: every action is committed to SQLite before it
    is sent to the server. What this handler must not do is kill the process in the middle of
    that, so it never exits by itself: "Quit" runs the app's normal shutdown (workers stopped,
    store closed), "Keep running" carries on.
    """

    _report = Signal(str)

    def __init__(
        self,
        app: QApplication,
        *,
        on_quit: Callable[[], None] | None = None,
        ask: Callable[[str, str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.app = app
        self.on_quit = on_quit or app.quit
        self.ask = ask or self._ask
        self.count = 0
        self._showing = False
        self._previous_hook = sys.excepthook
        self._previous_thread_hook = threading.excepthook
        self._fault_file: IO[Any] | None = None
        self._fault_was_enabled = False
        # Queued: a worker thread's exception must reach the dialog in the GUI thread.
        self._report.connect(self._show, Qt.ConnectionType.QueuedConnection)

    # -- hooks -----------------------------------------------------------------------------

    def install(self) -> None:
        sys.excepthook = self.excepthook
        threading.excepthook = self.thread_excepthook
        log_file = current_log_file()
        if log_file is not None:
            try:
                # A native crash (a segfault in Qt or llama.cpp) leaves a traceback here.
                self._fault_file = open(  # noqa: SIM115 (kept open for faulthandler's lifetime)
                    log_file.with_name("crash.log"), "a", encoding="utf-8"
                )
                self._fault_was_enabled = faulthandler.is_enabled()
                faulthandler.enable(self._fault_file, all_threads=True)
            except OSError:
                self._fault_file = None

    def uninstall(self) -> None:
        sys.excepthook = self._previous_hook
        threading.excepthook = self._previous_thread_hook
        if self._fault_file is not None:
            faulthandler.disable()
            if self._fault_was_enabled:  # e.g. pytest's own, on stderr
                faulthandler.enable(sys.__stderr__ or sys.stderr, all_threads=True)
            self._fault_file.close()
            self._fault_file = None

    def excepthook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            self._previous_hook(exc_type, exc, tb)
            return
        self.record((exc_type, exc, tb), threading.current_thread().name)

    def thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        thread = args.thread.name if args.thread is not None else "a thread"
        self.record((args.exc_type, args.exc_value, args.exc_traceback), thread)

    # -- reporting -------------------------------------------------------------------------

    def record(self, exc_info: ExcInfo, thread: str) -> None:
        """Log the exception (through the redacting handlers) and queue the dialog."""
        self.count += 1
        try:
            log.critical("uncaught exception in %s", thread, exc_info=exc_info)
            for handler in logging.getLogger().handlers:
                handler.flush()
        except Exception:  # reporting must never raise from inside an excepthook
            pass
        self._report.emit(redact(f"{exc_info[0].__name__}: {exc_info[1]}"))

    def message(self, summary: str) -> str:
        path = current_log_file()
        where = (
            f"The details are in the log file:\n{path}"
            if path
            else "The log file could not be written; run spamguard-tray in a terminal to see it."
        )
        return (
            "SpamGuard hit an unexpected error and this part of it stopped.\n\n"
            f"{summary[:300]}\n\n{where}\n\n"
            "Your mail is safe: every move is written to the journal before it is made, "
            "so nothing is lost or moved twice; `spamguard undo` reverses SpamGuard's moves.\n\n"
            "Please include the log file when you report this."
        )

    def _show(self, summary: str) -> None:
        if self._showing:  # one dialog at a time; later errors are in the log
            return
        self._showing = True
        try:
            if not self.ask("SpamGuard: unexpected error", self.message(summary)):
                self.on_quit()
        finally:
            self._showing = False

    @staticmethod
    def _ask(title: str, text: str) -> bool:
        box = QMessageBox()
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle(title)
        box.setText(text)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        keep = box.addButton("Keep running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Quit SpamGuard", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(keep)
        box.exec()
        return box.clickedButton() is keep


def install_excepthook(
    app: QApplication,
    *,
    on_quit: Callable[[], None] | None = None,
    verbose: bool = False,
    log_dir: Path | None = None,
) -> CrashHandler:
    """Route uncaught exceptions (GUI and worker threads) to the log and a dialog.

    Sets up logging first if nobody did. ``on_quit`` should be the app's clean shutdown
    (for `SpamGuardApp`, its ``quit``); the default is ``app.quit``.
    """
    if current_log_file() is None:
        setup_logging(verbose, log_dir)
    handler = CrashHandler(app, on_quit=on_quit)
    handler.setParent(app)
    handler.install()
    return handler
