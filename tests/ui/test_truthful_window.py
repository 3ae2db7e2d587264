"""The window tells the truth (issue 22, item 6): after an action the selection stays on the
message, repeated presses do not act twice, the buttons show the new state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from spamguard_ui.messages import ROW_ROLE

from spamguard.engine.session import MessageRow
from spamguard.mail.maildir import MaildirStore


def message_ids(root: Path, folder: str) -> set[str]:
    store = MaildirStore(root)
    out = set()
    for fetched in store.fetch(folder, store.uids(folder), 64 * 1024):
        for line in fetched.raw.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("message-id:"):
                out.add(line.split(":", 1)[1].strip())
                break
    return out


def _selected(app: Any) -> MessageRow | None:
    return app.window.selected_row()


def _show_inbox_only(app: Any) -> None:
    """The folder view where an action takes the message out of the shown folder."""
    root = app.window.places.topLevelItem(0)
    for i in range(root.childCount()):
        account = root.child(i)
        for j in range(account.childCount()):
            if account.child(j).text(0) == "INBOX":
                app.window.places.setCurrentItem(account.child(j))
                return
    raise AssertionError("no INBOX in the side bar")


def _select(app: Any, qtbot: Any, predicate: Any) -> MessageRow:
    proxy = app.window.proxy
    for r in range(proxy.rowCount()):
        row = proxy.index(r, 0).data(ROW_ROLE)
        if predicate(row):
            app.window.table.selectRow(r)
            qtbot.waitUntil(lambda row=row: app.window.detail.row is not None)
            assert app.window.detail.row.key == row.key
            return row
    raise AssertionError("no row matches")


def test_spam_keeps_the_selection_on_the_message_and_disables_spam(
    demo_app: Any, qtbot: Any
) -> None:
    _show_inbox_only(demo_app)
    row = _select(demo_app, qtbot, lambda r: r.location == "INBOX" and r.verdict == "ham")
    qtbot.mouseClick(demo_app.window.detail.spam_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: demo_app.window.detail.row.label == "spam", timeout=10_000)
    selected = _selected(demo_app)
    assert selected is not None and selected.key == row.key
    assert selected.location == "Junk"
    assert not demo_app.window.detail.spam_button.isEnabled()


def test_undo_pressed_twice_is_one_undo(demo_app: Any, qtbot: Any) -> None:
    root = demo_app.accounts["demo"].maildir
    junk_before = message_ids(root, "Junk")
    assert len(junk_before) >= 2
    demo_app.window.filter.setCurrentIndex(2)  # "Moved today": an undone row leaves the view
    row = _select(demo_app, qtbot, lambda r: r.moved)
    undo = demo_app.window.detail.undo_button
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)  # a double-click
    qtbot.waitUntil(lambda: demo_app.window.detail.row.action == "moved back", timeout=10_000)
    selected = _selected(demo_app)
    assert selected is not None and selected.key == row.key
    assert not undo.isEnabled()
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)  # disabled: nothing happens
    qtbot.wait(1500)  # time for a second queued undo to reach the mailbox, if one was sent
    assert message_ids(root, "Junk") == junk_before - {row.message_id}
    assert [r.key for r in demo_app.window.model.rows() if r.action == "moved back"] == [row.key]


def test_the_lost_connection_banner_clears_when_a_scan_succeeds_again(
    demo_app: Any, qtbot: Any
) -> None:
    runner = demo_app.runners["demo"]
    lost = "lost the connection to localhost while trying to fetch: connection reset"
    runner.failed.emit("scan", lost)  # what the runner reports when the server drops
    qtbot.waitUntil(lambda: demo_app.window.banner.isVisible())
    assert lost in demo_app.window.banner.text()
    with qtbot.waitSignal(demo_app.scanDone, timeout=60_000):
        demo_app.scan_now()
    qtbot.waitUntil(lambda: not demo_app.window.banner.isVisible())
    assert "up to date" in demo_app.window.status_text.text()


def test_a_click_while_the_banner_appears_lands_on_the_row_under_the_pointer(
    demo_app: Any, qtbot: Any
) -> None:
    window = demo_app.window
    table = window.table
    qtbot.waitExposed(window)
    window.show_banner("")  # the demo's own banner: gone, so the next one is a layout change
    qtbot.wait(50)
    index = table.model().index(3, 0)
    pointer = table.viewport().mapToGlobal(table.visualRect(index).center())
    aimed_at = index.data(ROW_ROLE)
    # The pointer is on row 3; the connection drops just before the click lands.
    demo_app.runners["demo"].failed.emit("scan", "lost the connection to localhost: reset")
    qtbot.waitUntil(lambda: window.banner.isVisible())
    qtbot.wait(50)  # the layout settles
    # The pointer has not moved on the screen: click where it is now, over the viewport.
    point = table.viewport().mapFromGlobal(pointer)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=point)
    selected = _selected(demo_app)
    assert selected is not None and selected.key == aimed_at.key
    # ... and when it goes away again.
    index = table.model().index(6, 0)
    pointer = table.viewport().mapToGlobal(table.visualRect(index).center())
    aimed_at = index.data(ROW_ROLE)
    with qtbot.waitSignal(demo_app.scanDone, timeout=60_000):
        demo_app.scan_now()
    qtbot.waitUntil(lambda: not window.banner.isVisible())
    qtbot.wait(50)
    # The pointer has not moved on the screen: click where it is now, over the viewport.
    point = table.viewport().mapFromGlobal(pointer)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=point)
    selected = _selected(demo_app)
    assert selected is not None and selected.key == aimed_at.key


def test_tray_undo_count_leaves_out_a_rescued_message(
    tray_host: None, make_app: Any, qtbot: Any
) -> None:
    app = make_app()
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        app.start(show_window=True)
    moved = [r for r in app.window.model.rows() if r.moved]
    assert len(moved) >= 2
    assert app.tray.undo_action.text().replace("&", "") == f"Undo last moves ({len(moved)})"
    rescued = _select(app, qtbot, lambda r: r.moved)
    qtbot.mouseClick(app.window.detail.ham_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: app.window.detail.row.label == "ham", timeout=10_000)
    assert app.tray.undo_action.text().replace("&", "") == f"Undo last moves ({len(moved) - 1})"
    assert rescued.message_id not in {r.message_id for r in app.window.model.rows() if r.moved}


def test_tray_says_no_account_instead_of_watching(
    tray_host: None, make_app: Any, qtbot: Any
) -> None:
    app = make_app(demo=False)
    app.start(show_window=False)
    tip = app.tray.icon.toolTip()
    assert "watching your mail" not in tip
    assert "no mail account" in tip.lower()


def test_first_run_shows_the_window_even_with_a_tray(
    tray_host: None, make_app: Any, qtbot: Any
) -> None:
    app = make_app(demo=False)
    assert app.tray_available
    app.start()  # as `spamguard-app` starts it: no explicit choice
    assert app.window.isVisible()
    assert app.window.first_run.isVisible()


def test_tray_settings_reach_every_settings_page(
    tray_host: None, make_app: Any, qtbot: Any
) -> None:
    app = make_app()
    with qtbot.waitSignal(app.scansFinished, timeout=60_000):
        app.start(show_window=False)
    menu = app.tray.settings_action.menu()
    assert menu is not None
    entries = {a.text().replace("&", ""): a for a in menu.actions() if a.text()}
    assert {"Accounts…", "Thresholds…", "Models…", "Thunderbird…"} <= set(entries)
    entries["Models…"].trigger()
    assert app.window.isVisible()
    assert app.window.tabs.currentWidget() is app.window.models_page
    entries["Thresholds…"].trigger()
    assert app.window.tabs.currentWidget() is app.window.thresholds
    entries["Thunderbird…"].trigger()
    assert app.window.tabs.currentWidget() is app.thunderbird_panel


def test_undoing_your_own_spam_withdraws_the_label_and_the_list_says_who_moved_it(
    demo_app: Any, qtbot: Any
) -> None:
    model = demo_app.window.model
    by_spamguard = next(r for r in model.rows() if r.moved)
    assert model.action_text(by_spamguard) == "Moved to Junk"
    assert "SpamGuard moved it" in model._tooltip(by_spamguard, model.ACTION)
    _select(demo_app, qtbot, lambda r: r.key == by_spamguard.key)
    assert "SpamGuard moved it to Junk" in demo_app.window.detail.score.text()
    row = _select(demo_app, qtbot, lambda r: r.location == "INBOX" and r.verdict == "ham")
    qtbot.mouseClick(demo_app.window.detail.spam_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: demo_app.window.detail.row.label == "spam", timeout=10_000)
    mine = demo_app.window.detail.row
    assert model.verdict_text(mine) == "Spam (you)"
    assert model.action_text(mine) == "Moved to Junk by you"
    assert "You moved it" in model._tooltip(mine, model.ACTION)
    # The detail pane says the same, not "SpamGuard moved it".
    assert "You moved it to Junk" in demo_app.window.detail.score.text()
    assert "SpamGuard moved it" not in demo_app.window.detail.score.text()
    qtbot.mouseClick(demo_app.window.detail.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: demo_app.window.detail.row.action == "moved back", timeout=10_000)
    undone = demo_app.window.detail.row
    assert undone.key == row.key and undone.location == "INBOX"
    assert model.verdict_text(undone) != "Spam (you)"
    assert undone.label == ""
    labels = demo_app.store._query(
        "SELECT label FROM feedback WHERE message_id = ?", (row.message_id,)
    )
    assert [r[0] for r in labels] == []  # not trained on as spam either
