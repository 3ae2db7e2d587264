"""The explanation pane says when a protection kept a message out of Junk."""

from __future__ import annotations

from typing import Any

from spamguard_ui.detail import DetailPane

from spamguard.app_api import MessageRow
from spamguard.scoring.base import Evidence


def _row(protected: str) -> MessageRow:
    return MessageRow(
        account="work",
        message_id="<m1@test>",
        content_hash="h1",
        folder="INBOX",
        location="INBOX",
        uid=1,
        date=None,
        from_addr="friend@example.org",
        subject="from a friend",
        p_spam=0.99,
        verdict="spam",
        stage="stage1-head",
        model_version="v",
        action="flagged" if protected else "moved to Junk",
        action_at=None,
        label="",
        plan="flag \\Flagged",
        evidence=(Evidence("text:prize", 2.0, "'prize' in the text"),),
        protected=protected,
    )


def test_the_pane_says_why_a_spammy_message_stayed(qtbot: Any) -> None:
    pane = DetailPane()
    qtbot.addWidget(pane)
    pane.show_row(_row("you have written to friend@example.org"))
    text = pane.score.text()
    assert "flagged it and left it in INBOX" in text
    assert "Never moved to Junk: you have written to friend@example.org." in text
    pane.show_row(_row(""))
    assert "Never moved to Junk" not in pane.score.text()
