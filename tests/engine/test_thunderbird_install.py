"""`spamguard thunderbird install|status|uninstall`: the host manifest goes where Thunderbird
looks, its launcher starts a host that answers, and status tells when the add-on connected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spamguard.engine.native_host import ADDON_ID, encode_frame, iter_frames
from spamguard.engine.thunderbird import _launcher_text, manifest_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    (tmp_path / "config.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return h


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = home.parent / "config.toml"
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), "thunderbird", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_install_then_the_launcher_answers_and_status_sees_the_contact(home: Path) -> None:
    before = cli(home, "status", "--json")
    assert before.returncode == 1
    assert json.loads(before.stdout)["installed"] is False

    done = cli(home, "install")
    assert done.returncode == 0, done.stderr
    manifest_path = home / ".mozilla" / "native-messaging-hosts" / "spamguard.json"
    assert f"wrote {manifest_path}" in done.stdout
    # From a source checkout it also builds the add-on and says where it is.
    xpi = home.parent / "data" / "spamguard-thunderbird-0.1.0.xpi"
    assert f"Install Add-on From File... > {xpi}" in done.stdout
    assert zipfile.ZipFile(xpi).namelist()[0] == "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["name"] == "spamguard" and manifest["type"] == "stdio"
    assert manifest["allowed_extensions"] == [ADDON_ID]
    launcher = Path(manifest["path"])
    assert launcher.is_absolute() and os.access(launcher, os.X_OK)

    installed = json.loads(cli(home, "status", "--json").stdout)
    assert installed["installed"] is True and installed["problem"] == ""
    assert installed["connected"] is False and installed["last_contact"] is None

    # Thunderbird runs the launcher with the manifest path and the add-on's ID.
    proc = subprocess.run(
        [str(launcher), str(manifest_path), ADDON_ID],
        input=encode_frame({"id": 1, "type": "hello", "addon_version": "9.9"}),
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert next(iter_frames(proc.stdout))["ok"] is True

    after = cli(home, "status")
    assert after.returncode == 0
    assert "the add-on last connected" in after.stdout and "(add-on 9.9)" in after.stdout
    assert json.loads(cli(home, "status", "--json").stdout)["connected"] is True

    gone = cli(home, "uninstall")
    assert f"removed {manifest_path}" in gone.stdout
    assert not manifest_path.exists() and not launcher.exists()
    assert cli(home, "status").returncode == 1


def test_a_broken_manifest_is_reported_not_trusted(home: Path) -> None:
    assert cli(home, "install").returncode == 0
    manifest_path = home / ".mozilla" / "native-messaging-hosts" / "spamguard.json"
    manifest_path.write_text(json.dumps({"path": "/nowhere", "allowed_extensions": []}))
    st = cli(home, "status")
    assert st.returncode == 1
    assert "does not allow the add-on" in st.stdout


def test_macos_and_windows_locations(tmp_path: Path) -> None:
    assert manifest_dir("darwin", tmp_path) == (
        tmp_path / "Library" / "Application Support" / "Mozilla" / "NativeMessagingHosts"
    )
    assert manifest_dir("linux", tmp_path) == tmp_path / ".mozilla" / "native-messaging-hosts"
    bat = _launcher_text("C:/Users/a/config.toml", windows=True)
    assert bat.startswith("@echo off\r\n")
    assert "thunderbird" in bat and bat.rstrip().endswith("%*")
    sh = _launcher_text(None, windows=False)
    assert sh.startswith("#!/bin/sh\n") and sh.rstrip().endswith('"$@"')
