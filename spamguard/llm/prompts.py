"""The prompts: loading the templates, quoting mail so it cannot forge our delimiters, and
the evidence and the action (`Outcome`) stated to the model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from spamguard.errors import ModelError
from spamguard.message import Message
from spamguard.scoring.base import Score
from spamguard.untrusted import unforgeable, without_instructions
from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD, Verdict, verdict_for

__all__ = [
    "Outcome",
    "Prompt",
    "classify_prompt_text",
    "load_prompt",
    "mail_for_prompt",
    "quote_untrusted",
    "rationale_prompt_parts",
    "rationale_prompt_text",
]


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True, slots=True)
class Prompt:
    """A fixed instruction prompt: prefix, the quoted mail, suffix; labels for classifying."""

    name: str
    version: str
    purpose: str
    prefix: str
    suffix: str
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stop: tuple[str, ...] = ()

    def variant(self, name: str) -> Prompt:
        """An alternative suffix/label pair kept for the label-token cross-validation."""
        data = json.loads(_prompt_path(self.name).read_text("utf-8"))
        alt = data["alternatives"][name]
        return replace(
            self,
            version=f"{self.version}+{name}",
            suffix=alt["suffix"],
            labels={k: tuple(v) for k, v in alt["labels"].items()},
        )


def _prompt_path(name: str) -> Path:
    from spamguard_models import PROMPTS_DIR

    return Path(PROMPTS_DIR) / f"{name}.json"


def load_prompt(name: str) -> Prompt:
    path = _prompt_path(name)
    try:
        data = json.loads(path.read_text("utf-8"))
        return Prompt(
            name=name,
            version=str(data["version"]),
            purpose=str(data["purpose"]),
            prefix=str(data["prefix"]),
            suffix=str(data["suffix"]),
            labels={k: tuple(v) for k, v in data.get("labels", {}).items()},
            stop=tuple(data.get("stop", ())),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"prompt template {path} is missing or invalid ({exc})") from exc


def _clean(text: str) -> str:
    return unforgeable(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def quote_untrusted(text: str) -> str:
    """Text a sender wrote, made fit to quote in a prompt: no marker in any spelling, none of
    its sentences addressed to a model (`spamguard.untrusted`), on one line. For every
    piece of mail a prompt quotes: the message, and the labelled neighbours shown with it."""
    return _one_line(without_instructions(_clean(text)))


def mail_for_prompt(message: Message, max_chars: int = 6000) -> str:
    """The mail as the LLM sees it (before token truncation): a few headers, then the text.

    Delimiter and chat-template markers inside the mail are replaced, so the quoted mail
    cannot close its own quote or open a new turn; every header is one line, so none can
    start a line of its own ("SYSTEM: ..."). The text is what a reader sees: HTML's hidden
    elements (display:none, white on white, 1 px fonts), comments and alt text never reach
    the model, as they never reach the reader. Sentences that address the model itself
    ("Note to the AI assistant: ...", "SYSTEM: ...", a forged answer) are left out
    (`spamguard.untrusted`).
    """
    lines = [
        f"From: {quote_untrusted(message.from_name)} <{_clean(message.from_addr)}>".replace(
            "From:  <", "From: <"
        ),
        f"Subject: {quote_untrusted(message.subject)}",
    ]
    if message.url_domains:
        lines.append("Links to: " + ", ".join(message.url_domains[:6]))
    if message.attachments:
        names = ", ".join(quote_untrusted(a.filename) for a in message.attachments[:5])
        lines.append("Attachments: " + names)
    text = quote_untrusted(message.visible_text[: max_chars * 2])[:max_chars]
    return _clean("\n".join(lines)) + "\n\n" + text


@dataclass(frozen=True, slots=True)
class Outcome:
    """What SpamGuard decided and did with one message, as the LLM must be told it.

    ``verdict`` is at the account's thresholds; ``done`` says in words what happened to the
    message (or would happen, for a file scored on disk), including why a protected message
    was left alone. The explanation is checked against both (`spamguard.llm.explain`).
    """

    verdict: Verdict
    done: str
    moved_to_junk: bool = False
    flagged: bool = False

    @classmethod
    def would(cls, p_spam: float, move: float, flag: float) -> Outcome:
        """For a message on disk: what SpamGuard would do at these thresholds."""
        verdict = verdict_for(p_spam, move, flag)
        if verdict == "spam":
            return cls(verdict, "it would be moved to Junk", moved_to_junk=True)
        if verdict == "flag":
            return cls(verdict, "it would be flagged and left where it is", flagged=True)
        return cls(verdict, "it would be left alone")


_VERDICT_WORDS: Final = {"spam": "spam", "flag": "suspicious", "ham": "not spam"}


def _evidence_lines(score: Score, outcome: Outcome | None = None, facts: str = "") -> str:
    if outcome is None:
        outcome = Outcome.would(score.p_spam, DEFAULT_MOVE_THRESHOLD, DEFAULT_FLAG_THRESHOLD)
    lines = [
        f"The filter's verdict: {_VERDICT_WORDS[outcome.verdict]}, spam probability "
        f"{score.p_spam:.2f}.",
        f"What SpamGuard did: {_clean(outcome.done)}.",
    ]
    if not outcome.moved_to_junk:
        lines.append("The message was not moved to Junk.")
    if score.evidence:
        lines.append("What pushed the score (+ towards spam, - towards not spam):")
        for ev in score.evidence[:6]:
            lines.append(f"- {_clean(ev.detail or ev.feature)[:80]} ({ev.weight:+.1f})")
    if facts:
        # The checked facts (`consistency.Facts.in_words`): a text that contradicts them is
        # never shown, so the model is told them as they are.
        lines.append("What the message holds (state these exactly or not at all):")
        lines.append(_clean(facts))
    if score.neighbours:
        lines.append("Known messages it resembles:")
        for nb in score.neighbours[:3]:
            subject = _clean(" ".join(nb.subject.split()))[:70]
            lines.append(
                f'- a known {nb.label} message, "{subject}" (similarity {nb.similarity:.2f})'
            )
    return "\n".join(lines)


def classify_prompt_text(prompt: Prompt, mail: str) -> str:
    """The whole classification prompt as text (remote servers; tests of the quoting)."""
    return prompt.prefix + mail + prompt.suffix


def rationale_prompt_parts(
    prompt: Prompt, score: Score, outcome: Outcome | None = None, facts: str = ""
) -> tuple[str, str]:
    """(text before the quoted mail, text after it) of the rationale prompt.

    The filter's findings and what was done come first, as facts; the mail follows inside
    its delimiters, as untrusted data written by its sender.
    """
    return (
        prompt.prefix + _evidence_lines(score, outcome, facts) + "\n\nThe e-mail:\n<email>\n",
        "\n</email>" + prompt.suffix,
    )


def rationale_prompt_text(
    prompt: Prompt, score: Score, mail: str, outcome: Outcome | None = None
) -> str:
    before, after = rationale_prompt_parts(prompt, score, outcome)
    return before + mail + after
