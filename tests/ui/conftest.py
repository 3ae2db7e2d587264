"""Desktop test fixtures: a private Xvfb with a tray host, a tiny model, isolated settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_display() -> int:
    for number in range(90, 400):
        if (
            not Path(f"/tmp/.X{number}-lock").exists()
            and not Path(f"/tmp/.X11-unix/X{number}").exists()
        ):
            return number
    raise RuntimeError("no free X display number between :90 and :399")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gui)
            # A Qt warning is a bug in the app: fail the test that caused it.
            item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))


@pytest.fixture(scope="session")
def xvfb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A virtual X screen on a free display, with `trayer` as the system tray when present."""
    xvfb_bin = shutil.which("Xvfb")
    if xvfb_bin is None:
        pytest.skip("Xvfb is not installed: apt-get install -y xvfb trayer xauth")
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)  # Qt warns without one
    number = _free_display()
    server = subprocess.Popen(
        [xvfb_bin, f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 10
    while not socket.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"Xvfb did not start on :{number}")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    tray = None
    trayer_bin = shutil.which("trayer")
    if trayer_bin:
        tray = subprocess.Popen(
            [trayer_bin, "--edge", "top", "--align", "right", "--widthtype", "request"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.8)  # trayer claims the tray selection right after it maps its window
    yield {"display": number, "tray": tray is not None}
    for process in (tray, server):
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def qapp_args(xvfb: dict[str, Any]) -> list[str]:
    """pytest-qt makes the QApplication from these; depending on xvfb sets DISPLAY first."""
    return ["spamguard-tests"]


@pytest.fixture(scope="session")
def tray_host(xvfb: dict[str, Any], qapp: Any) -> None:
    from PySide6.QtWidgets import QSystemTrayIcon

    if not xvfb["tray"]:
        pytest.skip("trayer is not installed: apt-get install -y trayer")
    deadline = time.monotonic() + 5
    while not QSystemTrayIcon.isSystemTrayAvailable():
        if time.monotonic() > deadline:
            pytest.fail("trayer runs but no system tray became available")
        qapp.processEvents()
        time.sleep(0.05)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A head trained on the fixture corpus in seconds (the shipped default may be absent)."""
    out = tmp_path_factory.mktemp("model") / "head"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spamguard",
            "train",
            "--split",
            str(ROOT / "tests/fixtures/corpus/split.tsv"),
            "--corpus",
            str(ROOT / "tests/fixtures/corpus"),
            "--out",
            str(out),
            "--no-neighbours",
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def qsettings(tmp_path: Path) -> Any:
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def plaintext_keyring(tmp_path: Path) -> Iterator[Any]:
    """keyrings.alt's file keyring in a temp dir: never the user's real keyring."""
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    previous = keyring.get_keyring()
    ring = PlaintextKeyring()
    ring.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


@pytest.fixture
def make_app(
    qtbot: Any, tiny_model: Path, qsettings: Any, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Build a `SpamGuardApp` (demo by default); every one made is shut down afterwards."""
    from spamguard_ui.app import SpamGuardApp

    made: list[SpamGuardApp] = []

    def make(**kwargs: Any) -> SpamGuardApp:
        kwargs.setdefault("demo", True)
        kwargs.setdefault("model_dir", tiny_model)
        kwargs.setdefault("settings", qsettings)
        kwargs.setdefault("config_path", tmp_path / "config.toml")
        app = SpamGuardApp(**kwargs)
        made.append(app)
        return app

    yield make
    for app in made:
        assert app.shutdown(), "a worker did not stop within 2 s"


@pytest.fixture
def demo_app(make_app: Callable[..., Any], qtbot: Any) -> Any:
    """The demo app with its first scan finished."""
    app = make_app()
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        app.start(show_window=True)
    return app
