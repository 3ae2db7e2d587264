"""Threshold sliders: live counts over the recent scores, linked sliders, apply and persist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spamguard_ui.thresholds import ThresholdsPanel

from spamguard.config import load_config
from spamguard.config.edit import save_account_thresholds
from spamguard.verdict import Thresholds

SCORES = [0.05, 0.1, 0.2, 0.45, 0.55, 0.6, 0.75, 0.85, 0.92, 0.97]


def make_panel(qtbot: Any) -> ThresholdsPanel:
    panel = ThresholdsPanel()
    qtbot.addWidget(panel)
    panel.set_account("work", Thresholds(move=0.9, flag=0.5))
    panel.set_scores("work", SCORES)
    panel.show()
    return panel


def test_counts_follow_the_sliders(qapp: Any, qtbot: Any) -> None:
    panel = make_panel(qtbot)
    assert panel.counts() == (4, 2)
    assert "4 of 10 recent messages would be flagged" in panel.flag_label.text()
    assert "2 of 10 recent messages would be moved to Junk" in panel.move_label.text()
    assert not panel.apply_button.isEnabled()
    panel.move_slider.setValue(70)
    assert panel.counts() == (2, 4)
    assert "4 of 10 recent messages would be moved" in panel.move_label.text()
    assert panel.apply_button.isEnabled()
    assert "Not applied yet" in panel.summary.text()
    assert panel.chart.move == pytest.approx(0.70)


def test_flag_never_above_move(qapp: Any, qtbot: Any) -> None:
    panel = make_panel(qtbot)
    panel.flag_slider.setValue(95)
    assert panel.move_slider.value() == 95
    panel.move_slider.setValue(30)
    assert panel.flag_slider.value() == 30


def test_apply_emits_per_account(qapp: Any, qtbot: Any) -> None:
    panel = make_panel(qtbot)
    panel.set_account("home", Thresholds(move=0.8, flag=0.4))
    panel.account.setCurrentText("home")
    assert panel.flag_slider.value() == 40
    panel.flag_slider.setValue(35)
    with qtbot.waitSignal(panel.applied) as blocker:
        panel.apply_button.click()
    assert blocker.args[0] == "home"
    assert blocker.args[1] == Thresholds(move=0.8, flag=0.35)
    panel.account.setCurrentText("work")
    assert panel.flag_slider.value() == 50


def test_keyboard_moves_a_slider(qapp: Any, qtbot: Any) -> None:
    from PySide6.QtCore import Qt

    panel = make_panel(qtbot)
    panel.flag_slider.setFocus()
    qtbot.keyClick(panel.flag_slider, Qt.Key.Key_PageUp)
    assert panel.flag_slider.value() == 55


def test_app_applies_thresholds_to_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '# my accounts\n[accounts.work]\nhost = "imap.example.com"\nusername = "me"\n'
        '\n[accounts.home]\nprovider = "fastmail"\nusername = "me@fastmail.com"\n'
    )
    save_account_thresholds(config, "work", Thresholds(move=0.85, flag=0.4))
    save_account_thresholds(config, "work", Thresholds(move=0.8, flag=0.3))
    loaded = load_config(config)
    assert loaded.accounts["work"].thresholds == Thresholds(move=0.8, flag=0.3)
    assert loaded.accounts["home"].thresholds == Thresholds()
    text = config.read_text()
    assert text.startswith("# my accounts") and text.count("[accounts.work.thresholds]") == 1
