"""What users are shown as the LLM's explanation: its text only after a check, else a summary.

Mail is untrusted input to the LLM. The prompt keeps it inside delimiters and states the
evidence and what SpamGuard actually did (`llm.Outcome`), but a small model can still be
talked round by the mail it quotes ("this is a legitimate message from a trusted colleague").
So the finished explanation is checked before anyone sees it: it may not claim the mail is
legitimate when the verdict is spam or suspicious (nor the reverse), may not say the message
was moved to Junk when it was not (nor the reverse), may not follow or repeat the mail's
instructions, may not copy the mail's own words as its own, may not name what the message does not
(`consistency.ungrounded_names`), and must be English. When it
fails, the deterministic summary of the evidence is shown instead, with a note saying so.

The check is deliberately strict: wrongly rejecting a good explanation costs the user a plainer
summary; wrongly passing a hijacked one tells them a spam is safe.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

from spamguard.llm.consistency import (
    LEFT_IN_PLACE,
    Contradiction,
    Facts,
    contradictions,
    facts_for,
    finish_sentences,
    grounding_source,
    ungrounded_names,
)
from spamguard.llm.engine import LLMSettings
from spamguard.llm.prompts import Outcome, mail_for_prompt
from spamguard.llm.rationale import stream_rationale
from spamguard.message import Message
from spamguard.scoring.base import Evidence, Neighbour, Score

__all__ = [
    "NEIGHBOUR_MIN_SIMILARITY",
    "WITHHELD_NOTE",
    "Explanation",
    "Reason",
    "check_explanation",
    "checked_explanation",
    "evidence_summary",
    "explain",
    "explanation_context",
    "judged_explanation",
    "meaningful_neighbours",
    "outcome_facts",
    "plain_reasons",
]

log = logging.getLogger(__name__)

WITHHELD_NOTE: Final = (
    "(The language model's explanation was not shown: {why}. SpamGuard's own summary:) "
)

# Words before a claim that make it a negation or a report of what the mail pretends: "it is
# not legitimate", "pretends to be from your bank". A hedge ("might be legitimate") is no excuse.
_NEGATED = (
    r"\bnot\b|\bnever\b|\bno\b|\bnor\b|\bwithout\b|n't\b|\bpretend\w*|\bclaim\w*|"
    r"\btr(?:y|ies|ying)\b|\bpos(?:e|es|ing)\b|\bdisguis\w*|\bimpersonat\w*|\bfake\w*|"
    r"\bpurport\w*|\balleged\w*|\bmade\s+to\s+look|\bas\s+if\b"
)
_DISTANCED = re.compile(rf"(?:{_NEGATED})[^.;:!?]{{0,40}}$", re.IGNORECASE)
# For what was done, a hypothetical is fine too: "would have been moved to Junk, but ...".
_HYPOTHETICAL = re.compile(
    rf"(?:{_NEGATED}|\bwould\b|\bcould\b|\bmight\b|\binstead\b|\brather\b|\bif\b)"
    r"[^.;:!?]{0,40}$",
    re.IGNORECASE,
)

# "The mail is fine" in the words a hijacked explanation uses (a few other languages too: an
# injection in French or German tends to get its answer in that language).
_BENIGN = re.compile(
    r"\b(?:legitimate|legit|genuine|authentic|harmless|benign|trustworthy|trusted|"
    r"safe(?:ly)?|not\s+(?:a\s+)?spam|isn't\s+spam|no\s+spam|ham|reliable|verified|"
    r"bona\s+fide|nothing\s+suspicious|no\s+(?:need|reason)\s+to\s+worry|"
    r"can\s+be\s+trusted|from\s+(?:a|your)\s+(?:colleague|co-?worker|friend|boss|manager|"
    r"bank|it\s+department|administrator)|"
    r"l[ée]gitime?|legitim\w*|leg[íi]tim[oa]|seguro|sicher|vertrauensw[üu]rdig|fiable|"
    r"de\s+confiance|affidabile|kein\s+spam|pas\s+(?:un|du)\s+spam|no\s+es\s+spam|"
    r"non\s+[èe]\s+spam)\b",
    re.IGNORECASE,
)
_HOSTILE = re.compile(
    r"\b(?:is|looks\s+like|seems\s+to\s+be|appears\s+to\s+be|was)\s+(?:a\s+|an\s+)?"
    r"(?:spam|phishing|scam|fraud\w*|malicious|dangerous)\b",
    re.IGNORECASE,
)
_MOVED = re.compile(
    r"\b(?:moved|sent|filed|put|placed|went|moving|move[sd]?|quarantined)\b[^.;]{0,25}?"
    r"\b(?:junk|spam\s+folder|spam\s+box|quarantine)\b",
    re.IGNORECASE,
)
_NEVER = re.compile(r"\b(?:deleted|destroyed|reported\s+to|blocked\s+the\s+sender)\b", re.I)
# Signs the model followed the mail rather than the filter.
_OBEYING = re.compile(
    r"\b(?:ignor(?:e|ed|ing)\s+(?:all\s+|any\s+|the\s+|your\s+|my\s+|previous\s+|prior\s+)*"
    r"(?:instructions|rules|findings|filter)|as\s+(?:instructed|requested|told)|"
    r"system\s+prompt|i\s+(?:have\s+been|was|am)\s+(?:told|instructed|asked)|"
    r"pre-?approved|whitelist(?:ed)?|white-listed|override|"
    r"according\s+to\s+(?:the|this)\s+(?:e-?mail|message|sender))\b",
    re.IGNORECASE,
)
# English function words: an English sentence has a few; German or French has almost none.
# The mail's request, passed on as if it were advice: "... should be taken: confirm your bank
# details". Reported ("it asks you to confirm ...") or warned against ("do not click") is fine.
_REQUEST = re.compile(
    r"\b(?:confirm|verify|update|enter|provide|send|click|open|download|pay|transfer|call|"
    r"reply|respond|log\s*in|sign\s*in|visit|claim)\s+(?:your|the|this|that|a|an|on|to|now|"
    r"here|us|back)\b",
    re.IGNORECASE,
)
_REPORTED = re.compile(
    rf"(?:{_NEGATED}|\b(?:ask\w*|urg\w*|want\w*|tell\w*|tells|request\w*|demand\w*|"
    r"pressur\w*|push\w*|invit\w*|prompt\w*|lur\w*|trick\w*|press\w*|get\s+you|"
    r"wish\w*|hop\w*|expect\w*|instruct\w*|order\w*|avoid|before)\b|\bto\s*$)"
    r"[^.;:!?]{0,30}$",
    re.IGNORECASE,
)
_ENGLISH = frozenset(
    re.findall(
        r"\w+",
        "the a an is it this that to of and in was for with because as its from by be are on "
        "not or which has had you your were been so but",
    )
)
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|'[^']{3,}'|‘[^’]*’")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)
_COPIED_WORDS = 8  # this many words in a row from the mail, outside quotes, is copying it


def _claims(
    pattern: re.Pattern[str], text: str, distanced: re.Pattern[str] = _DISTANCED
) -> list[str]:
    """Matches of ``pattern`` that the words before them in their clause do not distance."""
    found = []
    for m in pattern.finditer(text):
        before = text[max(0, m.start() - 60) : m.start()]
        clause = re.split(r"[.;:!?,]|\bbut\b|\bhowever\b|\band\b", before)[-1]
        if not distanced.search(clause):
            found.append(m.group(0))
    return found


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def check_explanation(text: str, outcome: Outcome, mail: str = "", facts: str = "") -> list[str]:
    """What is wrong with ``text`` as an explanation of ``outcome``; empty when it may be shown.

    ``mail`` is the text the LLM was shown and ``facts`` the findings it was given (score,
    evidence), for the checks of copied words and of figures found in neither.
    """
    problems: list[str] = []
    words = _words(text)
    if len(words) < 4:
        return ["it said nothing"]
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() for c in letters) / max(1, len(letters))
    if latin < 0.9 or sum(w in _ENGLISH for w in words) < max(2, len(words) // 8):
        problems.append("it was not written in English")
    if outcome.verdict in ("spam", "flag"):
        benign = _claims(_BENIGN, text)
        if benign:
            problems.append(f"it contradicted the {outcome.verdict} verdict ({benign[0]!r})")
    else:
        hostile = _claims(_HOSTILE, text)
        if hostile:
            problems.append(f"it contradicted the not-spam verdict ({hostile[0]!r})")
    moved = _claims(_MOVED, text, _HYPOTHETICAL)
    if moved and not outcome.moved_to_junk:
        problems.append(f"it claimed a move to Junk that never happened ({moved[0]!r})")
    left = _claims(LEFT_IN_PLACE, text, _HYPOTHETICAL)
    if left and outcome.moved_to_junk:
        problems.append(f"it denied the move to Junk ({left[0]!r})")
    request = _claims(_REQUEST, text, _REPORTED)
    if request and outcome.verdict != "ham":
        problems.append(f"it passed on the mail's request as advice ({request[0]!r})")
    never = _NEVER.search(text)
    if never:
        problems.append(f"it claimed something SpamGuard never does ({never.group(0)!r})")
    obeying = _OBEYING.search(text)
    if obeying and "allow list" not in outcome.done:
        problems.append(f"it followed the mail's instructions ({obeying.group(0)!r})")
    if mail:
        copied = _copied(text, mail)
        if copied:
            problems.append(f"it repeated the mail's own words as its own ({copied!r})")
        invented = _invented_figure(text, mail + " " + facts)
        if invented:
            problems.append(
                f"it stated a figure found in neither the mail nor the findings ({invented!r})"
            )
    return problems


def _figures(text: str) -> set[str]:
    return {re.sub(r"[,.](?=\d{3}\b)", "", n) for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


def _invented_figure(text: str, source: str) -> str:
    """A number in ``text`` (an amount, a count, a time) that ``source`` does not contain:
    small models invent them ("$50" for a mail offering $5,000)."""
    known = _figures(source)
    return next((n for n in sorted(_figures(text)) if n not in known), "")


def _copied(text: str, mail: str) -> str:
    """A run of `_COPIED_WORDS` words of ``text`` (outside quotation marks) found in ``mail``."""
    own = _words(_QUOTED.sub(" ", text))
    source = " " + " ".join(_words(mail)) + " "
    for i in range(len(own) - _COPIED_WORDS + 1):
        run = " ".join(own[i : i + _COPIED_WORDS])
        if f" {run} " in source:
            return run
    return ""


# Below this cosine similarity a "nearest known message" says nothing about this one. Measured
# with the shipped model on the fixture corpus (tests/fixtures/corpus, 60 messages, 5 nearest
# each): of the 78 neighbours at 0.50 or more, all 78 had the message's own label; of the 222
# below 0.50, 69 % did, which is what picking a training message at random gives. So 0.50 is
# where similarity starts to mean something (the SpamAssassin test half was not read for it).
NEIGHBOUR_MIN_SIMILARITY: Final = 0.50


def meaningful_neighbours(
    neighbours: tuple[Neighbour, ...], minimum: float = NEIGHBOUR_MIN_SIMILARITY
) -> tuple[Neighbour, ...]:
    """The neighbours worth showing a person: similar enough, most similar first."""
    return tuple(
        sorted((n for n in neighbours if n.similarity >= minimum), key=lambda n: -n.similarity)
    )


@dataclass(frozen=True, slots=True)
class Reason:
    """Evidence grouped into one thing a person can read: a short ``label`` for a bar, a
    ``sentence`` for the summary, and the summed ``weight`` (log-odds, + towards spam)."""

    label: str
    sentence: str
    weight: float


# Short and common words carry weight in the model but mean nothing to a reader.
_MIN_SHOWN_WORD = 3
_COMMON_WORDS = frozenset(
    [
        "the",
        "you",
        "your",
        "yours",
        "our",
        "ours",
        "this",
        "that",
        "with",
        "from",
        "have",
        "has",
        "will",
        "for",
        "and",
        "are",
        "was",
        "were",
        "here",
        "there",
        "what",
        "when",
        "which",
        "who",
        "all",
        "any",
        "can",
        "not",
        "but",
        "its",
        "it's",
        "they",
        "them",
        "their",
    ]
)
_AUTH_PASS = frozenset(
    {
        "signal:auth_pass",
        "sender:dkim_pass",
        "sender:dkim_aligned",
        "sender:spf_pass",
        "sender:dmarc_pass",
        "sender:sender_domain_consistent",
    }
)
_AUTH_FAIL = frozenset({"signal:auth_fail", "sender:dmarc_fail"})
_HTML = frozenset({"signal:html_only", "signal:html_share", "signal:hidden_text"})
_LINKS = frozenset(
    {
        "signal:n_urls_log",
        "signal:n_url_domains_log",
        "signal:has_urls",
        "signal:few_url_domains",
        "signal:url_offsite_share",
    }
)


def _group(e: Evidence) -> str:
    f = e.feature
    if f in _AUTH_PASS:
        return "auth_pass"
    if f in _AUTH_FAIL:
        return "auth_fail"
    if f in ("chars", "embedding") or f.startswith(("text:", "subject:", "h:")):
        return "wording" if f != "embedding" else "meaning"
    if f == "signal:log_text_chars":
        return "length"
    if f in _HTML:
        return "html"
    if f in _LINKS or f.startswith(("url:", "urlbase:", "urltld:")):
        return "links"
    if f.startswith(("fromdom:", "fromtld:")):
        return "domain"
    return f


def _lean(weight: float, spam: str = "spam", ham: str = "ordinary mail") -> str:
    return spam if weight > 0 else ham


def _sentence(group: str, items: list[Evidence], weight: float) -> tuple[str, str]:
    if group == "auth_pass":
        return "Sender check", "The sender's domain passed authentication."
    if group == "auth_fail":
        return "Sender check", "The sender's domain failed authentication."
    if group == "wording":
        words = [
            e.feature.split(":", 1)[1]
            for e in items
            if e.feature.startswith(("text:", "subject:"))
            and (e.weight > 0) == (weight > 0)
            and _telling(e.feature.split(":", 1)[1])
        ][:3]
        such = f" (words such as {', '.join(repr(w) for w in words)})" if words else ""
        return "Wording", f"It resembles earlier {_lean(weight)} in its wording{such}."
    if group == "meaning":
        return "Topic", f"What it is about is typical of {_lean(weight)}."
    if group == "length":
        return "Length", f"Its length is more typical of {_lean(weight)}."
    if group == "html":
        html_only = any(e.feature == "signal:html_only" for e in items)
        hidden = any(e.feature == "signal:hidden_text" for e in items)
        text = "It is mostly HTML." if html_only else "Part of it is HTML."
        if hidden:
            text += " Some of its text is hidden from the reader."
        return "HTML", text
    if group == "links":
        hosts = [
            e.feature.split(":", 1)[1]
            for e in items
            if e.feature.startswith(("url:", "urlbase:")) and (e.weight > 0) == (weight > 0)
        ][:2]
        where = f", for example to {' and '.join(hosts)}," if hosts else ""
        return "Links", f"Its links{where} are more like those in {_lean(weight)}."
    if group == "domain":
        where = items[0].feature.split(":", 1)[1]
        return "Sender's domain", (
            f"Mail from {'.' if items[0].feature.startswith('fromtld:') else ''}{where} "
            f"is more often {_lean(weight, 'spam', 'ordinary mail')}."
        )
    if group.startswith("view:"):  # scored by its most spam-like part (scoring/views.py)
        detail = items[0].detail or "it was read without what looks like padding"
        return "Padding", detail[:1].upper() + detail[1:] + "."
    # A single signal with its own words ("an executable attachment").
    detail = items[0].detail or items[0].feature
    label = detail[:1].upper() + detail[1:]
    return label, f"{label}: a sign of {_lean(weight)}."


def _telling(term: str) -> bool:
    """A word or phrase of the mail worth quoting to a person: real words, not only common
    ones, not numbers or punctuation."""
    words = term.split()
    return (
        bool(words)
        and all(w.isalpha() and len(w) >= _MIN_SHOWN_WORD for w in words)
        and not all(w.lower() in _COMMON_WORDS for w in words)
    )


def plain_reasons(evidence: tuple[Evidence, ...], limit: int = 5) -> list[Reason]:
    """The evidence as a few plain sentences, strongest first, never a list of raw terms:
    terms of the wording are grouped into one sentence, authentication signals into another."""
    groups: dict[str, list[Evidence]] = {}
    for e in evidence:
        if e.feature.startswith("rule:"):
            groups.setdefault(e.feature, []).append(e)
        else:
            groups.setdefault(_group(e), []).append(e)
    reasons = []
    for group, items in groups.items():
        weight = sum(e.weight for e in items)
        if abs(weight) < 0.05:
            continue
        label, sentence = _sentence(group, items, weight)
        reasons.append(Reason(label, sentence, weight))
    reasons.sort(key=lambda r: -abs(r.weight))
    return reasons[:limit]


def evidence_summary(score: Score, outcome: Outcome) -> str:
    """SpamGuard's own account of a score, from the evidence alone (no model involved)."""
    verdict = {"spam": "spam", "flag": "suspicious", "ham": "not spam"}[outcome.verdict]
    done = outcome.done[:1].upper() + outcome.done[1:]
    parts = [
        f"SpamGuard rated this message {int(score.p_spam * 100)} % likely to be spam "
        f"({verdict}). {done}."
    ]
    parts += [r.sentence for r in plain_reasons(score.evidence, limit=4)]
    near = meaningful_neighbours(score.neighbours)
    if near:
        subject = " ".join(near[0].subject.split())[:60]
        label = "spam" if near[0].label == "spam" else "not spam"
        parts.append(f'It is much like a known {label} message, "{subject}".')
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Explanation:
    """One explanation as written, checked and shown.

    ``text`` is what the user sees: the model's text (``from_llm``) or, when it was withheld,
    the evidence summary with a note saying why. ``raw`` is what the model wrote, ``problems``
    why it was withheld (empty when shown), ``contradictions`` the claims of the model's
    finished text that the evidence contradicts (withheld whenever there is one).
    """

    text: str
    from_llm: bool
    raw: str
    problems: tuple[str, ...] = ()
    contradictions: tuple[Contradiction, ...] = ()
    seconds: float = 0.0


