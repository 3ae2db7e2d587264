"""Tray icon states and menu actions against a real tray host (trayer on Xvfb), and no-tray mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QSystemTrayIcon
from spamguard_ui.tray import STATES, Tray, icon_dir, state_icon


def test_every_state_has_light_and_dark_svgs(qapp: Any) -> None:
    folder = icon_dir()
    assert folder is not None
    for state in STATES:
        for variant in ("light", "dark"):
            assert (folder / f"tray-{state}-{variant}.svg").is_file()
        light = state_icon(state, dark=False).pixmap(22, 22).toImage()
        dark = state_icon(state, dark=True).pixmap(22, 22).toImage()
        assert not light.isNull() and light != dark
    ring = state_icon("scanning", progress=0.5).pixmap(32, 32).toImage()
    assert ring != state_icon("scanning").pixmap(32, 32).toImage()


def test_states_change_icon_and_tooltip(tray_host: None, qtbot: Any) -> None:
    tray = Tray()
    tray.show()
    qtbot.waitUntil(tray.icon.isVisible)
    seen = set()
    for state in STATES:
        tray.set_state(state, "detail text", progress=0.25 if state == "scanning" else None)
        assert tray.state == state
        assert "detail text" in tray.icon.toolTip()
        seen.add(tray.icon.icon().pixmap(22, 22).toImage().bits().tobytes())
    assert len(seen) == len(STATES)
    tray.hide()


def test_app_tray_follows_the_scan(tray_host: None, make_app: Any, qtbot: Any) -> None:
    app = make_app()
    states: list[str] = []
    original = app.tray.set_state

    def record(state: str, detail: str = "", progress: float | None = None) -> None:
        states.append(state)
        original(state, detail, progress)

    app.tray.set_state = record  # type: ignore[method-assign]
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        app.start(show_window=False)
    assert app.tray.icon.isVisible()
    assert not app.window.isVisible()  # with a tray, a normal start stays in the tray
    assert "scanning" in states
    # Mail was flagged and moved while the window was closed: the tray asks for attention.
    qtbot.waitUntil(lambda: app.tray.state == "attention")
    app.tray.open_action.trigger()
    assert app.window.isVisible()
    qtbot.waitUntil(lambda: app.tray.state == "idle")


def test_menu_actions(tray_host: None, make_app: Any, qtbot: Any) -> None:
    app = make_app()
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        app.start(show_window=False)
    texts = [a.text().replace("&", "") for a in app.tray.menu.actions() if a.text()]
    assert texts[:3] == ["Open SpamGuard", "Scan now", "Pause"]
    assert "Settings" in texts and "Quit" in texts

    app.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: app.tray.state == "paused")
    assert app.tray.pause_action.text().replace("&", "") == "Resume"
    assert app.settings.value("paused", type=bool) is True
    app.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: app.tray.state != "paused")

    runner = app.runners["demo"]
    # Not runner.scanFinished: it is emitted in the worker thread, so a second scan's emit can
    # still be queued when the blocker is freed, and PySide (6.11) then calls into the dead
    # object: a segfault a few tests later. The app re-emits it in the GUI thread.
    with qtbot.waitSignal(app.scanDone, timeout=30_000):
        app.tray.scan_action.trigger()

    thresholds = [a for a in app.tray.settings_menu.actions() if "Thresholds" in a.text()]
    thresholds[0].trigger()
    assert app.window.isVisible()
    assert app.window.tabs.currentWidget() is app.window.thresholds

    # Closing the window keeps the app (and the tray) running.
    app.window.close()
    assert not app.window.isVisible()
    assert app.tray.icon.isVisible() and runner.isRunning()

    with qtbot.waitSignal(app.quitting, timeout=5_000):
        app.tray.quit_action.trigger()
    assert not runner.isRunning()


def test_error_state_when_the_model_is_missing(
    tray_host: None, make_app: Any, qtbot: Any, tmp_path: Path
) -> None:
    app = make_app(model_dir=tmp_path / "no-model")
    app.start(show_window=False)
    assert app.tray.icon.isVisible()  # the tray is up before the model is even read
    # The model loads in the account worker; its error reaches the tray and the banner.
    qtbot.waitUntil(lambda: app.tray.state == "error", timeout=30_000)
    assert "SpamGuard cannot start" in app.window.banner.text()
    assert "config.json is missing" in app.window.banner.text()


_NO_TRAY_PROBE = """
import json, sys
from PySide6.QtWidgets import QApplication, QSystemTrayIcon
from PySide6.QtCore import QSettings, QTimer
from spamguard_ui.app import SpamGuardApp
app = QApplication([])
controller = SpamGuardApp(demo=True, model_dir=sys.argv[1],
                          settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
def report():
    print(json.dumps({
        "tray": QSystemTrayIcon.isSystemTrayAvailable(),
        "window": controller.window.isVisible(),
        "banner": controller.window.banner.text(),
        "rows": controller.window.model.rowCount(),
        "keeps_running": controller.window.keep_running_in_tray,
    }))
    controller.quit()
controller.scansFinished.connect(report)
controller.start()
QTimer.singleShot(60000, app.quit)
app.exec()
"""


def test_no_tray_fallback_opens_a_window_that_says_why(tiny_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("DISPLAY", None)
    (tmp_path).chmod(0o700)
    done = subprocess.run(
        [sys.executable, "-c", _NO_TRAY_PROBE, str(tiny_model), str(tmp_path / "s.ini")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tray"] is False
    assert report["window"] is True
    assert "No system tray was found" in report["banner"]
    assert report["rows"] == 36
    assert report["keeps_running"] is False
    assert "Warning" not in done.stderr and "QWARN" not in done.stderr


@pytest.mark.parametrize("argv", [["--demo", "--screenshot"]])
def test_screenshot_option_saves_the_main_window(
    xvfb: dict[str, Any], tiny_model: Path, tmp_path: Path, argv: list[str]
) -> None:
    target = tmp_path / "main.png"
    env = {**os.environ, "HOME": str(tmp_path)}  # QSettings of the run stay in the temp dir
    done = subprocess.run(
        [sys.executable, "-m", "spamguard_ui.app", *argv, str(target), "--model", str(tiny_model)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    from PySide6.QtGui import QImage

    image = QImage(str(target))
    assert image.width() > 800 and image.height() > 500
    # A real window, not a blank one: many distinct colours.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, 400, 7)}
    assert len(colours) > 20
    assert QSystemTrayIcon is not None
