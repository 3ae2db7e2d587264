"""Does an explanation agree with the evidence? A deterministic check of what a text claims.

The LLM is told the evidence and what SpamGuard did, and asked to say it in words; a small model
still writes "the sender's authentication was compromised" about a message whose DKIM, SPF and
DMARC all passed, or "it has no links" about a mail full of them. This module reads the claims a
text makes about five things SpamGuard knows for certain, `Facts`, and lists each claim the facts
contradict:

- authentication: DKIM / SPF / DMARC passed or failed (as the account's own server recorded it);
- links: whether there are any, how many, link shorteners, link text naming another site than
  the link goes to, links to other domains than the sender's;
- the sender: a known correspondent or a new one;
- attachments: whether there are any, and of which kind;
- the action: moved to Junk, flagged, left alone, allow-listed (or deleted, which never happens).

It reads claims clause by clause with their negations ("did not pass", "no links", "nothing
failed"), and skips what the text reports as the mail's own pretence ("it claims to be from your
bank") or as a hypothetical ("would have been moved"). What it cannot read it leaves alone: it is a
check for contradictions it can detect, not a proof of truth. A claim about a fact SpamGuard does
not know (no Authentication-Results it trusts, a file with no account's correspondents) is only a
contradiction where the claim is positive and the fact to support it is missing: "DKIM passed"
with no DKIM result recorded was made up.

`ungrounded_names` reads what a text names rather than what it claims: a person, organisation,
place, product, web domain or e-mail address that is in neither the message nor the findings the
model was told ("a VPN in Moscow" about a coffee receipt) was made up, even where no fact above
contradicts it.

`finish_sentences` trims a text to its last complete sentence, so nothing shown stops mid-word.

Over 600 lines on purpose: one reader per kind of claim, all against the same `Facts`.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Final, Literal

from spamguard.message import Message
from spamguard.scoring.features import SHORTENERS

__all__ = [
    "LEFT_IN_PLACE",
    "Contradiction",
    "Facts",
    "contradictions",
    "facts_for",
    "finish_sentences",
    "grounding_source",
    "link_text_mismatches",
    "ungrounded_names",
]

Kind = Literal["authentication", "links", "sender", "attachments", "action"]
_FAILED: Final = frozenset({"fail", "softfail", "permerror", "temperror", "hardfail"})
_ATTACHMENT_KINDS: Final = {
    "executable": (".exe", ".scr", ".bat", ".cmd", ".com", ".pif", ".js", ".vbs", ".jar", ".msi"),
    "archive": (".zip", ".rar", ".7z", ".gz", ".tgz", ".cab", ".ace"),
    "pdf": (".pdf",),
    "html": (".html", ".htm", ".shtml", ".svg"),
    "office": (".doc", ".docx", ".docm", ".xls", ".xlsx", ".xlsm", ".ppt", ".pptx", ".pptm"),
    "image": (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"),
}
_KIND_WORDS: Final = {
    "executable": "executable|program|\\.exe",
    "archive": "zip|zipped|archive|compressed|rar",
    "pdf": "pdf",
    "html": "html",
    "office": "word|excel|office|document|spreadsheet|macro",
    "image": "image|picture|photo",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What SpamGuard knows for certain about one message and what it did with it.

    ``spf``/``dkim``/``dmarc`` are the results the account's own server recorded ("pass",
    "fail", "none", ...) or None when none was read. ``mismatched_links`` is None when the
    message's HTML was not available to count them; ``known_sender`` None when no account's
    correspondents were consulted (a file scored on disk).
    """

    moved_to_junk: bool = False
    flagged: bool = False
    allow_listed: bool = False
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    links: int = 0
    link_domains: tuple[str, ...] = ()
    shorteners: tuple[str, ...] = ()
    mismatched_links: int | None = None
    offsite_links: int = 0
    domain_consistent: bool = False
    attachments: tuple[str, ...] = ()
    known_sender: bool | None = None

    def auth_results(self) -> dict[str, str]:
        return {
            k: v for k, v in (("spf", self.spf), ("dkim", self.dkim), ("dmarc", self.dmarc)) if v
        }

    def in_words(self) -> str:
        """These facts as short positive sentences for the LLM's prompt, what it may say.

        Only what is there is stated: a 135M model given "It has no attachments." wrote "it
        has no attachments or links" about a mail with two links (the demo mailbox, prompt
        v2), so absent attachments, unknown authentication and an unknown sender go unsaid.
        """
        lines = []
        results = self.auth_results()
        failed = [k.upper() for k, v in sorted(results.items()) if v in _FAILED]
        if results and all(v == "pass" for v in results.values()):
            names = " and ".join(k.upper() for k in sorted(results))
            lines.append(f"The sender's domain passed authentication ({names}).")
        elif failed:
            lines.append(f"The sender's domain failed authentication ({' and '.join(failed)}).")
        if self.links:
            where = " and ".join(self.link_domains[:3])
            lines.append(f"It has {_count(self.links, 'link')}, to {where}.")
            if self.shorteners:
                lines.append(f"A link goes through the link shortener {self.shorteners[0]}.")
            if self.mismatched_links:
                lines.append("A link's text shows another web address than the one it opens.")
        else:
            lines.append("It has no links.")
        if self.attachments:
            names = ", ".join(self.attachments[:3])
            lines.append(f"It has {_count(len(self.attachments), 'attachment')}: {names}.")
        if self.known_sender is True:
            lines.append("You have written to this sender before.")
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"one {noun}" if n == 1 else f"{n} {noun}s"


