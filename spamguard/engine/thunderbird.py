"""`spamguard thunderbird install|uninstall|status|host`: the add-on's native-messaging host.

Thunderbird finds a native-messaging host through a JSON manifest named after the host,
in a per-user folder that differs by platform (Thunderbird reads Mozilla's locations):

- Linux:   ~/.mozilla/native-messaging-hosts/spamguard.json
- macOS:   ~/Library/Application Support/Mozilla/NativeMessagingHosts/spamguard.json
- Windows: any folder (we use SpamGuard's data folder); the registry key
  HKEY_CURRENT_USER\\Software\\Mozilla\\NativeMessagingHosts\\spamguard holds its path.

The manifest's ``path`` must be an executable that takes no arguments of ours, so install
also writes a small launcher next to SpamGuard's data (a shell script, or a .bat file on
Windows) that starts ``spamguard thunderbird host`` with this Python and this config.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spamguard.config import default_data_dir, load_config
from spamguard.engine.native_host import ADDON_ID, HOST_NAME, last_contact
from spamguard.errors import SpamGuardError

__all__ = [
    "HostStatus",
    "install",
    "manifest_dir",
    "status",
    "uninstall",
]

WINDOWS_KEY = rf"Software\Mozilla\NativeMessagingHosts\{HOST_NAME}"
# The add-on connects when Thunderbird starts and stays connected: a contact this recent
# means it is connected now (the tray's settings say "connected").
CONNECTED_WITHIN = 24 * 3600.0


def manifest_dir(platform: str | None = None, home: Path | None = None) -> Path:
    """Where Thunderbird looks for per-user native-messaging host manifests."""
    platform = platform or sys.platform
    home = home or Path.home()
    if platform == "darwin":
        return home / "Library" / "Application Support" / "Mozilla" / "NativeMessagingHosts"
    if platform.startswith("win"):
        return _data_dir(None) / "native-messaging"
    return home / ".mozilla" / "native-messaging-hosts"


def _data_dir(config_path: str | None) -> Path:

    config = load_config(config_path)
    return Path(config.data_dir) if config.data_dir else default_data_dir()


def _launcher_text(config_path: str | None, windows: bool) -> str:
    frozen = bool(getattr(sys, "frozen", False))
    command = [sys.executable, "cli"] if frozen else [sys.executable, "-m", "spamguard"]
    if config_path:
        command += ["--config", str(Path(config_path).resolve())]
    command += ["thunderbird", "host"]
    pythonpath = os.environ.get("PYTHONPATH", "") if not frozen else ""
    if windows:
        lines = ["@echo off"]
        if pythonpath:
            lines.append(f'set "PYTHONPATH={pythonpath}"')
        lines.append(" ".join(f'"{c}"' for c in command) + " %*")
        return "\r\n".join(lines) + "\r\n"
    lines = ["#!/bin/sh", "# Started by Thunderbird for the SpamGuard add-on."]
    if pythonpath:
        lines.append(f"PYTHONPATH={shlex.quote(pythonpath)}; export PYTHONPATH")
    lines.append("exec " + " ".join(shlex.quote(c) for c in command) + ' "$@"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class HostStatus:
    manifest: Path
    installed: bool
    launcher: Path | None
    problem: str
    last_contact: float | None
    addon_version: str

    @property
    def connected(self) -> bool:
        return self.last_contact is not None and time.time() - self.last_contact < CONNECTED_WITHIN

    def summary(self) -> str:
        if not self.installed:
            return "not installed (run: spamguard thunderbird install)"
        if self.problem:
            return f"installed, but {self.problem}"
        if self.last_contact is None:
            return "installed; the add-on has not connected yet"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_contact))
        version = f" (add-on {self.addon_version})" if self.addon_version else ""
        return f"installed; the add-on last connected {when}{version}"


def install(
    config_path: str | None = None, *, target: Path | None = None, platform: str | None = None
) -> Path:
    """Write the launcher and the host manifest; returns the manifest's path."""
    platform = platform or sys.platform
    windows = platform.startswith("win")
    data = _data_dir(config_path)
    launcher = data / ("spamguard-thunderbird-host" + (".bat" if windows else ""))
    folder = target or manifest_dir(platform)
    try:
        data.mkdir(parents=True, exist_ok=True)
        launcher.write_text(_launcher_text(config_path, windows), encoding="utf-8")
        if not windows:
            launcher.chmod(0o755)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / f"{HOST_NAME}.json"
        body = {
            "name": HOST_NAME,
            "description": "SpamGuard: scores and labels for the SpamGuard Thunderbird add-on",
            "path": str(launcher),
            "type": "stdio",
            "allowed_extensions": [ADDON_ID],
        }
        manifest.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SpamGuardError(f"cannot write the Thunderbird host files: {exc}") from None
    if windows and target is None:
        _set_windows_key(manifest)
    return manifest


