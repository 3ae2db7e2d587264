"""The reasons people read: plain sentences from the shipped model's real evidence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spamguard.llm.explain import (
    NEIGHBOUR_MIN_SIMILARITY,
    check_explanation,
    evidence_summary,
    meaningful_neighbours,
    plain_reasons,
)
from spamguard.llm.prompts import Outcome
from spamguard.message import parse_message
from spamguard.scoring.base import Evidence, Neighbour, Score
from spamguard.scoring.model import load_scorer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MESSAGES = [
    FIXTURES / "mail" / "html_only.eml",
    FIXTURES / "mail" / "mbox_from_line.eml",
    FIXTURES / "mail" / "undeclared_boundary.eml",
    FIXTURES / "corpus" / "spam-a" / "00001.eml",
    FIXTURES / "corpus" / "spam-a" / "00005.eml",
    FIXTURES / "corpus" / "ham-a" / "00001.eml",
]
# What the app showed before: raw terms and block names.
RAW = re.compile(
    r"'[^']*' in the (?:text|subject)|letter patterns|all together|overall meaning|"
    r"in the [\w-]+ header"
)


@pytest.fixture(scope="module")
def scores() -> dict[str, Score]:
    scorer = load_scorer()  # the shipped default model, with its encoder
    got = scorer.score([parse_message(p.read_bytes()) for p in MESSAGES])
    return {
        p.name if p.parent.name == "mail" else f"{p.parent.name}/{p.name}": s
        for p, s in zip(MESSAGES, got, strict=True)
    }


def test_every_reason_is_a_plain_sentence(scores: dict[str, Score]) -> None:
    for name, score in scores.items():
        assert score.evidence, name
        reasons = plain_reasons(score.evidence)
        assert reasons, name
        assert len(reasons) <= 5
        for r in reasons:
            assert r.sentence[:1].isupper() and r.sentence.endswith("."), (name, r)
            assert not RAW.search(r.sentence), (name, r.sentence)
            assert not RAW.search(r.label), (name, r.label)
        weights = [abs(r.weight) for r in reasons]
        assert weights == sorted(weights, reverse=True)


def test_wording_terms_become_one_sentence(scores: dict[str, Score]) -> None:
    score = scores["spam-a/00005.eml"]
    terms = [
        e for e in score.evidence if e.feature.startswith(("text:", "h:")) or e.feature == "chars"
    ]
    assert len(terms) >= 2  # several raw terms in the evidence ...
    wording = [r for r in plain_reasons(score.evidence) if r.label == "Wording"]
    assert len(wording) == 1  # ... one sentence about them
    assert wording[0].sentence.startswith("It resembles earlier spam in its wording")
    assert wording[0].weight == pytest.approx(sum(e.weight for e in terms))
    # Common words are never quoted as if they were telling.
    assert "'your'" not in wording[0].sentence and "'the'" not in wording[0].sentence


def test_html_only_mail_is_said_to_be_html(scores: dict[str, Score]) -> None:
    sentences = [r.sentence for r in plain_reasons(scores["html_only.eml"].evidence)]
    assert "It is mostly HTML." in sentences


def test_authentication_is_one_sentence() -> None:
    evidence = (
        Evidence("sender:dkim_pass", -0.8, "a DKIM signature verified"),
        Evidence("sender:dmarc_pass", -0.6, "the sender's domain policy (DMARC) passed"),
        Evidence("text:prize", 1.0, "'prize' in the text"),
    )
    reasons = plain_reasons(evidence)
    assert [r.sentence for r in reasons] == [
        "The sender's domain passed authentication.",
        "It resembles earlier spam in its wording (words such as 'prize').",
    ]
    assert reasons[0].weight == pytest.approx(-1.4)


def test_summary_passes_its_own_check_for_each_verdict(scores: dict[str, Score]) -> None:
    for score in scores.values():
        outcome = Outcome.would(score.p_spam, 0.9, 0.5)
        summary = evidence_summary(score, outcome)
        assert not RAW.search(summary)
        assert check_explanation(summary, outcome) == []


def test_only_meaningful_neighbours_are_kept() -> None:
    near = (
        Neighbour("ham", 0.39, "Re: Pics and thanks", "a"),
        Neighbour("spam", 0.72, "Lose weight now", "b"),
        Neighbour("spam", NEIGHBOUR_MIN_SIMILARITY, "Cheap meds", "c"),
    )
    assert [n.ref for n in meaningful_neighbours(near)] == ["b", "c"]
    score = Score(0.95, "head", "v", (), near[:1])
    assert "Pics" not in evidence_summary(score, Outcome.would(0.95, 0.9, 0.5))
    score = Score(0.95, "head", "v", (), near)
    assert '"Lose weight now"' in evidence_summary(score, Outcome.would(0.95, 0.9, 0.5))