def facts_for(
    message: Message,
    *,
    moved_to_junk: bool,
    flagged: bool,
    allow_listed: bool = False,
    known_sender: bool | None = None,
    raw: bytes | None = None,
) -> Facts:
    """The `Facts` of ``message`` and what was done with it. With the message's ``raw`` bytes,
    links whose text names another site than their target are counted too."""
    from spamguard.scoring.features import SENDER_FEATURES, registrable, sender_features

    domains = tuple(dict.fromkeys(d.lower().removeprefix("www.") for d in message.url_domains if d))
    own = message.from_domain
    own_base = registrable(own) if own else ""
    offsite = sum(1 for d in domains if not own_base or registrable(d) != own_base)
    signals = dict(zip((n for n, _ in SENDER_FEATURES), sender_features(message), strict=True))
    consistent = bool(signals.get("sender_domain_consistent"))
    return Facts(
        moved_to_junk=moved_to_junk,
        flagged=flagged,
        allow_listed=allow_listed,
        spf=message.auth.spf,
        dkim=message.auth.dkim,
        dmarc=message.auth.dmarc,
        links=len(message.urls),
        link_domains=domains,
        shorteners=tuple(d for d in domains if d in SHORTENERS),
        mismatched_links=link_text_mismatches(raw) if raw is not None else None,
        offsite_links=offsite,
        domain_consistent=consistent,
        attachments=tuple(a.filename or a.content_type for a in message.attachments),
        known_sender=known_sender,
    )


# --------------------------------------------------------------------------- link text


_HOSTLIKE = re.compile(
    r"(?i)^(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?::\d+)?(?:[/?#]\S*)?$"
)


