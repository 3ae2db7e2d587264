"""A short explanation of a score, streamed: from the local engine, or from the user's
remote server with the local model as fallback. Raw text: show users `llm.explain`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import replace

from spamguard.llm.engine import LLMSettings, shared_engine
from spamguard.llm.prompts import Outcome, load_prompt, mail_for_prompt, rationale_prompt_parts
from spamguard.message import Message
from spamguard.scoring.base import Score

__all__ = [
    "stream_rationale",
]

log = logging.getLogger(__name__)


_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


def stream_rationale(
    message: Message,
    score: Score,
    *,
    settings: LLMSettings | None = None,
    outcome: Outcome | None = None,
    facts: str = "",
) -> Iterator[str]:
    """Stream a 1–3 sentence explanation of ``score`` for ``message``, token by token.

    The filter's findings (verdict, evidence, neighbours) are given in the prompt and the
    mail is quoted between delimiters, truncated. The text is for the reader only: nothing
    here changes ``score`` or any action taken on the message. ``outcome`` is what was
    actually done (the default: what the default thresholds would do). This is the raw
    text: show users `spamguard.llm.explain.explain`, which checks it first.
    """
    settings = settings or LLMSettings()
    if settings.remote_url:
        yield from _remote_rationale(message, score, settings, outcome, facts)
        return
    engine = shared_engine(settings)
    prompt = engine.rationale_prompt
    mail = mail_for_prompt(message, max_chars=3000)
    before, after = rationale_prompt_parts(prompt, score, outcome, facts)
    sentences = 0
    text = ""
    for piece in engine.generate(
        before, mail, after, max_tokens=engine.settings.rationale_tokens, stop=prompt.stop
    ):
        if not text:
            piece = piece.lstrip()
            if not piece:
                continue
        text += piece
        yield piece
        sentences = len(_SENTENCE_END.findall(text))
        if sentences >= 3:
            return


def _remote_rationale(
    message: Message,
    score: Score,
    settings: LLMSettings,
    outcome: Outcome | None = None,
    facts: str = "",
) -> Iterator[str]:
    """The rationale from the remote server; the local model if it fails before answering."""
    import urllib.error

    from spamguard.llm.remote import stream_completion

    assert settings.remote_url is not None
    prompt = load_prompt("rationale-chatml")
    before, after = rationale_prompt_parts(prompt, score, outcome, facts)
    text = before + mail_for_prompt(message, max_chars=800) + after
    started = False
    try:
        for piece in stream_completion(
            settings.remote_url,
            text,
            max_tokens=settings.rationale_tokens,
            stop=prompt.stop,
            timeout=settings.remote_timeout,
        ):
            if not started:
                piece = piece.lstrip()
                if not piece:
                    continue
            started = True
            yield piece
    except (OSError, urllib.error.URLError, TimeoutError, ValueError) as exc:
        if started:
            return
        log.warning("remote LLM failed (%s); explaining with the local model", exc)
        yield from stream_rationale(
            message,
            score,
            settings=replace(settings, remote_url=None),
            outcome=outcome,
            facts=facts,
        )
