"""The evidence checker of LLM explanations (`spamguard.llm.consistency`), on texts written
for it: each kind of contradiction it must catch, and negations and paraphrases it must not
flag. The facts come from real parsed messages where the parser is the point."""

from __future__ import annotations

import pytest

from spamguard.llm.consistency import (
    Facts,
    contradictions,
    facts_for,
    finish_sentences,
    link_text_mismatches,
)
from spamguard.llm.explain import WITHHELD_NOTE, Explanation
from spamguard.llm.prompts import Outcome
from spamguard.message import parse_message
from spamguard.scoring.base import Evidence, Score

# A bank statement: DKIM, SPF and DMARC passed, two links to the bank's own site, one PDF,
# flagged and left where it was, from someone never written to.
STATEMENT = Facts(
    flagged=True,
    spf="pass",
    dkim="pass",
    dmarc="pass",
    links=2,
    link_domains=("mybank.example",),
    mismatched_links=0,
    offsite_links=0,
    domain_consistent=True,
    attachments=("statement-2026-11.pdf",),
    known_sender=False,
)
# A phish: DMARC failed, SPF softfail, no DKIM; three links through bit.ly and to another
# site, one of them showing the bank's address; a zip attachment; moved to Junk.
PHISH = Facts(
    moved_to_junk=True,
    spf="softfail",
    dmarc="fail",
    links=3,
    link_domains=("bit.ly", "login-check.example"),
    shorteners=("bit.ly",),
    mismatched_links=1,
    offsite_links=2,
    attachments=("invoice.zip",),
    known_sender=False,
)
# A friend's note: no authentication results recorded, no links, no attachments, left alone,
# a known correspondent.
NOTE = Facts(known_sender=True)
ALLOWED = Facts(allow_listed=True, links=1, link_domains=("shop.example",), offsite_links=1)


@pytest.mark.parametrize(
    ("text", "facts", "kind"),
    [
        # authentication
        ("The sender's authentication was compromised, so it is suspicious.", STATEMENT, "auth"),
        ("The message failed DKIM checks.", STATEMENT, "authentication"),
        ("SPF failed for the sending server.", STATEMENT, "authentication"),
        ("It did not pass authentication.", STATEMENT, "authentication"),
        ("The sender's domain passed authentication.", PHISH, "authentication"),
        ("DMARC passed, which is a good sign.", PHISH, "authentication"),
        ("Its DKIM signature is valid.", PHISH, "authentication"),
        ("The message is properly authenticated.", NOTE, "authentication"),
        ("The sender was spoofed.", STATEMENT, "authentication"),
        ("DKIM passed but SPF failed.", STATEMENT, "authentication"),
        ("Authentication did not fail.", PHISH, "authentication"),
        # links
        ("The message contains no links.", STATEMENT, "links"),
        ("It does not have any links to click.", PHISH, "links"),
        ("It has five links to unknown sites.", PHISH, "links"),
        ("Its links point to suspicious sites.", NOTE, "links"),
        ("There is a single link in the message.", PHISH, "links"),
        ("It uses a URL shortener to hide its destination.", STATEMENT, "links"),
        ("None of its links are shortened links.", PHISH, "links"),
        ("The link text is disguised as the bank's address.", STATEMENT, "links"),
        ("Its links are not misleading.", PHISH, "links"),
        ("Its links go to a different domain than the sender's.", STATEMENT, "links"),
        ("The links match the sender's domain.", PHISH, "links"),
        ("It has several links.", Facts(links=1, link_domains=("a.example",)), "links"),
        # sender
        ("The sender is a known contact of yours.", PHISH, "sender"),
        ("You have written to this sender before.", STATEMENT, "sender"),
        ("It comes from an unknown sender.", NOTE, "sender"),
        ("You have never written to this person.", NOTE, "sender"),
        ("The sender is not someone you know.", NOTE, "sender"),
        ("It is from a known sender.", Facts(), "sender"),
        # attachments
        ("It has an attachment that may be dangerous.", NOTE, "attachments"),
        ("The message has no attachments.", STATEMENT, "attachments"),
        ("It carries an executable attachment.", STATEMENT, "attachments"),
        ("There is no zip attachment.", PHISH, "attachments"),
        ("The attached file is a PDF invoice.", PHISH, "attachments"),
        # the action
        ("SpamGuard moved it to Junk.", STATEMENT, "action"),
        ("It was sent to your spam folder.", NOTE, "action"),
        ("SpamGuard left it in your Inbox.", PHISH, "action"),
        ("It was not moved to Junk.", PHISH, "action"),
        ("SpamGuard flagged it for your attention.", NOTE, "action"),
        ("It was not flagged.", STATEMENT, "action"),
        ("The sender is on your allow list.", STATEMENT, "action"),
        ("The sender is not on your allow list.", ALLOWED, "action"),
        ("The message is no longer on the server.", STATEMENT, "action"),
        ("SpamGuard deleted it.", PHISH, "action"),
        ("The message was deleted from your mailbox.", PHISH, "action"),
        ("It removed the spam from your mailbox.", PHISH, "action"),
        ("Instead, it pushed the message to Junk.", STATEMENT, "action"),
        ("The email has been moved from Junk into your inbox.", PHISH, "action"),
        ("Its SPF and DKIM checks were rejected.", STATEMENT, "authentication"),
        ("The filter did not reach the threshold of spam.", PHISH, "action"),
        # negations shared by two things
        ("It has no attachments or links.", STATEMENT, "links"),
        ("The message held no links or attachments.", PHISH, "links"),
        ("It has neither links nor attachments.", STATEMENT, "links"),
        ("It has neither links nor attachments.", Facts(attachments=("a.pdf",)), "attach"),
        ("It has two links and no attachments.", STATEMENT, "attachments"),
    ],
)
def test_each_kind_of_contradiction_is_caught(text: str, facts: Facts, kind: str) -> None:
    found = contradictions(text, facts)
    assert found, f"not caught: {text!r}"
    assert found[0].kind.startswith(kind[:4])


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        # what the deterministic summary itself says
        ("The sender's domain passed authentication. It is mostly HTML.", STATEMENT),
        ("The sender's domain failed authentication.", PHISH),
        # authentication, said right, negated right, reported as the mail's story
        ("DKIM, SPF and DMARC all passed, yet the wording resembles spam.", STATEMENT),
        ("Authentication did not fail.", STATEMENT),
        ("DMARC failed and SPF soft-failed.", PHISH),
        ("The sender did not pass authentication.", PHISH),
        ("It was not authenticated.", PHISH),
        ("It claims to be verified by your bank, but DMARC failed.", PHISH),
        ("Nothing says whether the sender is authenticated.", NOTE),
        # links
        ("It has no links.", NOTE),
        ("Its two links go to the bank's own site.", STATEMENT),
        ("It has three links, one through bit.ly.", PHISH),
        ("It links to two domains.", PHISH),
        ("There are no suspicious links.", STATEMENT),
        ("None of its links goes through a shortener.", STATEMENT),
        ("One of the links is shortened.", PHISH),
        ("Its links lead to other sites than the sender's.", PHISH),
        ("A link shows the bank's address but goes somewhere else.", PHISH),
        ("It has several links to other websites.", PHISH),
        ("If it had links, they would be checked.", NOTE),
        # sender
        ("You have written to this sender before.", NOTE),
        ("The sender is new to you.", PHISH),
        ("It comes from an unknown sender.", PHISH),
        ("The sender is not a known contact.", STATEMENT),
        ("It pretends to come from a known contact.", PHISH),
        # attachments
        ("It has a zip attachment.", PHISH),
        ("It carries no attachments.", NOTE),
        ("The attached PDF is a statement.", STATEMENT),
        ("There is no executable attachment.", PHISH),
        # the action, in several words
        ("SpamGuard moved it to your Junk folder.", PHISH),
        ("It now sits in Junk.", PHISH),
        ("It was flagged and left where it was.", STATEMENT),
        ("SpamGuard left it in your Inbox.", NOTE),
        ("It was not moved to Junk.", STATEMENT),
        ("It would have been moved to Junk, but the sender is on your allow list.", ALLOWED),
        ("SpamGuard did not delete anything.", PHISH),
        ("Without the sender on your allow list it would be in Junk.", ALLOWED),
        ("The message was not flagged.", NOTE),
        # negations shared by two things, both true
        ("The message held no links or attachments.", NOTE),
        ("It has no attachments or links to other devices.", NOTE),
        ("It has neither links nor attachments.", NOTE),
        ("It has two links and no attachments.", Facts(links=2, link_domains=("a.example",))),
        # what SpamGuard never does, said of something else
        ("An editor had deleted a paragraph before it was sent.", NOTE),
        ("It was not removed from your mailbox.", STATEMENT),
        ("It was moved from your Inbox to Junk.", PHISH),
        ("It was not moved out of Junk.", PHISH),
        ("Its SPF/DKIM checks were rejected.", PHISH),  # SPF soft-failed
        ("It did not reach the threshold of spam, so it was flagged.", STATEMENT),
        # no claim at all
        ("It resembles earlier spam in its wording.", NOTE),
        ("SpamGuard rated it 62 % likely to be spam.", STATEMENT),
    ],
)
def test_faithful_texts_negations_and_paraphrases_pass(text: str, facts: Facts) -> None:
    assert contradictions(text, facts) == []


def test_several_contradictions_in_one_text_are_all_listed() -> None:
    text = (
        "The sender's authentication was compromised. It contains no links and SpamGuard "
        "moved it to Junk."
    )
    kinds = [c.kind for c in contradictions(text, STATEMENT)]
    assert kinds == ["authentication", "links", "action"]
    assert "DKIM pass" in str(contradictions(text, STATEMENT)[0])


MAIL = (
    b"From: Bank <alerts@mybank.example>\r\nTo: you@example.org\r\nSubject: Statement\r\n"
    b"Message-ID: <s1@mybank.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p>See <a href="https://evil.example/login">www.mybank.example</a> and '
    b'<a href="https://mybank.example/help">https://mybank.example/help</a> or '
    b'<a href="https://bit.ly/x">click here</a>.</p>\r\n--b\r\n'
    b'Content-Type: application/zip; name="invoice.zip"\r\n'
    b'Content-Disposition: attachment; filename="invoice.zip"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n--b--\r\n"
)


def test_facts_of_a_parsed_message() -> None:
    msg = parse_message(MAIL)
    facts = facts_for(msg, moved_to_junk=True, flagged=False, raw=MAIL)
    # Three anchors, and the address written in the first one's text: a link to a reader too.
    assert facts.links == 4
    assert set(facts.link_domains) == {"evil.example", "mybank.example", "bit.ly"}
    assert facts.shorteners == ("bit.ly",)
    assert facts.offsite_links == 2
    assert facts.mismatched_links == 1  # the text says mybank.example, the link goes to evil
    assert facts.attachments == ("invoice.zip",)
    assert facts.auth_results() == {}  # no trusted Authentication-Results
    assert contradictions("A link's text names the bank but it is disguised.", facts) == []
    assert contradictions("It has no attachments.", facts)
    # Without the raw bytes the mismatch is unknown and no claim about it is judged.
    unknown = facts_for(msg, moved_to_junk=True, flagged=False)
    assert unknown.mismatched_links is None
    assert contradictions("Its links are disguised.", unknown) == []
    assert link_text_mismatches(b"not a mail at all") == 0


def test_facts_in_words_state_what_the_model_may_say() -> None:
    words = STATEMENT.in_words()
    assert "The sender's domain passed authentication (DKIM and DMARC and SPF)." in words
    assert "It has 2 links, to mybank.example." in words
    assert "It has one attachment: statement-2026-11.pdf." in words
    assert "shortener" not in words and "written to" not in words
    assert NOTE.in_words() == "It has no links.\nYou have written to this sender before."
    phish = PHISH.in_words()
    assert "failed authentication (DMARC and SPF)" in phish
    assert "A link goes through the link shortener bit.ly." in phish
    assert "A link's text shows another web address than the one it opens." in phish
    # The words the facts are given in are themselves consistent with the facts.
    for facts in (STATEMENT, PHISH, NOTE, ALLOWED):
        assert contradictions(facts.in_words(), facts) == []


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("It was moved. It was not only spam but also an attempt by", "It was moved."),
        ("It is spam! Really? Yes it", "It is spam! Really?"),
        ("It scored 0.95 and was moved to Junk", ""),
        ("It scored 0.95. It was moved to Junk. The", "It scored 0.95. It was moved to Junk."),
        ("Words such as e.g. prize appear. Then", "Words such as e.g. prize appear."),
        ('It says "act now." Then it', 'It says "act now."'),
        ("  Complete sentence.  ", "Complete sentence."),
        ("", ""),
    ],
)
def test_sentences_are_finished_never_cut_mid_word(text: str, finished: str) -> None:
    assert finish_sentences(text) == finished


# ------------------------------------------------------- the gate in front of what users read
# The model's text is replaced by written texts here: the test is about what is done with a
# text, not about the model (the benchmark and the llm-marked tests run the real one).


def _explained(
    monkeypatch: pytest.MonkeyPatch, written: str, facts: Facts, outcome: Outcome
) -> Explanation:
    from spamguard.llm import explain as explain_module

    monkeypatch.setattr(explain_module, "stream_rationale", lambda *a, **k: iter([written]))
    score = Score(0.62, "head", "h", (Evidence("signal:auth_pass", -0.8, "x"),))
    return explain_module.checked_explanation(parse_message(MAIL), score, outcome, facts=facts)


def test_a_contradicting_text_is_withheld_and_the_summary_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flagged = Outcome("flag", "flagged it and left it where it was", flagged=True)
    result = _explained(
        monkeypatch,
        "The sender's authentication was compromised. The filter flagged it for you.",
        STATEMENT,
        flagged,
    )
    assert not result.from_llm
    assert result.text.startswith(WITHHELD_NOTE.split(":")[0])
    assert "contradicted the evidence" in result.text
    assert "compromised" not in result.text  # the note does not repeat the claim
    assert [c.kind for c in result.contradictions] == ["authentication"]
    assert contradictions(result.text, STATEMENT) == []  # the summary says nothing false


def test_a_faithful_text_is_shown_with_its_sentences_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flagged = Outcome("flag", "flagged it and left it where it was", flagged=True)
    result = _explained(
        monkeypatch,
        "DKIM, SPF and DMARC passed, but the wording resembles spam. SpamGuard flagged it "
        "and left it where it was. It was not only spam but also an attem",
        STATEMENT,
        flagged,
    )
    assert result.from_llm
    assert result.text == (
        "DKIM, SPF and DMARC passed, but the wording resembles spam. SpamGuard flagged it "
        "and left it where it was."
    )
    assert result.raw.endswith("an attem")


def test_a_text_without_one_finished_sentence_is_withheld(monkeypatch: pytest.MonkeyPatch) -> None:
    moved = Outcome("spam", "moved it to Junk", moved_to_junk=True)
    result = _explained(monkeypatch, "The filter moved it to Junk because the", PHISH, moved)
    assert not result.from_llm
    assert result.problems[0] == "it did not finish a sentence"
