"""Issue 22 item 3: a new account's first scan is a review; nothing moves until Apply.

Real Dovecot, the real app under Xvfb. The scorer reads each message's X-Test-Score header
(`tests/mail/header_scorer.py`, through ``$SPAMGUARD_SCORER``), so which messages would move
or be flagged is known exactly: 4 at or above the move threshold 0.90, 2 in the flag band.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))

SCORES = [0.99, 0.98, 0.95, 0.92, 0.7, 0.6, 0.1, 0.1, 0.1, 0.1]


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from dovecot_server import DOVECOT, DovecotServer

    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    srv = DovecotServer().start()
    yield srv
    srv.cleanup()


@pytest.fixture
def header_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPAMGUARD_SCORER", "header_scorer:factory")


def _mailbox(server: Any, tmp_path: Path) -> tuple[str, Path, dict[float, str]]:
    """A fresh user with the ten messages in INBOX; the config; {score: subject}."""
    from imap_helpers import account_toml, append_all, make_mail

    user = server.add_user()
    subjects = {}
    mail = []
    for i, p in enumerate(SCORES):
        subject = f"message {i} scored {p}"
        subjects.setdefault(p, subject)
        mail.append(make_mail(i, p, subject=subject))
    append_all(server, user, mail)
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n'
        + account_toml(server, user, extra='junk_folder = "Junk"\n')
    )
    return user, config, subjects


def _state(server: Any, user: str) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """{folder: [(score header, flags)]} as the server has it (read-only)."""
    from imap_helpers import PASSWORD
    from imapclient import IMAPClient

    out: dict[str, list[tuple[str, frozenset[str]]]] = {}
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        for folder in ("INBOX", "Junk"):
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            data = (
                client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (X-TEST-SCORE)]"])
                if uids
                else {}
            )
            out[folder] = sorted(
                (
                    next(v for k, v in item.items() if k.startswith(b"BODY["))
                    .decode()
                    .partition(":")[2]
                    .strip(),
                    frozenset(f.decode() for f in item[b"FLAGS"]) - {"\\Recent", "\\Seen"},
                )
                for item in data.values()
            )
    return out


def _flagged(state: dict[str, list[tuple[str, frozenset[str]]]], folder: str) -> list[str]:
    return sorted(score for score, flags in state[folder] if "\\Flagged" in flags)


def _wait_review(app: Any, qtbot: Any) -> Any:
    qtbot.waitUntil(
        lambda: app.review_dialog is not None and app.review_dialog.isVisible(), timeout=60_000
    )
    return app.review_dialog


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_first_scan_is_a_review_and_apply_moves_only_above_the_score_picked(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path, header_scores: None
) -> None:
    user, config, _ = _mailbox(server, tmp_path)
    before = _state(server, user)
    assert len(before["INBOX"]) == 10 and before["Junk"] == []

    app = make_app(demo=False, config_path=config)
    app.start(show_window=True)
    dialog = _wait_review(app, qtbot)
    assert dialog.headline.text() == "SpamGuard would move 4 and flag 2 of 10 messages."
    shown = [dialog.list.topLevelItem(i) for i in range(dialog.list.topLevelItemCount())]
    assert [(r.text(0), r.text(1)) for r in shown] == [
        ("99 %", "Move to Junk"),
        ("98 %", "Move to Junk"),
        ("95 %", "Move to Junk"),
        ("92 %", "Move to Junk"),
        ("70 %", "Flag"),
        ("60 %", "Flag"),
    ]
    # The review changed nothing: not on the server, not in the journal, no folder state.
    assert _state(server, user) == before
    assert app.store is not None
    assert app.store.journal(account="work") == []
    assert app.store.folder_state("work", "INBOX") is None
    assert app.window.model.rowCount() == 0

    # Scan now while the review waits: it looks again and still acts on nothing.
    with qtbot.waitSignal(app.runners["work"].reviewReady, timeout=60_000):
        app.scan_now()
    assert _state(server, user) == before and app.store.journal(account="work") == []

    # Apply moves only at or above 96 %: the two surest move, the other would-be moves and
    # the flag band are flagged; the list says so before the press.
    dialog = _wait_review(app, qtbot)
    dialog.above.setValue(96)
    assert dialog.above_counts.text() == "move 2, flag 4"
    with qtbot.waitSignal(app.scanDone, timeout=60_000):
        qtbot.mouseClick(dialog.above_button, _left())
    after = _state(server, user)
    assert sorted(s for s, _ in after["Junk"]) == ["0.98", "0.99"]
    assert _flagged(after, "INBOX") == ["0.6", "0.7", "0.92", "0.95"]
    assert sorted(s for s, _ in after["INBOX"]) == sorted(
        ["0.92", "0.95", "0.7", "0.6", "0.1", "0.1", "0.1", "0.1"]
    )
    # Journalled as always: two moves to Junk and four flags, all applied.
    journal = app.store.journal(account="work")
    assert sorted(e.action for e in journal) == ["flag"] * 4 + ["move_junk"] * 2
    assert {e.state for e in journal} == {"applied"}
    assert not dialog.isVisible() and "work" not in app.reviews
    assert app.window.model.rowCount() == 10
    assert app.shutdown()

    # A second run does not review again, and new mail follows the account's thresholds
    # (0.90), not the first scan's 96 %.
    again = make_app(demo=False, config_path=config)
    with qtbot.waitSignal(again.scansFinished, timeout=60_000):
        again.start(show_window=True)
    assert again.review_dialog is None and again.reviews == {}
    from imap_helpers import append_all, make_mail

    append_all(server, user, [make_mail(99, 0.93, subject="new mail at 0.93")])
    qtbot.waitUntil(lambda: "0.93" in [s for s, _ in _state(server, user)["Junk"]], timeout=60_000)
    assert again.review_dialog is None


def test_flag_only_moves_nothing_and_decide_later_changes_nothing(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path, header_scores: None
) -> None:
    user, config, _ = _mailbox(server, tmp_path)
    before = _state(server, user)
    app = make_app(demo=False, config_path=config)
    app.start(show_window=True)
    dialog = _wait_review(app, qtbot)
    assert dialog.flag_button.text() == "&Flag only: flag 6, move nothing"
    # The tray says what is waiting, not "watching your mail" or "flagged or moved".
    assert app.tray.state == "attention"
    assert "the first scan of work waits for your review" in app.tray.icon.toolTip()

    # First-sync learning is offered on the same page; with an empty Junk there is too little
    # to learn from, and the review is back to take a choice.
    qtbot.mouseClick(dialog.learn_button, _left())
    assert not dialog.apply_button.isEnabled()
    qtbot.waitUntil(
        lambda: app.first_sync_dialog is not None and app.first_sync_dialog.result is not None,
        timeout=60_000,
    )
    assert app.first_sync_dialog.result.state == "too little"
    qtbot.waitUntil(dialog.apply_button.isEnabled, timeout=5000)
    app.first_sync_dialog.reject()

    # Decide later: the dialog goes, nothing changes, the banner brings the review back.
    qtbot.mouseClick(dialog.later_button, _left())
    assert not dialog.isVisible()
    banner = app.window.banner
    assert banner.isVisible() and "Review the first scan" in banner.text()
    assert _state(server, user) == before
    app.window.banner.linkActivated.emit("review:work")
    dialog = _wait_review(app, qtbot)

    with qtbot.waitSignal(app.scanDone, timeout=60_000):
        qtbot.mouseClick(dialog.flag_button, _left())
    after = _state(server, user)
    assert after["Junk"] == []
    assert _flagged(after, "INBOX") == ["0.6", "0.7", "0.92", "0.95", "0.98", "0.99"]
    assert app.store is not None
    assert sorted(e.action for e in app.store.journal(account="work")) == ["flag"] * 6
    assert not banner.isVisible() or "Review" not in banner.text()
    assert "waits for your review" not in app.tray.icon.toolTip()


def test_apply_does_what_the_review_showed(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path, header_scores: None
) -> None:
    user, config, _ = _mailbox(server, tmp_path)
    app = make_app(demo=False, config_path=config)
    app.start(show_window=True)
    dialog = _wait_review(app, qtbot)
    assert dialog.apply_button.text() == "&Apply: move 4, flag 2"
    with qtbot.waitSignal(app.scanDone, timeout=60_000):
        qtbot.mouseClick(dialog.apply_button, _left())
    after = _state(server, user)
    assert sorted(s for s, _ in after["Junk"]) == ["0.92", "0.95", "0.98", "0.99"]
    assert _flagged(after, "INBOX") == ["0.6", "0.7"]


def test_learn_first_makes_the_review_again_with_the_learned_version(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path, tiny_model: Path
) -> None:
    """First-sync learning offered on the review page: after it, the review is made again by
    the version it promoted, and still nothing on the server has changed."""
    import random

    from imap_helpers import PASSWORD, account_toml
    from imapclient import IMAPClient

    from spamguard.learn.registry import ModelRegistry
    from tests.fixtures.make_corpus import render
    from tests.ui.test_first_sync_dialog import OLD, filled_account

    user = filled_account(server)  # 30 spam in Junk, 40 read messages in INBOX
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        for i in range(6):  # new, unread spam for the first scan to act on
            raw = render(random.Random(f"new{i}"), "spam-a", 100 + i, OLD)
            client.append("INBOX", raw.replace(b"\n", b"\r\n"))
    registry = ModelRegistry(tmp_path / "data" / "models")
    registry.register_dir(tiny_model, activate=True)
    before_version = registry.active
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n'
        + account_toml(server, user, extra='junk_folder = "Junk"\n')
    )
    before = _state(server, user)
    # No pinned model: the registry's active version scores, and a promoted one replaces it.
    app = make_app(demo=False, config_path=config, model_dir=None)
    app.start(show_window=True)
    dialog = _wait_review(app, qtbot)
    first = dialog.review
    assert first.moves + first.flags > 0
    assert first.model_version == registry.active == before_version

    with qtbot.waitSignal(app.runners["work"].reviewReady, timeout=300_000) as again:
        qtbot.mouseClick(dialog.learn_button, _left())
        assert "Learning from your existing mail" in dialog.note.text()
    learned = app.first_sync_dialog.result
    assert learned is not None and learned.state == "learned", learned
    assert registry.active not in (None, before_version)
    second = again.args[0]
    assert second.model_version == registry.active
    qtbot.waitUntil(lambda: dialog.review is second and dialog.apply_button.isEnabled())
    assert _state(server, user) == before  # learning read, the review looked: nothing changed
    assert app.store is not None and app.store.journal(account="work") == []
    app.first_sync_dialog.reject()
