"""Desktop integration files validate with the freedesktop tools; install/uninstall; the bundle."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "packaging" / "linux"
DESKTOP = LINUX / "spamguard-tray.desktop"
AUTOSTART = LINUX / "spamguard-tray-autostart.desktop"
METAINFO = LINUX / "org.spamguard.SpamGuard.metainfo.xml"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)

pytestmark = pytest.mark.packaging


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: apt-get install -y {package}")
    return path


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# ---------------------------------------------------------------------------- validators


@pytest.mark.parametrize("desktop", [DESKTOP, AUTOSTART], ids=lambda p: p.name)
def test_desktop_files_validate(desktop: Path) -> None:
    tool = _tool("desktop-file-validate", "desktop-file-utils")
    done = subprocess.run([tool, str(desktop)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # Hints are not errors, but each one has been a real problem (a menu entry shown twice).
    assert "error" not in done.stdout and "warning" not in done.stdout, done.stdout


def test_desktop_file_matches_the_app() -> None:
    text = DESKTOP.read_text("utf-8")
    # Qt sets the Wayland app id from setDesktopFileName("spamguard-tray"): the names must agree.
    assert 'setDesktopFileName("spamguard-tray")' in (ROOT / "ui" / "app.py").read_text("utf-8")
    assert re.search(r"^Exec=spamguard-tray$", text, re.M)
    assert re.search(r"^Icon=spamguard$", text, re.M)
    assert re.search(r"^Exec=spamguard-tray --hidden$", AUTOSTART.read_text("utf-8"), re.M)


def test_metainfo_validates() -> None:
    tool = _tool("appstreamcli", "appstream")
    done = subprocess.run(
        [tool, "validate", "--no-net", str(METAINFO)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_metainfo_screenshots_are_the_repos_own() -> None:
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("launchable") == DESKTOP.name
    images = root.findall("./screenshots/screenshot/image")
    assert len(images) >= 2
    shots = ROOT / "assets" / "screenshots"
    for image in images:
        url = (image.text or "").strip()
        assert url.startswith("https://"), "AppStream wants absolute https URLs"
        rel = url.split("/main/", 1)[1]
        local = ROOT / rel
        if not shots.is_dir():
            pytest.skip("assets/screenshots/ has not been produced yet (scripts/screenshots)")
        assert local.is_file(), f"{rel} is named in the metainfo but missing"
        assert _png_size(local) == (int(image.get("width", 0)), int(image.get("height", 0))), (
            f"{rel}: update width/height in the metainfo"
        )


def test_icons_in_every_hicolor_size() -> None:
    hicolor = LINUX / "icons" / "hicolor"
    for size in SIZES:
        assert _png_size(hicolor / f"{size}x{size}" / "apps" / "spamguard.png") == (size, size)
    svg = hicolor / "scalable" / "apps" / "spamguard.svg"
    assert svg.read_bytes() == (ROOT / "assets" / "icons" / "spamguard.svg").read_bytes(), (
        "icons are stale: run packaging/linux/render-icons"
    )


# ---------------------------------------------------------------------------- install


def _fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    tray = venv / "bin" / "spamguard-tray"
    tray.write_text('#!/bin/sh\necho "tray started with: $*"\n')
    tray.chmod(0o755)
    return venv


def _run(script: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("XDG_") or k == "XDG_RUNTIME_DIR"
    }
    env["HOME"] = str(home)
    return subprocess.run(
        [str(LINUX / script), *args], capture_output=True, text=True, env=env, check=False
    )


def test_install_and_uninstall_in_a_temp_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    venv = _fake_venv(tmp_path)
    done = _run("install", home, "--venv", str(venv), "--autostart")
    assert done.returncode == 0, done.stderr

    data = home / ".local" / "share"
    desktop = data / "applications" / "spamguard-tray.desktop"
    autostart = home / ".config" / "autostart" / "spamguard-tray.desktop"
    launcher = home / ".local" / "bin" / "spamguard-tray"
    installed = [Path(p) for p in (data / "spamguard" / "installed-files").read_text().split()]
    for path in (desktop, autostart, launcher, data / "metainfo" / METAINFO.name):
        assert path in installed and path.is_file()
    for size in SIZES:
        assert (data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "spamguard.png").is_file()
    assert f"Exec={launcher}\n" in desktop.read_text()
    assert f"Exec={launcher} --hidden\n" in autostart.read_text()
    if shutil.which("desktop-file-validate"):
        for path in (desktop, autostart):
            checked = subprocess.run(["desktop-file-validate", str(path)], capture_output=True)
            assert checked.returncode == 0, checked.stdout
    ran = subprocess.run([str(launcher), "--demo"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "tray started with: --demo"

    done = _run("uninstall", home)
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in installed)
    assert not (data / "spamguard").exists()


def test_install_refuses_a_missing_app(tmp_path: Path) -> None:
    done = _run("install", tmp_path, "--venv", str(tmp_path))
    assert done.returncode == 1
    assert "scripts/bootstrap" in done.stderr
    assert not (tmp_path / ".local" / "share" / "applications").exists()


def test_uninstall_without_install_is_a_no_op(tmp_path: Path) -> None:
    done = _run("uninstall", tmp_path)
    assert done.returncode == 0 and "nothing to do" in done.stderr


# ---------------------------------------------------------------------------- command groups


def test_spec_names_every_command_module_the_cli_imports() -> None:
    """A command module the bundle lacks takes its commands with it (`label` was missing)."""
    from spamguard.cli import root as cli

    spec = (ROOT / "packaging" / "spamguard.spec").read_text("utf-8")
    hidden = spec[spec.index("hiddenimports=[") : spec.index("],", spec.index("hiddenimports=["))]
    listed = set(re.findall(r'"([\w.]+)"', hidden))
    for module in cli.COMMAND_GROUPS:
        assert module.__name__ in listed, f"{module.__name__} is not in the spec's hiddenimports"


def test_a_missing_command_module_fails_loudly() -> None:
    """Not `invalid choice: 'label'`: the import error names the module that is missing."""
    code = (
        "import sys; sys.modules['spamguard.cli.models'] = None\n"
        "from spamguard.cli import main\n"
        "sys.exit(main(['label', '--help']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode != 0
    assert "spamguard.cli.models" in done.stderr, done.stderr[-2000:]


def test_self_test_runs_every_command_groups_help() -> None:
    from spamguard.cli.selftest import Step, run

    out = io.StringIO()
    code = run(["--json", "--no-llm"], out=out, extra=(), only=("commands",))
    report = json.loads(out.getvalue())
    [step] = [Step(**s) for s in report["steps"]]
    assert code == 0 and step.status == "OK", step.detail
    commands = step.data["commands"]
    for name in ("score", "run", "label", "models", "adapt", "doctor", "cascade", "account"):
        assert name in commands, commands
    assert "models retrain" in commands and "account add" in commands


def test_self_test_reports_a_command_whose_help_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from spamguard.cli import models as learning_commands
    from spamguard.cli.selftest import run

    def broken(sub: object) -> None:
        raise ImportError("the label command could not load its model registry")

    monkeypatch.setattr(learning_commands, "register", broken)
    out = io.StringIO()
    assert run(["--no-llm"], out=out, only=("commands",)) == 1
    assert re.search(r"^\s+FAIL\s+commands\s.*ImportError", out.getvalue(), re.M), out.getvalue()


# ---------------------------------------------------------------------------- the bundle


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("SPAMGUARD_BUILD_BUNDLE") != "1",
    reason="builds the PyInstaller bundle (minutes): set SPAMGUARD_BUILD_BUNDLE=1",
)
@pytest.mark.timeout(3600)
def test_build_bundle_and_self_test() -> None:
    done = subprocess.run(
        [str(ROOT / "packaging" / "build")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    exe = Path(done.stdout.strip().splitlines()[-1])
    assert exe.is_file() and os.access(exe, os.X_OK)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SPAMGUARD_CACHE_DIR", None)
    started = time.monotonic()
    smoke = subprocess.run(
        [str(exe), "--self-test"], capture_output=True, text=True, env=env, timeout=600
    )
    elapsed = time.monotonic() - started
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "self-test passed" in smoke.stdout
    for step in ("head model", "sentence encoder", "demo mailbox", "commands", "LLM", "Qt"):
        assert re.search(rf"^\s+OK\s+{re.escape(step)}\s", smoke.stdout, re.M), smoke.stdout
    print(f"bundle self-test in {elapsed:.1f} s")
    # Each group the issue found missing, straight from the bundle's command line.
    for group in ("label", "models", "adapt"):
        helped = subprocess.run(
            [str(exe), "cli", group, "--help"], capture_output=True, text=True, env=env, timeout=120
        )
        assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr
