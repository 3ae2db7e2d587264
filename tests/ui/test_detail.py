"""The explanation pane says when a protection kept a message out of Junk."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from spamguard_ui.detail import DetailPane

from spamguard.engine.session import MessageRow
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


def _scored_row(path: str) -> MessageRow:
    """A row for a fixture message as the shipped model scores it (real evidence and
    neighbours, the encoder included)."""
    from dataclasses import replace
    from pathlib import Path

    from spamguard.message import parse_message
    from spamguard.scoring.model import load_scorer

    scorer = load_scorer()
    scorer.n_neighbours = 5
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / path
    score = scorer.score([parse_message(fixture.read_bytes())])[0]
    return replace(
        _row(""),
        p_spam=score.p_spam,
        evidence=score.evidence,
        neighbours=score.neighbours,
    )


def test_the_why_pane_reads_as_sentences_with_a_legend(qtbot: Any) -> None:
    from PySide6.QtWidgets import QLabel

    from spamguard.llm.explain import NEIGHBOUR_MIN_SIMILARITY

    row = _scored_row("spam-a/00012.eml")
    near = [n for n in row.neighbours if n.similarity >= NEIGHBOUR_MIN_SIMILARITY]
    far = [n for n in row.neighbours if n.similarity < NEIGHBOUR_MIN_SIMILARITY]
    assert near and far  # the fixture has both, so the test can show the cut
    pane = DetailPane()
    qtbot.addWidget(pane)
    pane.show()
    pane.show_row(row)
    summary = pane.summary.text()
    assert pane.summary.isVisible() and summary.endswith(".")
    assert "It resembles earlier spam in its wording" in summary
    assert pane.legend.isVisible()
    assert "to the right (red)" in pane.legend.text() and "longer the bar" in pane.legend.text()
    shown = " ".join(
        w.text() for w in pane.findChildren(QLabel) if w.isVisible() and w is not pane.summary
    )
    for raw in ("in the text", "letter patterns", "overall meaning"):
        assert raw not in shown and raw not in summary
    neighbour_text = " ".join(
        pane.neighbour_box.itemAt(i).widget().text() for i in range(pane.neighbour_box.count())
    )
    for n in near:
        assert html.escape(n.subject) in neighbour_text
    for n in far:
        assert html.escape(n.subject) not in neighbour_text


def test_low_similarity_neighbours_are_not_listed(qtbot: Any) -> None:
    row = _scored_row("ham-a/00001.eml")
    assert row.neighbours and max(n.similarity for n in row.neighbours) < 0.5
    pane = DetailPane()
    qtbot.addWidget(pane)
    pane.show_row(row)
    texts = [
        pane.neighbour_box.itemAt(i).widget().text() for i in range(pane.neighbour_box.count())
    ]
    assert len(texts) == 1 and "None close enough to mean anything" in texts[0]
    assert "50 % alike" in texts[0]


def test_the_language_models_text_is_shown_again_when_the_message_is_selected_again(
    qtbot: Any,
) -> None:
    """Issue 22 item 5: the answer disappeared when the message was selected again."""
    from dataclasses import replace

    first, other = _row(""), replace(_row(""), message_id="<m2@test>", content_hash="h2")
    pane = DetailPane()
    qtbot.addWidget(pane)
    pane.show_row(first)
    qtbot.mouseClick(pane.llm_button, Qt.MouseButton.LeftButton)
    assert pane.llm_text.text() == "Writing…"
    pane.append_rationale(first.key, "SpamGuard moved it to Junk. Its wording is like spam.")
    pane.rationale_done(first.key)
    pane.show_row(other)
    assert pane.llm_text.text() == ""
    pane.show_row(first)
    assert pane.llm_text.text() == "SpamGuard moved it to Junk. Its wording is like spam."
    # Once the message was moved back, that text no longer describes it: not shown.
    pane.show_row(replace(first, action="moved back"))
    assert pane.llm_text.text() == ""
