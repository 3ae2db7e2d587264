"""The Why pane lists the user's own labelled mail before the model's corpus, and says so."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spamguard_ui.detail import DetailPane

from spamguard.engine.session import MessageRow
from spamguard.learn.own_neighbours import OWN_REF_PREFIX
from spamguard.scoring.base import Evidence, Neighbour


def test_own_labelled_mail_is_listed_first_and_named_as_yours(qtbot: Any) -> None:
    row = MessageRow(
        account="work",
        message_id="<m1@test>",
        content_hash="h1",
        folder="INBOX",
        location="INBOX",
        uid=1,
        date=None,
        from_addr="sam@work.example",
        subject="Lunch this Friday",
        p_spam=0.1,
        verdict="ham",
        stage="stage1-head",
        model_version="v",
        action="",
        action_at=None,
        label="",
        evidence=(Evidence("text:lunch", -1.0, "'lunch' in the text"),),
    )
    corpus = Neighbour("ham", 0.91, "Re: lunch plans (corpus)", "easy_ham/0001")
    own = Neighbour("ham", 0.74, "Team lunch on Friday", OWN_REF_PREFIX + "abc")
    pane = DetailPane()
    qtbot.addWidget(pane)
    pane.show_row(replace(row, neighbours=(corpus, own)))
    texts = [
        pane.neighbour_box.itemAt(i).widget().text() for i in range(pane.neighbour_box.count())
    ]
    assert len(texts) == 2
    assert "Team lunch on Friday" in texts[0] and "not spam in your mail, 74 % alike" in texts[0]
    assert "lunch plans (corpus)" in texts[1] and "in your mail" not in texts[1]