# Part of every kept explanation's context: raise it when the prompt or the checks change, so
# explanations written under the old ones are written again.
EXPLANATION_VERSION: Final = "checked-3"


def explanation_context(settings: LLMSettings, model_version: str, outcome: Outcome) -> str:
    """What a kept explanation was written for: the LLM, the scoring model, the outcome."""
    return "|".join(
        [
            EXPLANATION_VERSION,
            settings.model,
            str(settings.model_path or ""),
            settings.remote_url or "",
            model_version,
            outcome.verdict,
            outcome.done,
        ]
    )


def outcome_facts(message: Message, outcome: Outcome, **known: object) -> Facts:
    """The `Facts` an explanation of ``outcome`` is checked against (``known``: further
    arguments of `facts_for`, such as ``known_sender`` or ``raw``)."""
    return facts_for(
        message,
        moved_to_junk=outcome.moved_to_junk,
        flagged=outcome.flagged,
        allow_listed="allow list" in outcome.done,
        **known,  # type: ignore[arg-type]
    )


def checked_explanation(
    message: Message,
    score: Score,
    outcome: Outcome,
    *,
    settings: LLMSettings | None = None,
    facts: Facts | None = None,
) -> Explanation:
    """Ask the LLM to explain ``score`` and ``outcome``, finish its sentences, and check it
    against the verdict, the action and the evidence (`check_explanation`,
    `consistency.contradictions`); the evidence summary replaces it when it fails."""
    facts = facts or outcome_facts(message, outcome)
    started = time.perf_counter()
    # The model is given what a person is shown: the plain reasons, the facts the text is
    # checked against, and only neighbours similar enough to mean something (it told stories
    # about a "known spam" at 0.37 similarity).
    told = replace(score, neighbours=meaningful_neighbours(score.neighbours))
    plain = " ".join(r.sentence for r in plain_reasons(score.evidence, limit=4))
    raw = "".join(
        stream_rationale(
            message,
            told,
            settings=settings,
            outcome=outcome,
            facts=(f"In plain words: {plain}\n" if plain else "") + facts.in_words(),
        )
    ).strip()
    return judged_explanation(
        raw, message, score, outcome, facts, seconds=time.perf_counter() - started
    )


