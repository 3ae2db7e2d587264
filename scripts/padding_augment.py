"""Padded copies of training spam, to teach the default model that padding is not ham.

Spammers append unrelated links, a paragraph of ordinary text, a quoted newsletter, or use a
long innocent subject (issue 21; benchmarks/evasion.py measures it). A copy made here takes
one training spam and adds padding whose text comes ONLY from training ham of a different
message (the donors are given by the caller: the train half's ham), never from the evasion
benchmark's own padding: its paragraph, newsletter, subject and 50 sites are excluded
(a donor passage sharing any 6-word run with them is skipped, a link to one of its hosts
too), so the benchmark stays a measurement of padding the model never saw.

Kinds (one function of the raw bytes each, like the benchmark's tricks):
- links: 50 distinct links taken from training ham, appended to every text part;
- paragraph: 60-150 words of a training ham's visible text appended;
- quoted: 6-20 lines of a training ham quoted with "> " under an "On DATE, NAME wrote:" line;
- subject: the subject replaced by two or three training ham subjects joined (>= 90 chars).
"""

from __future__ import annotations

import email
import email.charset
import email.generator
import html
import io
import random
import re
import sys
from dataclasses import dataclass
from email.message import Message as EmailMessage
from email.policy import compat32
from pathlib import Path
from urllib.parse import urlsplit

