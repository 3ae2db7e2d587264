"""The app's Thunderbird tab: not connected, Install writes the host manifest, and the
add-on's first contact turns it to connected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from spamguard.engine.native_host import ADDON_ID, record_contact
from ui.thunderbird_panel import ThunderbirdPanel


def test_install_then_connected(qtbot: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    hosts = tmp_path / "native-messaging-hosts"
    panel = ThunderbirdPanel(config, target=hosts)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.state.text() == "✘ Not connected."
    assert "not installed" in panel.detail.text()

    qtbot.mouseClick(panel.install_button, Qt.MouseButton.LeftButton)
    manifest = json.loads((hosts / "spamguard.json").read_text())
    assert manifest["allowed_extensions"] == [ADDON_ID]
    assert panel.state.text() == "Installed; waiting for the add-on to connect."
    assert panel.install_button.text() == "Re&install for Thunderbird"
    xpi = tmp_path / "data" / "spamguard-thunderbird-0.1.0.xpi"
    assert xpi.exists() and f"Install Add-on From File… and pick {xpi}" in panel.detail.text()

    record_contact(tmp_path / "data", "0.1.0")  # what the host does on the add-on's hello
    qtbot.waitUntil(lambda: panel.state.text() == "✔ The add-on is connected.", timeout=10_000)
    assert "(add-on 0.1.0)" in panel.detail.text()