def _set_windows_key(manifest: Path) -> None:  # pragma: no cover - Windows only
    import winreg  # type: ignore[import-not-found,unused-ignore]

    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, WINDOWS_KEY) as key:  # type: ignore[attr-defined,unused-ignore]
        winreg.SetValueEx(key, "", 0, winreg.REG_SZ, str(manifest))  # type: ignore[attr-defined,unused-ignore]


def uninstall(
    config_path: str | None = None, *, target: Path | None = None, platform: str | None = None
) -> list[Path]:
    platform = platform or sys.platform
    windows = platform.startswith("win")
    folder = target or manifest_dir(platform)
    data = _data_dir(config_path)
    removed = []
    for path in (
        folder / f"{HOST_NAME}.json",
        data / ("spamguard-thunderbird-host" + (".bat" if windows else "")),
    ):
        if path.exists():
            path.unlink()
            removed.append(path)
    if windows and target is None:  # pragma: no cover - Windows only
        import winreg  # type: ignore[import-not-found,unused-ignore]

        with contextlib.suppress(OSError):
            winreg.DeleteKey(winreg.HKEY_CURRENT_USER, WINDOWS_KEY)  # type: ignore[attr-defined,unused-ignore]
    return removed


def status(
    config_path: str | None = None, *, target: Path | None = None, platform: str | None = None
) -> HostStatus:
    folder = target or manifest_dir(platform)
    manifest = folder / f"{HOST_NAME}.json"
    data = _data_dir(config_path)
    contact = last_contact(data) or {}
    at = contact.get("at")
    launcher = None
    problem = ""
    installed = manifest.exists()
    if installed:
        try:
            body = json.loads(manifest.read_text(encoding="utf-8"))
            launcher = Path(body["path"])
            if ADDON_ID not in body.get("allowed_extensions", []):
                problem = f"{manifest} does not allow the add-on {ADDON_ID}"
            elif not os.access(launcher, os.X_OK):
                problem = f"its launcher {launcher} is missing or not executable"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{manifest} cannot be read ({exc}); run install again"
    return HostStatus(
        manifest=manifest,
        installed=installed,
        launcher=launcher,
        problem=problem,
        last_contact=float(at) if isinstance(at, (int, float)) else None,
        addon_version=str(contact.get("addon_version", "")),
    )


# -- CLI ------------------------------------------------------------------------------------


def build_addon(config_path: str | None = None) -> Path | None:
    """Build the add-on's .xpi into SpamGuard's data folder when this is a source checkout
    (plugins/thunderbird next to the package); None otherwise."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    script = root / "packaging" / "build-xpi"
    if not (root / "plugins" / "thunderbird" / "manifest.json").exists() or not script.exists():
        return None
    out = subprocess.run(
        [sys.executable, str(script), str(_data_dir(config_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SpamGuardError(f"cannot build the add-on: {out.stderr.strip()[-300:]}")
    return Path(out.stdout.strip().splitlines()[-1])
