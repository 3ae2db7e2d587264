"""First run: no account yet → the demo mailbox is one click away; a new account is watched
at once, without restarting the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spamguard.engine.session import DEMO_ACCOUNT, prepare_demo_mailbox


def test_no_account_offers_the_demo_mailbox(
    make_app: Any, qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first run: no config file at all, and the default data dir inside the test's folder.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    app = make_app(demo=False, config_path=tmp_path / "none.toml")
    app.start(show_window=True)
    window = app.window
    assert window.first_run.isVisible() and window.demo_button.isVisible()
    assert "No mail account is set up yet" in window.first_run_text.text()
    assert not app.runners
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        qtbot.mouseClick(window.demo_button, _left())
    assert not window.first_run.isVisible()
    assert "demo mailbox" in window.banner.text()
    assert window.model.rowCount() == 36
    assert {r.account for r in window.model.rows()} == {DEMO_ACCOUNT}
    # The demo has its own store in the temp folder, never the user's.
    assert app.store is not None and app._demo_store is not app.store


def test_an_added_account_is_watched_without_a_restart(
    make_app: Any, qtbot: Any, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    app = make_app(demo=False, config_path=config)
    app.start(show_window=True)
    assert app.window.first_run.isVisible() and not app.runners

    # What the account dialog does on OK: the account lands in the config file.
    mail = prepare_demo_mailbox(tmp_path / "mine")
    config.write_text(
        config.read_text()
        + f'[accounts.mine]\nmaildir = "{mail}"\njunk_folder = "Junk"\nbacklog_days = 0\n'
    )
    assert app.watch_new_accounts() == ["mine"]
    assert "mine" in app.runners and app.runners["mine"].isRunning()
    # A new account's first scan is a review (issue 22): the scan acts once it is applied.
    qtbot.waitUntil(
        lambda: app.review_dialog is not None and app.review_dialog.isVisible(), timeout=60_000
    )
    assert app.window.model.rowCount() == 0
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        app.review_dialog.apply_button.click()
    assert not app.window.first_run.isVisible()
    assert app.window.model.rowCount() == 36
    assert app.watch_new_accounts() == []  # nothing new: nothing started twice


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
