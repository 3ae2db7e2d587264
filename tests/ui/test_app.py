"""The demo app end to end: scan fills the table, explanation, buttons, filters, settings, quit."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from spamguard_ui.messages import ROW_ROLE, MessageFilter, MessageModel, percent

from spamguard.engine.session import MessageRow
from spamguard.mail.maildir import MaildirStore


def visible_rows(app: Any) -> list[MessageRow]:
    proxy = app.window.proxy
    return [proxy.index(r, 0).data(ROW_ROLE) for r in range(proxy.rowCount())]


def select(app: Any, qtbot: Any, predicate: Any) -> MessageRow:
    for r, row in enumerate(visible_rows(app)):
        if predicate(row):
            app.window.table.selectRow(r)
            qtbot.waitUntil(lambda row=row: app.window.detail.row is not None)
            return row
    raise AssertionError("no row matches")


def message_ids(root: Path, folder: str) -> set[str]:
    store = MaildirStore(root)
    out = set()
    for fetched in store.fetch(folder, store.uids(folder), 64 * 1024):
        for line in fetched.raw.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("message-id:"):
                out.add(line.split(":", 1)[1].strip())
                break
    return out


def test_demo_scan_fills_the_table(demo_app: Any) -> None:
    rows = visible_rows(demo_app)
    assert len(rows) == 36
    verdicts = {r.verdict for r in rows}
    assert {"spam", "ham"} <= verdicts
    moved = [r for r in rows if r.moved]
    assert moved and all(r.location == "Junk" for r in moved)
    model = demo_app.window.model
    index = demo_app.window.proxy.index(0, MessageModel.PROBABILITY)
    assert index.data().endswith("%")
    assert model.headerData(MessageModel.VERDICT, Qt.Orientation.Horizontal) == "Verdict"


def test_sorting_by_probability(demo_app: Any) -> None:
    demo_app.window.table.sortByColumn(MessageModel.PROBABILITY, Qt.SortOrder.DescendingOrder)
    scores = [r.p_spam for r in visible_rows(demo_app)]
    assert scores == sorted(scores, reverse=True)


def test_filters_and_search(demo_app: Any, qtbot: Any) -> None:
    window = demo_app.window
    window.filter.setCurrentIndex(MessageFilter.FLAGGED)
    flagged = visible_rows(demo_app)
    assert flagged and all(r.verdict in ("flag", "spam") for r in flagged)
    window.filter.setCurrentIndex(MessageFilter.MOVED_TODAY)
    moved = visible_rows(demo_app)
    assert moved and all(r.moved for r in moved)
    window.filter.setCurrentIndex(MessageFilter.ALL)
    word = visible_rows(demo_app)[0].subject.split()[0]
    qtbot.keyClicks(window.search, word)
    found = visible_rows(demo_app)
    assert found and all(word.lower() in (r.subject + r.from_addr).lower() for r in found)
    window.search.clear()
    assert len(visible_rows(demo_app)) == 36


def test_folder_tree_filters_by_location(demo_app: Any) -> None:
    tree = demo_app.window.places
    demo = tree.topLevelItem(0).child(0)
    junk = next(demo.child(i) for i in range(demo.childCount()) if demo.child(i).text(0) == "Junk")
    tree.setCurrentItem(junk)
    rows = visible_rows(demo_app)
    assert rows and all(r.location == "Junk" for r in rows)


def test_explanation_pane_shows_evidence(demo_app: Any, qtbot: Any) -> None:
    row = select(demo_app, qtbot, lambda r: r.verdict == "spam")
    pane = demo_app.window.detail
    assert pane.title.text() == row.subject
    assert percent(row.p_spam) in pane.score.text()
    from spamguard.llm.explain import plain_reasons

    reasons = plain_reasons(row.evidence)
    assert pane.evidence_box.count() == len(reasons) > 0
    first = pane.evidence_box.itemAt(0).layout().itemAt(1).widget()
    assert first.text() == reasons[0].label
    assert "towards" in first.toolTip() and reasons[0].sentence in first.toolTip()
    assert pane.summary.text().startswith(reasons[0].sentence)
    # The tiny test model keeps no neighbours, and the pane says so instead of staying blank.
    qtbot.waitUntil(lambda: "None to show" in pane.neighbour_box.itemAt(0).widget().text())


def test_cheap_stage_rows_get_their_neighbours_from_the_full_head(
    make_app: Any, qtbot: Any
) -> None:
    from spamguard.scoring.model import default_model_dir

    app = make_app(model_dir=default_model_dir())  # the shipped cascade
    with qtbot.waitSignal(app.scansFinished, timeout=120_000):
        app.start(show_window=True)
    row = select(app, qtbot, lambda r: r.stage == "stage0-cheap")
    assert not row.neighbours  # the cheap stage has no encoder
    pane = app.window.detail
    qtbot.waitUntil(
        lambda: "Looking for" not in pane.neighbour_box.itemAt(0).widget().text(),
        timeout=60_000,
    )
    texts = [
        pane.neighbour_box.itemAt(i).widget().text() for i in range(pane.neighbour_box.count())
    ]
    # Listed only when similar enough to mean something; else the pane says why none is.
    alike = [int(p) for t in texts for p in re.findall(r"(\d+) % alike\)", t)]
    assert alike or (len(texts) == 1 and "None close enough" in texts[0]), texts
    assert all(p >= 50 for p in alike) and len(alike) <= 3


def test_spam_button_moves_and_labels(demo_app: Any, qtbot: Any) -> None:
    root = demo_app.accounts["demo"].maildir
    row = select(demo_app, qtbot, lambda r: r.location == "INBOX" and r.verdict == "ham")
    assert row.message_id in message_ids(root, "INBOX")
    qtbot.mouseClick(demo_app.window.detail.spam_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: demo_app.window.detail.row.label == "spam", timeout=10_000)
    assert demo_app.window.detail.row.location == "Junk"
    assert row.message_id in message_ids(root, "Junk")
    assert row.message_id not in message_ids(root, "INBOX")
    assert "Spam (you)" in [
        demo_app.window.model.verdict_text(r) for r in demo_app.window.model.rows()
    ]
    labels = demo_app.store._query(
        "SELECT label, source FROM feedback WHERE message_id = ?", (row.message_id,)
    )
    assert [tuple(r) for r in labels] == [("spam", "app button")]


def test_not_spam_button_moves_back_and_labels(demo_app: Any, qtbot: Any) -> None:
    root = demo_app.accounts["demo"].maildir
    row = select(demo_app, qtbot, lambda r: r.moved)
    assert row.message_id in message_ids(root, "Junk")
    qtbot.mouseClick(demo_app.window.detail.ham_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: demo_app.window.detail.row.label == "ham", timeout=10_000)
    assert demo_app.window.detail.row.location == "INBOX"
    assert row.message_id in message_ids(root, "INBOX")
    assert row.message_id not in message_ids(root, "Junk")
    assert demo_app.store.is_rescued("demo", row.message_id, row.content_hash)
    labels = demo_app.store._query(
        "SELECT label FROM feedback WHERE message_id = ?", (row.message_id,)
    )
    assert [r[0] for r in labels] == ["ham"]


def test_undo_button_reverts_a_move(demo_app: Any, qtbot: Any) -> None:
    root = demo_app.accounts["demo"].maildir
    row = select(demo_app, qtbot, lambda r: r.moved)
    assert demo_app.window.detail.undo_button.isEnabled()
    qtbot.mouseClick(demo_app.window.detail.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: demo_app.window.detail.row.action == "moved back", timeout=10_000)
    assert row.message_id in message_ids(root, "INBOX")


def test_notifications_are_batched_with_undo(demo_app: Any, qtbot: Any) -> None:
    tray = demo_app.tray
    moved = [r for r in visible_rows(demo_app) if r.moved]
    assert len(tray.notifications) == 1
    title, text = tray.notifications[0]
    assert title == f"{len(moved)} messages moved to Junk"
    assert "Click to undo" in text
    assert tray.undo_action.isEnabled()
    tray.undo_action.trigger()
    qtbot.waitUntil(lambda: not any(r.moved for r in demo_app.window.model.rows()), timeout=10_000)
    root = demo_app.accounts["demo"].maildir
    assert message_ids(root, "Junk") == set()


def test_settings_persist(make_app: Any, qtbot: Any, qsettings: Any) -> None:
    first = make_app()
    with qtbot.waitSignal(first.scansFinished, timeout=60_000):
        first.start(show_window=True)
    first.window.filter.setCurrentIndex(MessageFilter.FLAGGED)
    first.window.tabs.setCurrentIndex(1)
    panel = first.window.thresholds
    panel.flag_slider.setValue(40)
    panel.move_slider.setValue(80)
    panel.apply_button.click()
    first.window.resize(1000, 650)
    assert first.shutdown()

    second = make_app()
    assert second.window.filter.currentIndex() == MessageFilter.FLAGGED
    assert second.window.tabs.currentIndex() == 1
    assert second.window.size().width() == 1000
    with qtbot.waitSignal(second.scansFinished, timeout=60_000):
        second.start(show_window=True)
    assert second.accounts["demo"].thresholds.flag == pytest.approx(0.40)
    assert second.accounts["demo"].thresholds.move == pytest.approx(0.80)
    assert second.window.thresholds.flag_slider.value() == 40
    # The new thresholds reached the engine: more of the demo mail was moved this time.
    moved = sum(r.moved for r in second.window.model.rows())
    assert moved == sum(r.p_spam >= 0.80 for r in second.window.model.rows())


def test_quit_stops_workers_within_two_seconds(make_app: Any, qtbot: Any) -> None:
    app = make_app()
    app.start(show_window=True)
    qtbot.waitUntil(lambda: app.states.get("demo") == "scanning", timeout=30_000)
    started = time.monotonic()
    assert app.shutdown()
    assert time.monotonic() - started < 2.0
    assert not any(r.isRunning() for r in app.runners.values())


def test_keyboard_reaches_the_table_and_buttons(demo_app: Any, qtbot: Any) -> None:
    window = demo_app.window
    window.activateWindow()
    window.table.setFocus()
    qtbot.waitUntil(window.table.hasFocus)
    qtbot.keyClick(window.table, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: window.detail.row is not None)
    for widget in (window.detail.spam_button, window.search, window.filter):
        assert widget.focusPolicy() & Qt.FocusPolicy.TabFocus
        assert widget.toolTip()


def test_models_page_shows_the_model_its_versions_and_what_scoring_cost(
    demo_app: Any, fixture_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = demo_app.models_page
    page.show_model(None)
    texts = [
        page.form.itemAt(i).widget().text()
        for i in range(page.form.count())
        if page.form.itemAt(i).widget() is not None
    ]
    assert "all-MiniLM-L6-v2 (int8)" in texts  # the shipped model's encoder, named
    # What the demo scan cost, per stage and model version (the tests' small head here).
    version = demo_app._loaded_scorer.version
    counters = page.counters.text()
    assert version in counters and "decided 100%" in counters and "CPU-s per 1,000" in counters
    # A registered personal version is listed, with how to roll back.
    from spamguard.learn.registry import ModelRegistry

    monkeypatch.setenv("SPAMGUARD_MODELS_DIR", str(tmp_path / "models"))
    ModelRegistry().register_dir(fixture_model, activate=True, reason="test version")
    page.show_model(None)
    assert "fixture-head" in page.versions_note.text()
    assert "spamguard models rollback" in page.versions_note.text()


def test_models_page_says_when_message_text_would_leave(demo_app: Any) -> None:
    from spamguard.config import parse_config

    page = demo_app.models_page
    page.set_llm(parse_config('[llm]\nremote_url = "https://llm.example.org/v1"\n').llm)
    assert "https://llm.example.org/v1" in page.remote_state.text()
    assert "leaves this computer" in page.remote_state.text()
    page.set_llm(parse_config("").llm)
    assert page.remote_state.text().startswith("<b>Off</b>")


@pytest.mark.llm
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama_cpp is not importable: pip install llama-cpp-python (see README)",
)
def test_the_language_model_explains_the_shown_message_in_the_pane(
    demo_app: Any, qtbot: Any
) -> None:
    row = select(demo_app, qtbot, lambda r: r.verdict == "spam")
    pane = demo_app.window.detail
    before = (row.p_spam, row.verdict, row.location)
    assert pane.llm_button.isVisible() and pane.llm_button.isEnabled()
    qtbot.mouseClick(pane.llm_button, Qt.MouseButton.LeftButton)
    assert not pane.llm_button.isEnabled()  # one request at a time
    # The real SmolLM2 from its PyPI package writes, piece by piece, then the button returns.
    qtbot.waitUntil(lambda: pane.llm_button.isEnabled(), timeout=120_000)
    assert len(pane.llm_text.text().split()) > 8
    shown = pane.row
    assert (shown.p_spam, shown.verdict, shown.location) == before  # it never decides


def test_stage_column_says_quick_or_full_in_a_word(make_app: Any, qtbot: Any) -> None:
    from spamguard.scoring.model import default_model_dir

    app = make_app(model_dir=default_model_dir())  # the shipped cascade
    with qtbot.waitSignal(app.scansFinished, timeout=120_000):
        app.start(show_window=True)
    proxy = app.window.proxy
    shown = {
        proxy.index(r, MessageModel.STAGE).data(): proxy.index(r, 0).data(ROW_ROLE).stage
        for r in range(proxy.rowCount())
    }
    assert shown == {"quick": "stage0-cheap", "full": "stage1-head"}
    quick = next(
        r for r in range(proxy.rowCount()) if proxy.index(r, MessageModel.STAGE).data() == "quick"
    )
    assert "quick stage" in proxy.index(quick, MessageModel.STAGE).data(Qt.ItemDataRole.ToolTipRole)


def test_percentages_round_down_so_a_score_never_shows_a_threshold_it_missed() -> None:
    assert percent(0.898) == "89 %"  # below a 0.90 move threshold: not "90 %"
    assert percent(0.9) == "90 %" and percent(0.29) == "29 %" and percent(1.0) == "100 %"
    assert percent(0.004) == "0 %"