def judged_explanation(
    raw: str,
    message: Message,
    score: Score,
    outcome: Outcome,
    facts: Facts,
    *,
    seconds: float = 0.0,
) -> Explanation:
    """What is shown for the model's text ``raw``: its finished sentences when they pass every
    check, else the evidence summary with a note saying why."""
    text = finish_sentences(raw)
    context = " ".join(
        [f"{score.p_spam:.2f}", str(int(score.p_spam * 100)), outcome.done]
        + [f"{e.detail or e.feature} {e.weight:+.1f}" for e in score.evidence]
        + [n.subject for n in score.neighbours]
    )
    found = tuple(contradictions(text, facts))
    problems = [] if text or not raw else ["it did not finish a sentence"]
    mail = mail_for_prompt(message, max_chars=3000)
    problems += check_explanation(text, outcome, mail, context)
    # Names it may use: the message's own, and those of the findings and facts it was told.
    plain = " ".join(r.sentence for r in plain_reasons(score.evidence, limit=4))
    told = " ".join([grounding_source(message), mail, context, plain, facts.in_words()])
    problems += [
        f"it names something that is not in the message ({name!r})"
        for name in ungrounded_names(text, told)[:1]
    ]
    problems += [f"it contradicted the evidence ({c.kind}: {c.evidence})" for c in found]
    if not problems:
        return Explanation(text, True, raw, (), found, seconds)
    log.info("LLM explanation withheld (%s): %r", "; ".join(problems), raw[:300])
    # The reason without the offending words: the note must not repeat them either.
    why = problems[0].split(" (")[0]
    shown = WITHHELD_NOTE.format(why=why) + evidence_summary(score, outcome)
    return Explanation(shown, False, raw, tuple(problems), found, seconds)


def explain(
    message: Message,
    score: Score,
    outcome: Outcome,
    *,
    settings: LLMSettings | None = None,
    facts: Facts | None = None,
) -> Iterator[str]:
    """The LLM's explanation of ``score`` and ``outcome`` once it passed the checks, else the
    evidence summary with a note (`checked_explanation`). Yields the text when it is ready
    (the whole of it: a sentence shown before the check could not be taken back)."""
    yield checked_explanation(message, score, outcome, settings=settings, facts=facts).text