from spamguard.message import with_subject

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("links", "paragraph", "quoted", "subject")
_WORD = re.compile(r"\S+")
# Reply/forward prefixes and list tags ("[ILUG]"): a spammer's long subject has neither.
_SUBJECT_TAGS = re.compile(r"^((re|fwd?|aw)\s*:\s*|\[[^\]]*\]\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Donor:
    """What one training ham lends: its visible text, subject, sender name and links."""

    ref: str
    text: str
    subject: str
    name: str
    date: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Copy:
    raw: bytes
    kind: str
    original: str
    donors: tuple[str, ...]


def _benchmark_padding() -> tuple[set[tuple[str, ...]], set[str]]:
    """6-word runs of the evasion benchmark's padding texts and its sites' hosts: excluded."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import evasion
    finally:
        sys.path.pop(0)
    shingles: set[tuple[str, ...]] = set()
    for text in (evasion.PARAGRAPH, evasion.NEWSLETTER, evasion.LONG_SUBJECT, evasion.SHORT_LINE):
        shingles |= _shingles(text)
    hosts = {_host("http://" + s) for s in evasion.UNRELATED_SITES}
    return shingles, hosts


def _shingles(text: str, k: int = 6) -> set[tuple[str, ...]]:
    words = [w.lower().strip(".,;:!?\"'()>") for w in _WORD.findall(text)]
    return {tuple(words[i : i + k]) for i in range(max(0, len(words) - k + 1))}


def _host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def donors_from(items: list[object]) -> list[Donor]:
    """Donors from labelled ham (spamguard.learn.corpus.LabelledMessage of the train half)."""
    out = []
    for it in items:
        if it.is_spam:  # type: ignore[attr-defined]
            continue
        m = it.message  # type: ignore[attr-defined]
        text = m.visible if m.visible is not None else m.text
        out.append(
            Donor(it.ref, text, m.subject, m.from_name or m.from_addr, m.date, tuple(m.urls))  # type: ignore[attr-defined]
        )
    return out


class Padder:
    """Makes padded copies; every choice comes from one seeded random generator."""

    def __init__(self, donors: list[Donor], seed: int = 21) -> None:
        self.rng = random.Random(seed)
        bench_shingles, bench_hosts = _benchmark_padding()
        self.bench_shingles = bench_shingles
        self.excluded = 0
        self.donors = [d for d in donors if len(_WORD.findall(d.text)) >= 60]
        seen: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (url, donor ref)
        for d in donors:
            for u in d.urls:
                h = _host(u)
                if not h or h in bench_hosts or u in seen or len(u) > 200:
                    continue
                seen.add(u)
                self.links.append((u, d.ref))
        self.subjects = [
            (_SUBJECT_TAGS.sub("", d.subject).strip(), d.ref)
            for d in donors
            if 12 <= len(d.subject) <= 120 and not self._clashes(d.subject)
        ]

    def _clashes(self, text: str) -> bool:
        if _shingles(text) & self.bench_shingles:
            self.excluded += 1
            return True
        return False

    def _donor(self) -> Donor:
        while True:
            d = self.rng.choice(self.donors)
            if not self._clashes(d.text):
                return d

    def copy(self, raw: bytes, ref: str, kind: str) -> Copy | None:
        if kind == "links":
            picked = self.rng.sample(self.links, 50)
            urls = [u for u, _ in picked]
            plain = "\n\n" + "\n".join(urls) + "\n"
            markup = "<p>" + "<br>\n".join(f'<a href="{u}">{html.escape(u)}</a>' for u in urls)
            new = _rewrite(raw, lambda t: t + plain, lambda t: _html_append(t, markup + "</p>"))
            return Copy(new, kind, ref, tuple(sorted({r for _, r in picked}))) if new else None
        if kind == "subject":
            parts: list[str] = []
            refs: list[str] = []
            while sum(len(p) for p in parts) < 90:
                s, r = self.rng.choice(self.subjects)
                parts.append(s)
                refs.append(r)
            subject = ", ".join(parts[:-1]) + " and " + parts[-1][:1].lower() + parts[-1][1:]
            return Copy(with_subject(raw, subject), kind, ref, tuple(refs))
        d = self._donor()
        if kind == "paragraph":
            words = _WORD.findall(d.text)
            n = self.rng.randint(60, min(150, len(words)))
            start = self.rng.randint(0, len(words) - n)
            para = " ".join(words[start : start + n])
            new = _rewrite(
                raw,
                lambda t: t + "\n\n" + para + "\n",
                lambda t: _html_append(t, "<p>" + html.escape(para) + "</p>"),
            )
        else:  # quoted
            lines = [ln.rstrip() for ln in d.text.splitlines() if ln.strip()]
            n = self.rng.randint(6, 20)
            start = self.rng.randint(0, max(0, len(lines) - n))
            body = "\n".join("> " + ln for ln in lines[start : start + n])
            quote = f"On {d.date or 'Monday'}, {d.name or 'a friend'} wrote:\n{body}"
            new = _rewrite(
                raw,
                lambda t: t + "\n\n" + quote + "\n",
                lambda t: _html_append(
                    t, "<blockquote>" + html.escape(quote).replace("\n", "<br>\n") + "</blockquote>"
                ),
            )
        return Copy(new, kind, ref, (d.ref,)) if new else None


def _html_append(text: str, addition: str) -> str:
    m = re.search(r"</body\s*>", text, re.IGNORECASE)
    return text[: m.start()] + addition + text[m.start() :] if m else text + addition


def _part_text(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    try:
        return payload.decode(part.get_content_charset() or "latin-1", "replace")
    except LookupError:
        return payload.decode("latin-1")


def _rewrite(raw: bytes, plain, markup) -> bytes | None:  # type: ignore[no-untyped-def]
    """Apply ``plain``/``markup`` to every inline text part; None when there is none."""
    msg = email.message_from_bytes(raw, policy=compat32)
    changed = False
    for part in msg.walk():
        if part.is_multipart() or part.get_content_type() not in ("text/plain", "text/html"):
            continue
        if "attachment" in str(part.get("Content-Disposition") or "").lower():
            continue
        fn = markup if part.get_content_type() == "text/html" else plain
        cs = email.charset.Charset("utf-8")
        cs.body_encoding = email.charset.QP
        text = fn(_part_text(part))
        del part["Content-Transfer-Encoding"]
        part.set_payload(text, cs)
        changed = True
    if not changed:
        return None
    out = io.BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return out.getvalue()


def padded_copies(
    spam: list[tuple[str, bytes]],
    donors: list[Donor],
    per_spam: int,
    seed: int = 21,
    kinds: tuple[str, ...] = KINDS,
) -> tuple[list[Copy], int]:
    """``per_spam`` copies of each spam, ``kinds`` taken in turn (spam i gets kinds i, i+1,
    ...); also the number of donor passages skipped for sharing text with the benchmark."""
    padder = Padder(donors, seed)
    out: list[Copy] = []
    for i, (ref, raw) in enumerate(spam):
        for j in range(per_spam):
            kind = kinds[(i + j) % len(kinds)]
            try:
                c = padder.copy(raw, ref, kind)
            except Exception:  # a message the standard library cannot rewrite
                c = None
            if c is not None:
                out.append(c)
    return out, padder.excluded
