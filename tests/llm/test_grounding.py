"""The grounding rule of the explanation checker (`consistency.ungrounded_names`, applied by
`explain.judged_explanation`): a text that names a person, organisation, place, product, web
domain or address the message does not contain is withheld; grounded names, capitals at the
start of a sentence and SpamGuard's own words are not. Texts written for it, on a real parsed
message."""

from __future__ import annotations

import pytest

from spamguard.llm.consistency import grounding_source, ungrounded_names
from spamguard.llm.explain import WITHHELD_NOTE, judged_explanation, outcome_facts
from spamguard.llm.prompts import Outcome
from spamguard.message import parse_message
from spamguard.scoring.base import Evidence, Score

MAIL = (
    b"From: Ines Carvalho <billing@greenway-energy.example>\r\n"
    b"To: you@example.org\r\n"
    b"Subject: Your Greenway Energy bill for November\r\n"
    b"Date: Tue, 03 Nov 2026 09:12:00 +0000\r\n"
    b"Message-ID: <bill-1@greenway-energy.example>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Hello, your bill from Greenway Energy is ready. Pay it at "
    b"https://pay.greenway-energy.example/bill before Friday. Questions? Write to "
    b"help@greenway-energy.example.\r\n"
)
FLAGGED = Outcome("flag", "flagged it and left it where it was", flagged=True)
SCORE = Score(0.62, "head", "h", (Evidence("signal:auth_pass", -0.8, "x"),))


@pytest.fixture(scope="module")
def source() -> str:
    return grounding_source(parse_message(MAIL))


@pytest.mark.parametrize(
    ("text", "invented"),
    [
        ("The sender hides behind a VPN in Moscow.", "VPN"),
        ("It was sent for the Greenway Energy Trust by Sergei Ivanov.", "Greenway Energy Trust"),
        ("The bill pretends to come from British Gas.", "British Gas"),
        ("It wants you to pay through paypal-secure.example instead.", "paypal-secure.example"),
        ("Replies go to refunds@greenway-billing.example, not the sender.", "refunds@"),
        ("The mail was written on Saturday.", "Saturday"),
        ("Its links resemble those of the Amazon phishing wave.", "Amazon"),
        ("The Moscow office sent it.", "Moscow"),
    ],
)
def test_a_name_the_message_does_not_contain_is_found(
    source: str, text: str, invented: str
) -> None:
    found = ungrounded_names(text, source)
    assert found and found[0].startswith(invented)


@pytest.mark.parametrize(
    "text",
    [
        # names of the message, whatever their case or possessive
        "Ines Carvalho of Greenway Energy sent a bill for November.",
        "The link goes to pay.greenway-energy.example, Greenway energy's own domain.",
        "It asks you to write to help@greenway-energy.example with questions.",
        "It is due on Friday; the date is Tuesday, 3 November.",
        # capitals at the start of a sentence, after a colon or a quotation mark
        'Nothing failed. Everything passed: Both links stay on one site. "Pay it" it says.',
        # SpamGuard's own words
        "SpamGuard flagged it and left it in the Inbox, not in Junk. SPF, DKIM and DMARC "
        "passed; it is not HTML. I would not call it Spam.",
    ],
)
def test_grounded_names_sentence_starts_and_own_words_are_kept(source: str, text: str) -> None:
    assert ungrounded_names(text, source) == []


def test_a_month_or_weekday_counts_only_when_the_message_has_it(source: str) -> None:
    # The Date header says "Tue" and the text "Friday" and "November"; nothing says March.
    assert ungrounded_names("It came on Tuesday, before Friday.", source) == []
    assert ungrounded_names("It came in March.", source) == ["March"]


def test_a_text_naming_an_invented_thing_is_withheld_with_the_reason() -> None:
    msg = parse_message(MAIL)
    facts = outcome_facts(msg, FLAGGED, known_sender=False)
    invented = judged_explanation(
        "SpamGuard flagged it. The sender uses a VPN in Moscow to hide.", msg, SCORE, FLAGGED, facts
    )
    assert not invented.from_llm
    assert invented.problems == ("it names something that is not in the message ('VPN')",)
    assert invented.text.startswith(
        WITHHELD_NOTE.format(why="it names something that is not in the message")
    )
    assert "Moscow" not in invented.text  # the note does not repeat the invention


def test_a_grounded_text_is_shown() -> None:
    msg = parse_message(MAIL)
    facts = outcome_facts(msg, FLAGGED, known_sender=False)
    text = (
        "SpamGuard flagged the bill from Greenway Energy and left it where it was. Its "
        "link goes to greenway-energy.example."
    )
    shown = judged_explanation(text, msg, SCORE, FLAGGED, facts)
    assert shown.problems == ()
    assert shown.from_llm and shown.text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("An AI-based scheme sent it.", []),  # the capital part is the name
        ("Greenway-Energy's bill, 987-L and item B.", []),  # possessive, a code, one letter
        ("It came from Houten-Greenway.", ["Houten-Greenway"]),
        ("The Oakridge Energy bill.", ["Oakridge Energy"]),  # one word of the run invented
    ],
)
def test_compound_possessive_and_one_letter_words(
    source: str, text: str, expected: list[str]
) -> None:
    assert ungrounded_names(text, source) == expected