class _Anchors(HTMLParser):
    """(text, href) of every <a href> of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = next((v for k, v in attrs if k == "href" and v), None)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append(("".join(self._text).strip(), self._href.strip()))
            self._href = None


def _host(url: str) -> str:
    m = _HOSTLIKE.match(url.strip())
    return m.group(1).lower() if m else ""


def link_text_mismatches(raw: bytes, max_parts: int = 20) -> int:
    """Links whose visible text is a web address on another site than the link's target
    ("<a href=http://evil.example>www.yourbank.com</a>"), over the HTML parts of ``raw``."""
    from spamguard.scoring.features import registrable

    try:
        parsed = email.message_from_bytes(raw[: 8 << 20], policy=email.policy.default)
    except Exception:  # a message the standard parser refuses has no countable links
        return 0
    count = 0
    parts = 0
    for part in parsed.walk() if isinstance(parsed, EmailMessage) else ():
        if part.get_content_type() != "text/html":
            continue
        parts += 1
        if parts > max_parts:
            break
        try:
            markup = part.get_content()
        except Exception:  # undecodable part: nothing to count in it
            continue
        parser = _Anchors()
        try:
            parser.feed(str(markup)[:2_000_000])
            parser.close()
        except Exception:  # HTMLParser gave up on broken markup; count what it read
            pass
        for text, href in parser.anchors:
            shown, target = _host(text), _host(href)
            if shown and target and registrable(shown) != registrable(target):
                count += 1
    return count


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True, slots=True)
class Contradiction:
    """One claim of a text that the facts contradict."""

    kind: Kind
    claim: str  # the words of the text that made it
    evidence: str  # what SpamGuard knows instead

    def __str__(self) -> str:
        return f"{self.kind}: {self.claim!r} but {self.evidence}"


_NEGATOR = re.compile(
    r"\b(?:not|no|never|none|nor|without|neither|nothing|zero|lacks?|lacking|absent)\b|n't\b|"
    r"\bfree\s+of\b",
    re.IGNORECASE,
)
# Words that make a clause the mail's own story rather than the explanation's claim.
_REPORTED = re.compile(
    r"\b(?:claim\w*|pretend\w*|purport\w*|pos(?:e|es|ing)\s+as|disguis\w*\s+as|"
    r"impersonat\w*|says?|said|tells?|asks?|asking|wants?|urges?|supposedly|allegedly)\b",
    re.IGNORECASE,
)
_HYPOTHETICAL = re.compile(
    r"\b(?:would|could|might|if|unless|instead|rather|otherwise|should)\b", re.IGNORECASE
)
_CLAUSE_SPLIT = re.compile(
    r"[;:,()\u2014]|\s-\s|\b(?:but|while|whereas|although|though|however|yet|because|since|"
    r"so|as)\b",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


def _clauses(text: str) -> Iterator[str]:
    for sentence in _SENTENCE_SPLIT.split(" ".join(text.split())):
        for clause in _CLAUSE_SPLIT.split(sentence):
            clause = clause.strip(" .!?\"'")
            if clause:
                yield clause


def _negated(clause: str, start: int, window: int = 4) -> bool:
    """A negation among the few words before ``start`` in ``clause``: across "or"/"nor"
    ("no links or attachments" denies both), not across "and" ("two links and no
    attachments" denies only the attachments)."""
    before = re.split(r"\band\b", clause[:start], flags=re.IGNORECASE)[-1]
    return bool(_NEGATOR.search(" ".join(before.split()[-window:])))


# Words that may stand between a negation and the thing it denies outright: "no links",
# "not any links", "no attachments or links", "does not contain links". Any other word there
# qualifies it ("no suspicious links" says nothing of the count).
_OUTRIGHT = frozenset(
    [
        "no",
        "not",
        "any",
        "or",
        "nor",
        "neither",
        "zero",
        "without",
        "single",
        "a",
        "contain",
        "contains",
        "have",
        "has",
        "include",
        "includes",
        "with",
        "n't",
    ]
)


def _outright(clause: str, start: int) -> bool:
    words = re.findall(r"[\w']+", clause[:start].lower())
    return bool(words) and (words[-1] in _OUTRIGHT or words[-1].endswith("n't"))


def _reported(clause: str, start: int) -> bool:
    return bool(_REPORTED.search(clause[:start]))


def _hypothetical(clause: str, start: int) -> bool:
    return bool(_HYPOTHETICAL.search(clause[:start]))


# -- authentication

_AUTH_TOPIC = re.compile(
    r"\b(?:authenticat\w*|unauthenticated|dkim|spf|dmarc|signatures?|signed|spoof\w*|forged|"
    r"forgery|sender\s+checks?|sender\s+verification)\b",
    re.IGNORECASE,
)
_AUTH_POS = re.compile(
    r"\b(?:pass(?:ed|es|ing)?|succeed(?:ed|s)?|successful(?:ly)?|valid|verified|"
    r"authenticated|checks?\s+out|in\s+order|aligned|genuine)\b",
    re.IGNORECASE,
)
_AUTH_NEG = re.compile(
    r"\b(?:fail(?:ed|s|ing|ures?)?|compromised|invalid|forged|forgery|spoof(?:ed|ing)?|"
    r"unauthenticated|unverified|broken|bad|did\s+not\s+check\s+out|faked?|rejected)\b",
    re.IGNORECASE,
)
_METHOD = re.compile(r"\b(dkim|spf|dmarc)\b", re.IGNORECASE)


def _auth(clause: str, facts: Facts) -> Iterator[Contradiction]:
    if not _AUTH_TOPIC.search(clause):
        return
    results = facts.auth_results()
    marks = sorted(
        [(m.start(), m.end(), True) for m in _AUTH_POS.finditer(clause)]
        + [(m.start(), m.end(), False) for m in _AUTH_NEG.finditer(clause)]
    )
    previous = 0
    for i, (start, end, positive) in enumerate(marks):
        if _reported(clause, start) or _hypothetical(clause, start):
            previous = end
            continue
        nxt = marks[i + 1][0] if i + 1 < len(marks) else len(clause)
        methods = [m.lower() for m in _METHOD.findall(clause[previous:start])] or [
            m.lower() for m in _METHOD.findall(clause[end:nxt])
        ]
        previous = end
        negated = _negated(clause, start)
        says_pass = positive != negated  # "passed", or "did not fail"
        strong = not negated  # "passed"/"failed" vs "did not fail"/"did not pass"
        words = clause[max(0, start - 40) : end + 30].strip()
        if not says_pass and strong and len(set(methods)) > 1:
            # "its SPF/DKIM checks were rejected": true enough when one of them failed.
            if any(results.get(m) in _FAILED for m in methods):
                continue
            methods = methods[:1]
        for method in methods or [""]:
            got = (
                ([results[method]] if method in results else [])
                if method
                else list(results.values())
            )
            name = method.upper() or "sender authentication"
            recorded = (
                f"{method.upper()} was {results[method]}"
                if method and method in results
                else f"no {method.upper()} result was recorded"
                if method
                else "the results were " + ", ".join(f"{k.upper()} {v}" for k, v in results.items())
                if results
                else "no authentication result was recorded"
            )
            fails = any(r in _FAILED for r in got)
            passes = bool(got) and all(r == "pass" for r in got)
            if says_pass and strong and not passes:
                yield Contradiction("authentication", words, f"{name} did not pass: {recorded}")
            elif says_pass and not strong and fails:
                yield Contradiction("authentication", words, f"{name} failed: {recorded}")
            elif not says_pass and strong and not fails:
                yield Contradiction("authentication", words, f"nothing failed: {recorded}")
            elif not says_pass and not strong and passes:
                yield Contradiction("authentication", words, f"{name} passed: {recorded}")


# -- links

_NUMBERS: Final = {
    "a single": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_LINK = r"(?:hyper)?links?|urls?|web\s+addresses|web\s+address"
_LINK_MENTION = re.compile(rf"\b(?:{_LINK})\b", re.IGNORECASE)
_NO_LINKS = re.compile(
    rf"\b(?:no|zero|without(?:\s+any)?|not\s+(?:a\s+single|any)|(?:contain|ha[sv]e?|include)s?"
    rf"\s+no|(?:not|n't)\s+(?:contain|have|include)\s+(?:any\s+)?)\s*(?:{_LINK})\b"
    r"(?!\s+(?:shorten\w*|texts?|domains?|targets?|address\w*|destinations?))",
    re.IGNORECASE,
)
# "link shorteners", "link text": the link word qualifying another noun.
_LINK_QUALIFIER = re.compile(
    r"\s+(?:shorten\w*|texts?|domains?|targets?|address\w*|destinations?)\b", re.IGNORECASE
)
_LINK_COUNT = re.compile(
    rf"(?<!one of )\b(\d+|a\s+single|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
    rf"twelve|several|many|multiple|numerous|a\s+few|dozens\s+of)\s+(?:[a-z-]+\s+)?(?:{_LINK})\b",
    re.IGNORECASE,
)
_SHORTENER = re.compile(
    r"\b(?:(?:url|link)\s+)?shorten(?:er|ers|ed|ing)\b|\bshort(?:ened)?\s+(?:links?|urls?)\b|"
    r"\b(?:bit\.ly|tinyurl|goo\.gl|t\.co|ow\.ly|is\.gd)\b",
    re.IGNORECASE,
)
_MISMATCH = re.compile(
    r"\b(?:disguised|mislead\w*|deceptive|mismatch\w*|masked|hid(?:e|es|den|ing)\s+(?:their|its|the)"
    r"\s+(?:real\s+|true\s+)?(?:destination|target|address)|(?:go|lead|point)s?\s+somewhere\s+else|"
    r"(?:text|address|name)\s+(?:shown|displayed)[^.;]{0,30}\b(?:differ\w*|match\w*)|"
    r"do(?:es)?(?:n't|\s+not)\s+(?:go|lead|point)\s+where)",
    re.IGNORECASE,
)
_OFFSITE = re.compile(
    r"\b(?:different|other|another|unrelated|third-party|outside|external|foreign)\s+"
    r"(?:domains?|sites?|websites?|companies|servers?)\b",
    re.IGNORECASE,
)
_ONSITE = re.compile(
    r"\b(?:sender's\s+own\s+(?:domain|site|website)|same\s+domain|its\s+own\s+domain|"
    r"(?:domain|links?)\s+(?:match|matches|agree|are\s+consistent|is\s+consistent))\b",
    re.IGNORECASE,
)


def _links(clause: str, facts: Facts) -> Iterator[Contradiction]:
    mention = _LINK_MENTION.search(clause)
    if not mention or _hypothetical(clause, mention.start()):
        return
    words = clause[:160]
    none = _NO_LINKS.search(clause) or (
        _negated(clause, mention.start())
        and _outright(clause, mention.start())
        and not _LINK_QUALIFIER.match(clause, mention.end())
    )
    if none:
        if facts.links:
            yield Contradiction("links", words, f"it has {facts.links} link(s)")
        return
    if _reported(clause, mention.start()):
        return
    qualified_negation = _negated(clause, mention.start(), window=3)
    shortener = _SHORTENER.search(clause)
    if shortener:
        if _negated(clause, shortener.start(), window=8):
            if facts.shorteners:
                yield Contradiction(
                    "links", words, f"it links through {', '.join(facts.shorteners)}"
                )
        elif not facts.shorteners:
            yield Contradiction("links", words, "none of its links goes through a shortener")
    mismatch = _MISMATCH.search(clause)
    if mismatch and facts.mismatched_links is not None:
        if _negated(clause, mismatch.start(), window=8):
            if facts.mismatched_links:
                yield Contradiction(
                    "links", words, f"{facts.mismatched_links} link(s) show another site"
                )
        elif not facts.mismatched_links:
            yield Contradiction("links", words, "no link's text names another site")
    offsite = _OFFSITE.search(clause)
    if (
        offsite
        and facts.links
        and not facts.offsite_links
        and not _negated(clause, offsite.start(), window=5)
    ):
        yield Contradiction("links", words, "every link goes to the sender's own domain")
    onsite = _ONSITE.search(clause)
    if onsite and facts.offsite_links and not _negated(clause, onsite.start(), window=5):
        yield Contradiction(
            "links", words, f"{facts.offsite_links} link domain(s) are not the sender's"
        )
    if qualified_negation:
        return  # "no suspicious links", "not any shortened links": says nothing of the count
    count = _LINK_COUNT.search(clause)
    if count:
        said = count.group(1).lower()
        said = " ".join(said.split())
        if said.isdigit() or said in _NUMBERS:
            n = int(said) if said.isdigit() else _NUMBERS[said]
            if n not in (facts.links, len(facts.link_domains)):
                yield Contradiction(
                    "links",
                    words,
                    f"it has {facts.links} link(s) to {len(facts.link_domains)} domain(s)",
                )
                return
        elif facts.links < 2 and said not in ("a few",):
            yield Contradiction("links", words, f"it has {facts.links} link(s)")
            return
    if not facts.links:
        yield Contradiction("links", words, "it has no links")


# -- sender

_KNOWN = re.compile(
    r"\b(?:known|familiar|regular|usual|frequent|existing|trusted)\s+(?:sender|contact|"
    r"correspondent)s?\b|\bsomeone\s+you\s+(?:know|have\s+(?:written|corresponded|emailed))|"
    r"\byou(?:'ve|\s+have)\s+(?:written|corresponded|emailed|replied)\b|"
    r"\bin\s+your\s+(?:contacts|address\s+book)\b|\byou\s+(?:already\s+)?know\s+the\s+sender\b",
    re.IGNORECASE,
)
_UNKNOWN = re.compile(
    r"\b(?:unknown|new|unfamiliar|first-time|unrecognized|unrecognised)\s+(?:sender|contact|"
    r"correspondent)s?\b|\bnever\s+(?:written|corresponded|emailed|heard|replied)\b|"
    r"\bfirst\s+(?:time|message|mail|e-mail|email)\s+from\b|\b(?:a|an)\s+stranger\b",
    re.IGNORECASE,
)


def _sender(clause: str, facts: Facts) -> Iterator[Contradiction]:
    for pattern, says_known in ((_KNOWN, True), (_UNKNOWN, False)):
        for m in pattern.finditer(clause):
            if _reported(clause, m.start()) or _hypothetical(clause, m.start()):
                continue
            # "never written" carries its own negation; do not read it twice.
            own_negation = m.group(0).lower().startswith("never")
            known = says_known if own_negation else says_known != _negated(clause, m.start())
            words = clause[:160]
            if known and facts.known_sender is not True:
                yield Contradiction(
                    "sender",
                    words,
                    "SpamGuard has no record of mail with this sender"
                    if facts.known_sender is False
                    else "SpamGuard did not look up the sender among your correspondents",
                )
            elif not known and facts.known_sender is True:
                yield Contradiction("sender", words, "you have written to this sender before")


# -- attachments

_ATTACHMENT = re.compile(
    r"\b(?:attach(?:ments?|ed(?:\s+files?)?)|enclosed\s+files?|enclosures?)\b", re.IGNORECASE
)


def _attachments(clause: str, facts: Facts) -> Iterator[Contradiction]:
    m = _ATTACHMENT.search(clause)
    if not m or _hypothetical(clause, m.start()) or _reported(clause, m.start()):
        return
    words = clause[:160]
    before = clause[max(0, m.start() - 30) : m.start()].lower()
    after = clause[m.end() : m.end() + 30].lower()
    kind = next(
        (
            k
            for k, w in _KIND_WORDS.items()
            if re.search(rf"\b(?:{w})\W*(?:\w+\s+)?$", before)
            or re.match(rf"\s+(?:is|was|named|called)?\s*(?:an?\s+)?(?:{w})\b", after)
        ),
        None,
    )
    negated = _negated(clause, m.start(), window=4)
    names = [a.lower() for a in facts.attachments]
    if kind:
        have = [n for n in names if n.endswith(_ATTACHMENT_KINDS[kind])]
        if negated and have:
            yield Contradiction("attachments", words, f"it has {kind} attachment(s): {have[0]}")
        elif not negated and not have:
            yield Contradiction(
                "attachments",
                words,
                f"it has no {kind} attachment"
                + (f" (its attachments: {', '.join(facts.attachments[:3])})" if names else ""),
            )
        return
    if negated and names:
        yield Contradiction("attachments", words, f"it has {len(names)} attachment(s)")
    elif not negated and not names:
        yield Contradiction("attachments", words, "it has no attachments")


# -- the action

_MOVED = re.compile(
    r"\b(?:moved|sent|filed|put|placed|went|moving|move[sd]?|quarantined|sorted|pushed|"
    r"redirected|diverted|dropped)\b(?:(?!\bfrom\b|\bout\s+of\b)[^.;]){0,25}?"
    r"\b(?:junk|spam\s+folder|spam\s+box|quarantine)\b|"
    r"\b(?:is|now|sits?|lands?|landed|ended\s+up)\s+(?:now\s+)?in\s+(?:the\s+|your\s+)?junk\b",
    re.IGNORECASE,
)
# "It did not reach the threshold of spam" about a message moved to Junk for reaching it.
_BELOW_SPAM = re.compile(
    r"\b(?:did\s+not|didn't|does\s+not|doesn't|never)\s+(?:reach|cross|pass|exceed|meet|hit)\s+"
    r"the\s+(?:threshold|score|level|bar)\s+(?:of|for)\s+(?:a\s+|being\s+)?spam\b",
    re.IGNORECASE,
)
# Out of Junk again: only a rescue (yours or Undo) does that, and then it is not in Junk.
_OUT_OF_JUNK = re.compile(
    r"\b(?:moved|taken|brought|restored|returned|rescued|released|pulled)\b[^.;]{0,25}?"
    r"\b(?:from|out\s+of)\s+(?:the\s+|your\s+)?(?:junk|spam\s+folder|quarantine)\b",
    re.IGNORECASE,
)
# A claim that the message stayed where it was (the explainer's own check reads it too).
LEFT_IN_PLACE = re.compile(
    r"\b(?:left|kept|keeps|stay(?:s|ed)?|remain(?:s|ed)?|delivered)\b[^.;]{0,25}?"
    r"\b(?:inbox|alone|in\s+place|where\s+it\s+(?:is|was))\b",
    re.IGNORECASE,
)
_FLAGGED = re.compile(
    r"\b(?:flagged|flag(?:s|ging)?\s+(?:it|the\s+(?:message|mail|e-?mail))|marked\s+(?:it\s+)?"
    r"(?:as\s+)?(?:suspicious|for\s+(?:review|your\s+attention)))\b",
    re.IGNORECASE,
)
_ALLOWED = re.compile(
    r"\b(?:allow[- ]?list(?:ed)?|white[- ]?list(?:ed)?|safe\s+senders?(?:\s+list)?)\b",
    re.IGNORECASE,
)
# What SpamGuard never does, said of SpamGuard or of the message ("the links were deleted by
# an editor" is another story, and not about the action).
_GONE = re.compile(
    r"\bno\s+longer\s+on\s+the\s+server\b|\b(?:spamguard|filter|it|message|mail|e-?mail)\s+"
    r"(?:was\s+|has\s+been\s+|is\s+|got\s+|have\s+been\s+)?(?:deleted|destroyed|erased|"
    r"removed\s+from\s+(?:the\s+server|your\s+mailbox)|blocked\s+the\s+sender|"
    r"reported\s+(?:it\s+)?to)\b|\b(?:removed|deleted|erased|wiped)\b[^.;]{0,40}?\bfrom\s+"
    r"(?:your\s+(?:mailbox|account|computer)|the\s+(?:mailbox|server))\b",
    re.IGNORECASE,
)


def _action(clause: str, facts: Facts) -> Iterator[Contradiction]:
    words = clause[:160]
    if _hypothetical(clause, len(clause)):
        # "it would have been moved to Junk", "without the allow list it would be in Junk":
        # a counterfactual anywhere in the clause says nothing of what was done.
        for m in _GONE.finditer(clause):
            if not _negated(clause, m.start(), window=5):
                yield Contradiction("action", words, "SpamGuard never deletes, reports or blocks")
        return
    for m in _MOVED.finditer(clause):
        if _hypothetical(clause, m.start()) or _reported(clause, m.start()):
            continue
        moved = not _negated(clause, m.start(), window=6)
        if moved and not facts.moved_to_junk:
            yield Contradiction("action", words, "it was not moved to Junk")
        elif not moved and facts.moved_to_junk:
            yield Contradiction("action", words, "it was moved to Junk")
    if facts.moved_to_junk and _BELOW_SPAM.search(clause):
        yield Contradiction("action", words, "it was moved to Junk for reaching that threshold")
    for m in _OUT_OF_JUNK.finditer(clause):
        if facts.moved_to_junk and not _negated(clause, m.start(), window=6):
            yield Contradiction("action", words, "it was moved to Junk and is there")
    for m in LEFT_IN_PLACE.finditer(clause):
        if _hypothetical(clause, m.start()) or _reported(clause, m.start()):
            continue
        if facts.moved_to_junk and not _negated(clause, m.start(), window=6):
            yield Contradiction("action", words, "it was moved to Junk")
    for m in _FLAGGED.finditer(clause):
        if _hypothetical(clause, m.start()) or _reported(clause, m.start()):
            continue
        negated = _negated(clause, m.start(), window=5)
        if not negated and not facts.flagged and not facts.moved_to_junk:
            yield Contradiction("action", words, "it was not flagged")
        elif negated and facts.flagged:
            yield Contradiction("action", words, "it was flagged")
    for m in _ALLOWED.finditer(clause):
        if _hypothetical(clause, m.start()) or _reported(clause, m.start()):
            continue
        negated = _negated(clause, m.start(), window=5)
        if not negated and not facts.allow_listed:
            yield Contradiction("action", words, "the sender is not on your allow list")
        elif negated and facts.allow_listed:
            yield Contradiction("action", words, "the sender is on your allow list")
    for m in _GONE.finditer(clause):
        if not _negated(clause, m.start(), window=5) and not _hypothetical(clause, m.start()):
            yield Contradiction("action", words, "SpamGuard never deletes, reports or blocks")


def contradictions(text: str, facts: Facts) -> list[Contradiction]:
    """Every claim of ``text`` that ``facts`` contradicts, in reading order (empty: none found)."""
    found: list[Contradiction] = []
    for clause in _clauses(text):
        for check in (_auth, _links, _sender, _attachments, _action):
            found.extend(check(clause, facts))
    return found


# --------------------------------------------------------------------------- sentences

# Words whose full stop does not end a sentence.
_ABBREVIATIONS: Final = frozenset(
    {"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "no", "inc", "ltd", "approx"}
)
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")


def finish_sentences(text: str) -> str:
    """``text`` up to the end of its last complete sentence ("" when it has none).

    A model stopped by its token budget leaves a sentence half-written ("was not only spam but
    also an attempt by"); that fragment is dropped whole, never cut mid-word. A full stop after
    a common abbreviation ("e.g.") or inside a number ("0.95") does not end a sentence.
    """
    text = text.strip()
    last = 0
    for m in _END.finditer(text):
        word = re.search(r"([\w.]+)$", text[: m.start()])
        if m.group(0).startswith(".") and word and word.group(1).lower() in _ABBREVIATIONS:
            continue
        last = m.end()
    return text[:last].strip()


# --------------------------------------------------------------------------- grounding

# Capitalised words SpamGuard itself uses, or that an explanation of any mail may use, which
# name nothing the mail would have to contain.
_OWN_WORDS: Final = frozenset(
    w.lower()
    for w in [
        "I",
        "I'm",
        "I've",
        "SpamGuard",
        "Junk",
        "Inbox",
        "Spam",
        "Ham",
        "Trash",
        "Sent",
        "Drafts",
        "Archive",
        "Not",
        "Flagged",
        "SPF",
        "DKIM",
        "DMARC",
        "ARC",
        "HTML",
        "URL",
        "URLs",
        "HTTP",
        "HTTPS",
        "IMAP",
        "SMTP",
        "MIME",
        "PDF",
        "ZIP",
        "IP",
        "DNS",
        "LLM",
        "AI",
        "E-mail",
        "Email",
        "E-mails",
        "Emails",
        "OK",
        "Yes",
        "No",
        "Why",
        "Sender",
        "Subject",
        "From",
        "To",
        "Reply-To",
        "Date",
    ]
)
_MONTHS: Final = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A word with a capital letter anywhere: "Moscow", "QuantEdge", "VPN", "O'Neill", "Wells-Fargo".
_CAPITALISED = re.compile(r"[^\W\d_]*[A-Z][\w'\u2019&-]*")
_NAME_RUN = re.compile(
    r"(?<![\w'\u2019-])[A-Z][\w'\u2019&-]*"
    r"(?:\s+(?:of|de|van|von|du|la|&)?\s*[A-Z][\w'\u2019&-]*)*|"
    r"(?<![\w'\u2019-])[a-z][\w'-]*[A-Z][\w'-]*"  # "eBay", "iCloud"
)
# Where a capital says nothing: the start of the text, of a sentence, a clause after a colon,
# a quotation, a parenthesis or a list mark.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|[\"\u201c\u2018'(\[]\s*|\n\s*(?:[-*\u2022]\s*)?)$")
_DOMAIN = re.compile(r"(?i)\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b")
_ADDRESS = re.compile(r"(?i)\b[\w.+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,}\b")
_WORDS_OF = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def grounding_source(message: Message) -> str:
    """Everything of ``message`` an explanation may name: its subject, sender (name and
    address), date, the text a reader sees, link domains and attachment names."""
    return "\n".join(
        [
            message.subject,
            message.from_name,
            message.from_addr,
            message.date,
            " ".join(message.url_domains),
            " ".join(a.filename for a in message.attachments),
            message.visible_text,
        ]
    )


def _words_in(source: str) -> set[str]:
    return {w.lower().replace("\u2019", "'") for w in _WORDS_OF.findall(source)}


def _word_grounded(word: str, words: set[str]) -> bool:
    word = re.sub(r"['\u2019]s?$", "", word.replace("\u2019", "'")).strip("'&-")
    w = word.lower()
    if len(w) < 2 or w in _OWN_WORDS or w in words:  # "I", a list's "A)" name nothing
        return True
    if w in _MONTHS or w in _WEEKDAYS:  # "Saturday" is grounded by a Date of "Sat, ..."
        return w in words or w[:3] in words
    # "AI-based", "Greenway-Energy": the capitalised parts are the names.
    parts = [p for p in re.split(r"[-'&]", word) if p and not p.islower()]
    return len(re.split(r"[-'&]", word)) > 1 and all(_word_grounded(p, words) for p in parts)


def ungrounded_names(text: str, source: str) -> list[str]:
    """Named things ``text`` asserts that ``source`` (the message and the findings the model
    was given) does not contain: proper names and organisations ("a VPN in Moscow"),
    web domains and e-mail addresses. A capital at the start of a sentence, after a colon or
    an opening quotation mark says nothing by itself; SpamGuard's own words (Junk, Inbox,
    SPF, DKIM, HTML, ...) are always allowed; a weekday or month only when the message's
    date or text has it. Figures are `llm.explain`'s check. Words are compared whole and
    without case, so "Beanline coffee" in the mail grounds "Beanline Coffee"."""
    lowered = source.lower()
    words = _words_in(source)
    found: list[str] = []
    for m in _ADDRESS.finditer(text):
        if m.group(0).lower() not in lowered:
            found.append(m.group(0))
    masked = _ADDRESS.sub(" ", text)
    for m in _DOMAIN.finditer(masked):
        domain = m.group(0).lower().removeprefix("www.")
        if re.fullmatch(r"(?:[a-z]\.)+[a-z]{1,2}", domain):
            continue  # "e.g", "i.e", "U.S": abbreviations, not domains
        if domain not in lowered:
            found.append(m.group(0))
    masked = _DOMAIN.sub(" ", masked)
    for m in _NAME_RUN.finditer(masked):
        run = m.group(0)
        names = _CAPITALISED.findall(run)
        if _SENTENCE_START.search(masked[: m.start()]) and names:
            names = names[1:]  # "Moscow is ..." is lost; "The ... " must not count
            run = run.split(None, 1)[-1] if len(names) > 1 else run
        missing = [n for n in names if not _word_grounded(n, words)]
        if missing:
            found.append(run if len(names) > 1 else missing[0])
    return list(dict.fromkeys(found))
