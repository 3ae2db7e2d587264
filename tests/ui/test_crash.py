"""Uncaught exceptions: logged with the traceback (redacted), one dialog naming the log file."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from spamguard_ui.crash import CrashHandler, install_excepthook

from spamguard.logs import setup_logging


@pytest.fixture
def app(qapp: QApplication) -> QApplication:
    """The session's one QApplication (pytest-qt's, on the Xvfb display): a test must never make
    its own with another platform, whichever test happens to run first."""
    return qapp


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    root = logging.getLogger()
    before = list(root.handlers)
    path = setup_logging(False, tmp_path / "logs")
    assert path is not None
    yield path
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()


def test_exception_is_logged_and_dialog_names_the_log(
    app: QApplication, log_file: Path, qtbot: object
) -> None:
    asked: list[tuple[str, str]] = []
    quits: list[bool] = []
    handler = CrashHandler(
        app, on_quit=lambda: quits.append(True), ask=lambda t, m: asked.append((t, m)) or False
    )
    handler.install()
    try:
        try:
            raise ValueError("token=ya29.a0AfB_secret-token-value-123456789 went wrong")
        except ValueError:
            sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: bool(asked), timeout=5000)  # type: ignore[attr-defined]
    finally:
        handler.uninstall()
    _title, text = asked[0]
    assert str(log_file) in text and "journal" in text
    assert quits == [True]  # "Quit" runs the app's clean shutdown, never os._exit
    logged = log_file.read_text("utf-8")
    assert "Traceback" in logged and "ValueError" in logged
    assert "secret-token-value" not in logged and "secret-token-value" not in text


def test_worker_thread_exception_reaches_the_gui_thread(
    app: QApplication, log_file: Path, qtbot: object
) -> None:
    shown_in: list[str] = []
    handler = CrashHandler(
        app, ask=lambda t, m: shown_in.append(threading.current_thread().name) or True
    )
    handler.install()
    try:

        def boom() -> None:
            raise RuntimeError("worker failed")

        worker = threading.Thread(target=boom, name="scan-worker")
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: bool(shown_in), timeout=5000)  # type: ignore[attr-defined]
    finally:
        handler.uninstall()
    assert shown_in == [threading.main_thread().name]
    assert "uncaught exception in scan-worker" in log_file.read_text("utf-8")


def test_install_sets_up_logging_and_restores_hooks(
    app: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spamguard.logs

    monkeypatch.setattr(spamguard.logs, "_log_file", None)
    before_hook = sys.excepthook
    root = logging.getLogger()
    before = list(root.handlers)
    handler = install_excepthook(app, log_dir=tmp_path / "logs")
    try:
        assert sys.excepthook == handler.excepthook
        assert (tmp_path / "logs" / "spamguard.log").is_file()
        assert (tmp_path / "logs" / "crash.log").is_file()  # faulthandler's target
    finally:
        handler.uninstall()
        handler.setParent(None)
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()
    assert sys.excepthook == before_hook
