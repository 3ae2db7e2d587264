"""Padding-proof scoring: a message is also read as its most spam-like part.

Spammers dilute their message: 50 unrelated links, a paragraph of ordinary prose or a quoted
newsletter appended, the body repeated links of its own, or an innocent subject in place of
the real one. Every block of the head is normalised per message (and the naive-Bayes score
is a mean over the message's terms), so whatever is added waters down what was there: a
clear spam with 50 links appended scored 0.03. Retraining cannot undo that for a model
already shipped, and it would only move the lever.

So the scorer also reads each message through a few *views*, parts a reader sees as one
message:

* ``opening-N``: the subject and the paragraphs of the visible text (hidden HTML left out)
  that fit in N characters, for N in `ViewConfig.openings`;
* ``trimmed-K``: the message without its last K paragraphs (a run of bare links counts as
  one paragraph), for K in `ViewConfig.trims`;
* ``body``: the message without its subject;
* ``inner`` (named by a model, issue 21 session 10): the message without its longest
  paragraph when that is not its last: padding put before a footer of the spammer's own,
  which the trimmed view keeps while it drops the footer.

Each view keeps only the links found in its text (or not in the text left out), at most
`ViewConfig.max_links`. A message's log-odds is lifted towards its most spam-like view's: by
`ViewConfig.lift_weight` times what the view beats it by, less `ViewConfig.view_margin`
(weight 1 and margin 0: the highest of its own and its views'). The winning view is scored
with its own sentence vector (`ViewConfig.own_embedding`, one encoder call more for that
message unless the encoder reads the same tokens of both: `HeadScorer._views`), because
padding and an innocent subject colour the whole message's vector too.
Padding then only adds views, it cannot dilute the part that was there. Views identical to
the message are not scored.

Gated (`ViewConfig.gated`), a view is read only when what it leaves out looks like padding
(a run of links, a quote, a large share of ordinary text, a subject far longer than
ordinary): mail with nothing like that is scored exactly as without views. The cascade's
cheap stage, which reads no views, does not decide such mail as legitimate unless it finds
the views legitimate too (it scores them itself: spamguard.scoring.cascade). An
``unpadded`` view (without every run of links wherever it is) may be named by a model.
The views of a message all read one split of its text into paragraphs.
Ordinary text left out may also count as padding at a smaller share when it is *foreign*
to the rest of the message: few of its words occur in the rest or the subject
(`ViewConfig.gate_foreign_overlap`; a word count, no encoder call), as a paragraph about a
library roof appended to a phishing mail is; in the middle of a message (``inner``) ordinary
text counts only when foreign. A copy of the padding dropped that ran into the paragraph
next to it (two quoted blocks in a row read as one) goes with it.

The settings were chosen on train data only (the SpamAssassin train half and the modern
corpus's train part: benchmarks/evasion_views.py). A model's config.json may carry a
``"views"`` block (``{"enabled": true}`` turns them on); without one they are off. The
shipped default-3g (default-3's trained files) reads gated views (its config.json's block:
trimmed, unpadded and body, gates chosen by benchmarks/views_cv.py on train data; the inner
view and the foreign-text gate added in session 10 on train halves only, by
benchmarks/views_sweep.py); default-3 ran without them: see `ViewConfig.enabled` for what
ungated views cost it. Figures: benchmarks/results/issue21-evasion-session10.txt.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from spamguard.message import Message

__all__ = [
    "ALL_VIEWS",
    "VIEW_NAMES",
    "Dropped",
    "ViewConfig",
    "flatten",
    "looks_padded",
    "message_views",
    "subject_chars",
    "view_traits",
]

VIEW_NAMES = ("opening", "trimmed", "body")
# Views a model may name in its config (the default reads VIEW_NAMES): ``unpadded`` is the
# message without every run of at least `ViewConfig.gate_links` bare links, wherever they
# are (links followed by a line of the spammer's own, or put in each part of the message,
# are not its last paragraph).
ALL_VIEWS = (*VIEW_NAMES, "unpadded", "inner")


@dataclass(frozen=True, slots=True)
class ViewConfig:
    """Which views a scorer reads and how far."""

    # Off unless a model's config.json turns them on (the shipped default-3g turns on gated
    # views, below). Ungated, with the settings below, chosen on train data, default-3 held
    # its ranking on the SpamAssassin test half (AUC 0.99976) but moved 5 of its 2,075 ham
    # instead of 2 (hard-ham-1: 4 instead of 2) and fell to 94.8% recall at 0.1% FPR (the
    # target is 96%): views lift some legitimate mail as well as padded spam; gated views
    # (default-3g) keep the test-half figures.
    enabled: bool = False
    views: tuple[str, ...] = VIEW_NAMES
    # The openings read, each a view of its own (cut at the last paragraph that fits). Shorter
    # openings (250, 500 characters) caught more padded spam on the modern train part but
    # lifted 3-5 more of its 175 legitimate list messages past the flag threshold: a few
    # lines of a patch or a reply read like spam when cut off (benchmarks/evasion_views.py).
    openings: tuple[int, ...] = (1000, 2000)
    # The message without its last 1, 2, ... paragraphs (a run of bare links is one); a
    # second and third lifted legitimate mail as well.
    trims: tuple[int, ...] = (1,)
    max_links: int = 10
    # Log-odds a view must beat the whole message by before it counts.
    view_margin: float = 0.0
    # How much of what the view beats the message by (less the margin) is added to the
    # message's log-odds: 1 is "the higher of the two". A model chooses it with the margin on
    # out-of-fold scores of real training mail and padded copies (benchmarks/views_cv.py).
    lift_weight: float = 1.0
    # Score the winning view with its own sentence vector (one more encoder call for that
    # message) rather than the whole message's, which the padding or the subject colours.
    own_embedding: bool = True
    # Gates (issue 21, default-7): a view is read only when what it leaves out looks like
    # padding, so mail that is not padded is scored exactly as without views. Off (False):
    # every view is read, as default-6 did. On: a trimmed view or an opening counts only
    # when what it drops is a run of at least `gate_links` bare links, a quoted block (with
    # the line introducing it) of at least `gate_quote_share` of the text, or ordinary text
    # of at least `gate_text_share` of it and `gate_text_chars` characters (a short
    # message's last line is no padding); the subject-less view only when the subject
    # (without "Re:"/list tags) is at least `gate_subject_chars` long, far longer than
    # ordinary subjects. Chosen on train data (benchmarks/views_cv.py).
    gated: bool = False
    gate_links: int = 10
    gate_quote_share: float = 0.0
    gate_text_share: float = 0.4
    gate_text_chars: int = 300
    gate_subject_chars: int = 100
    # Log-odds the subject-less view must beat the message by (negative: it is credited
    # with what an ordinary subject adds, since a padded subject replaced the real one).
    # None: `view_margin`, as for the other views.
    body_margin: float | None = None
    # Foreign text (issue 21, session 10): ordinary text left out counts as padding at a
    # smaller share, `gate_foreign_share`, when at most `gate_foreign_overlap` of its
    # distinct words (four letters or more) occur in the rest of the message and subject: a
    # paragraph about something else entirely. No encoder call: a word count. Negative
    # overlap: off.
    gate_foreign_overlap: float = -1.0
    gate_foreign_share: float = 2.0
    # A foreign subject (issue 21, session 11): when at most `gate_subject_overlap` of the
    # long subject's distinct words (four letters or more) occur in the text, the subject is
    # about something else than the message: the subject-less view is then named
    # "body-foreign" and must beat the message by `body_foreign_margin` (negative: credited
    # with what the real subject would have added). Negative overlap or None: off.
    gate_subject_overlap: float = -1.0
    body_foreign_margin: float | None = None

    def margin(self, view: str) -> float:
        """The margin the named view must beat the whole message by."""
        if view == "body-foreign" and self.body_foreign_margin is not None:
            return self.body_foreign_margin
        if view in ("body", "body-foreign") and self.body_margin is not None:
            return self.body_margin
        return self.view_margin

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "views": list(self.views),
            "openings": list(self.openings),
            "trims": list(self.trims),
            "max_links": self.max_links,
            "view_margin": self.view_margin,
            "lift_weight": self.lift_weight,
            "own_embedding": self.own_embedding,
            **(
                {
                    "gated": True,
                    "gate_links": self.gate_links,
                    "gate_quote_share": self.gate_quote_share,
                    "gate_text_share": self.gate_text_share,
                    "gate_text_chars": self.gate_text_chars,
                    "gate_subject_chars": self.gate_subject_chars,
                }
                if self.gated
                else {}
            ),
            **({"body_margin": self.body_margin} if self.body_margin is not None else {}),
            **(
                {
                    "gate_foreign_overlap": self.gate_foreign_overlap,
                    "gate_foreign_share": self.gate_foreign_share,
                }
                if self.gate_foreign_overlap >= 0
                else {}
            ),
            **(
                {
                    "gate_subject_overlap": self.gate_subject_overlap,
                    "body_foreign_margin": self.body_foreign_margin,
                }
                if self.gate_subject_overlap >= 0 and self.body_foreign_margin is not None
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ViewConfig:
        if not data:
            return cls()
        base = cls()
        views = tuple(str(v) for v in data.get("views", base.views))
        unknown = [v for v in views if v not in ALL_VIEWS]
        if unknown:
            raise ValueError(f"unknown scoring view(s) {', '.join(map(repr, unknown))}")
        return cls(
            enabled=bool(data.get("enabled", base.enabled)),
            views=views,
            openings=tuple(int(n) for n in data.get("openings", base.openings)),
            trims=tuple(int(n) for n in data.get("trims", base.trims)),
            max_links=int(data.get("max_links", base.max_links)),
            view_margin=float(data.get("view_margin", base.view_margin)),
            lift_weight=float(data.get("lift_weight", base.lift_weight)),
            own_embedding=bool(data.get("own_embedding", base.own_embedding)),
            gated=bool(data.get("gated", base.gated)),
            gate_links=int(data.get("gate_links", base.gate_links)),
            gate_quote_share=float(data.get("gate_quote_share", base.gate_quote_share)),
            gate_text_share=float(data.get("gate_text_share", base.gate_text_share)),
            gate_text_chars=int(data.get("gate_text_chars", base.gate_text_chars)),
            gate_subject_chars=int(data.get("gate_subject_chars", base.gate_subject_chars)),
            body_margin=(None if data.get("body_margin") is None else float(data["body_margin"])),
            gate_foreign_overlap=float(data.get("gate_foreign_overlap", base.gate_foreign_overlap)),
            gate_foreign_share=float(data.get("gate_foreign_share", base.gate_foreign_share)),
            gate_subject_overlap=float(data.get("gate_subject_overlap", base.gate_subject_overlap)),
            body_foreign_margin=(
                None
                if data.get("body_foreign_margin") is None
                else float(data["body_foreign_margin"])
            ),
        )


_BLOCK_SPLIT = re.compile(r"\n\s*\n")
_BARE_URL = re.compile(r"\s*(?:https?://|www\.)\S+\s*")
_QUOTED = re.compile(r"\s*>")
# The line that introduces a quote: "On Mon, 3 Jun 2002, Ann wrote:", "Ann <a@b> writes:".
_ATTRIBUTION = re.compile(r"(?is).{0,300}\b(?:wrote|writes|schrieb|a écrit|escribió)\s*:\s*")


def _kind(block: str) -> str:
    """``links`` for a paragraph of bare links only, ``quote`` for one of quoted lines only
    (each starting with ">", the first line may introduce them), else ``text``."""
    lines = [line for line in block.splitlines() if line.strip()]
    if lines and all(_BARE_URL.fullmatch(line) for line in lines):
        return "links"
    if lines and all(_QUOTED.match(line) for line in lines):
        return "quote"
    # A quote right under the line that introduces it, as plain-text replies have it.
    if (
        len(lines) > 1
        and _ATTRIBUTION.fullmatch(lines[0])
        and all(_QUOTED.match(line) for line in lines[1:])
    ):
        return "quote"
    return "text"


def _blocks(text: str) -> list[str]:
    """The text's paragraphs; a run of paragraphs that are each bare links, or each quoted
    lines, counts as one (HTML comes out one line per paragraph: a list of links or a quoted
    message appended as HTML would otherwise be many), and a quote takes the line that
    introduces it ("On ..., Ann wrote:") with it."""
    return [block for block, _ in _blocks_and_kinds(text)]


def _blocks_and_kinds(text: str) -> list[tuple[str, str]]:
    """`_blocks` with each paragraph's kind (`_kind`; a quote with its introducing line is
    ``quote``)."""
    out: list[str] = []
    kinds: list[str] = []
    for block in _BLOCK_SPLIT.split(text.strip()):
        kind = _kind(block)
        if kind == "quote" and kinds and kinds[-1] == "text" and _ATTRIBUTION.fullmatch(out[-1]):
            kinds[-1] = "quote"
        if kind != "text" and kinds and kinds[-1] == kind:
            out[-1] += "\n\n" + block
        else:
            out.append(block)
            kinds.append(kind)
    return list(zip(out, kinds, strict=True))


@dataclass(frozen=True, slots=True)
class Dropped:
    """What a view leaves out of its message, as the gates read it."""

    # How much of the visible text it leaves out, by kind of paragraph (characters).
    links_chars: int = 0
    quote_chars: int = 0
    text_chars: int = 0
    # Bare links among what it leaves out.
    links: int = 0
    # The subject it leaves out (without "Re:" and list tags), characters; 0: it keeps it.
    subject_chars: int = 0
    # The message's visible text, characters.
    total_chars: int = 1
    # Of the distinct words (four letters or more) of the ordinary text left out, the share
    # that occur in what is kept (text and subject); 1 when none is left out or what is kept
    # has too few words to tell (`_FOREIGN_MIN_WORDS`).
    text_overlap: float = 1.0

    def share(self, kind: str) -> float:
        return float(getattr(self, f"{kind}_chars")) / max(1, self.total_chars)

    def looks_like_padding(self, cfg: ViewConfig, view: str = "trimmed") -> bool:
        """Whether what the ``view`` leaves out is padding by the config's gates: each kind
        left out must pass its own (a run of links, a quote, a large share of ordinary
        text). An opening never counts ordinary text as padding: what follows the opening
        of a long message is mostly just the rest of it."""
        if self.subject_chars:
            return self.subject_chars >= cfg.gate_subject_chars
        if view.startswith("opening") and self.text_chars:
            return False
        parts = []
        if self.links_chars:
            parts.append(self.links >= cfg.gate_links)
        if self.quote_chars:
            parts.append(self.share("quote") >= cfg.gate_quote_share)
        if self.text_chars:
            share = cfg.gate_text_share
            if cfg.gate_foreign_overlap >= 0 and self.text_overlap <= cfg.gate_foreign_overlap:
                share = min(share, cfg.gate_foreign_share)
            elif view == "inner":
                # Ordinary text in the middle of a message is padding only when foreign.
                return False
            parts.append(self.share("text") >= share and self.text_chars >= cfg.gate_text_chars)
        return bool(parts) and all(parts)


def _dropped(blocks: list[tuple[str, str]], total: int, kept: str = "") -> Dropped:
    chars = {"links": 0, "quote": 0, "text": 0}
    links = 0
    for block, kind in blocks:
        chars[kind] += len(block)
        if kind == "links":
            links += _links(block)
    overlap = word_overlap(" ".join(b for b, k in blocks if k == "text"), kept)
    return Dropped(
        links_chars=chars["links"],
        quote_chars=chars["quote"],
        text_chars=chars["text"],
        links=links,
        total_chars=max(1, total),
        text_overlap=overlap,
    )


def word_overlap(part: str, rest: str) -> float:
    """Of the distinct words (four letters or more) of ``part``, the share that occur in
    ``rest``; 1 when ``part`` has none or ``rest`` has too few words to tell
    (`_FOREIGN_MIN_WORDS`): the foreign-text and foreign-subject tests."""
    kept = set(_WORD.findall(rest.lower()))
    if len(kept) < _FOREIGN_MIN_WORDS:
        return 1.0
    words = set(_WORD.findall(part.lower()))
    return len(words & kept) / len(words) if words else 1.0


# A word for the foreign-text test: four letters or more (short words are shared by any
# two texts of a language).
_WORD = re.compile(r"[^\W\d_]{4,}")
# Below this many distinct words in what is kept, nothing is foreign to it: a reply of "Best
# regards, Tomer" under a long quote shares no words with the quote (modern train ham).
_FOREIGN_MIN_WORDS = 20


def _cut(msg: Message, kept: str, gone: str, cfg: ViewConfig) -> Message:
    """``msg`` reading only ``kept`` of its text: links only in ``gone`` left out, at most
    `ViewConfig.max_links` of them, hidden HTML text left out (that the message hides text
    still counts: the view is the message without its padding)."""
    urls = tuple(u for u in msg.urls if u in kept or u not in gone)[: cfg.max_links]
    domains = {_domain(u) for u in urls}
    return dataclasses.replace(
        msg,
        text=kept,
        visible=None,
        hidden_chars=msg.hidden_chars,
        urls=urls,
        url_domains=tuple(d for d in msg.url_domains if d in domains),
    )


class _Split:
    """A message's visible text split into paragraphs once (`_blocks_and_kinds`), when the
    first view asks: every view of the message reads the same split."""

    __slots__ = ("_blocks", "text")

    def __init__(self, msg: Message) -> None:
        self.text = msg.visible_text
        self._blocks: list[tuple[str, str]] | None = None

    @property
    def blocks(self) -> list[tuple[str, str]]:
        if self._blocks is None:
            self._blocks = _blocks_and_kinds(self.text)
        return self._blocks


def _opening(
    msg: Message, chars: int, cfg: ViewConfig, split: _Split | None = None
) -> tuple[Message, Dropped]:
    """The paragraphs that fit in ``chars`` characters (the first one cut between words when
    even it is longer), and what that leaves out."""
    split = split or _Split(msg)
    text = split.text
    if len(text) <= chars:
        return _cut(msg, text, "", cfg), Dropped(total_chars=max(1, len(text)))
    blocks = split.blocks
    kept = ""
    n = 0
    for block, _ in blocks:
        candidate = f"{kept}\n\n{block}" if kept else block
        if len(candidate) > chars:
            break
        kept = candidate
        n += 1
    if not kept:
        cut = text[:chars]
        space = max(cut.rfind(" "), cut.rfind("\n"))
        kept = cut[:space] if space > chars // 2 else cut
        # The first paragraph cut inside: its rest is left out as ordinary text.
        rest = [(blocks[0][0][len(kept) :], "text" if blocks[0][1] == "text" else blocks[0][1])]
        gone = rest + blocks[1:]
    else:
        gone = blocks[n:]
    return _cut(msg, kept, text[len(kept) :], cfg), _dropped(gone, len(text))


def _trimmed(
    msg: Message, drop: int, cfg: ViewConfig, split: _Split | None = None
) -> tuple[Message, Dropped] | None:
    """The message without its last ``drop`` paragraphs (None when it has too few), and
    what that leaves out."""
    blocks = (split or _Split(msg)).blocks
    if len(blocks) <= drop:
        return None
    return _without(msg, blocks[:-drop], blocks[-drop:], cfg)


def _without(
    msg: Message, kept: list[tuple[str, str]], gone: list[tuple[str, str]], cfg: ViewConfig
) -> tuple[Message, Dropped]:
    """``msg`` with only the ``kept`` paragraphs, and what leaving out ``gone`` leaves out."""
    if cfg.gated:
        # The same padding appended to each part of a message (plain text and HTML) comes
        # out twice: every copy of what is dropped goes, also a copy that ran into the
        # paragraph next to it (two quotes in a row are read as one).
        kept, gone = _without_copies(kept, gone)
    kept_text = "\n\n".join(b for b, _ in kept)
    view = _cut(msg, kept_text, "\n\n".join(b for b, _ in gone), cfg)
    return view, _dropped(gone, len(msg.visible_text), f"{msg.subject}\n{kept_text}")


def _without_copies(
    kept: list[tuple[str, str]], gone: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    same = [_words(b) for b, _ in gone if len(b) >= _MIN_REPEAT]
    if not same:
        return kept, gone
    out: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    for block, kind in kept:
        words = _words(block)
        if words in same or (len(block) >= _MIN_REPEAT and any(words in c for c in same)):
            extra.append((block, kind))
            continue
        for copy in same:
            if copy in words:
                rest = " ".join(words.replace(copy, " ").split())
                extra.append((copy, kind))
                words = rest
                block = rest
        if block:
            out.append((block, kind))
    return out, extra + gone


# A dropped paragraph's other copies are dropped too only from this many characters: a short
# line ("Thanks", a signature) may well repeat in a message of its own.
_MIN_REPEAT = 200


def _words(block: str) -> str:
    return " ".join(block.split())


def _inner(
    msg: Message, cfg: ViewConfig, split: _Split | None = None
) -> tuple[Message, Dropped] | None:
    """The message without its longest paragraph when only a short footer follows it (None
    when it has fewer than three paragraphs, the longest is the last, or more than
    `_FOOTER_CHARS` follow it): padding put before a footer of the spammer's own ("click
    here to remove yourself"), which the trimmed view keeps while it drops the footer.
    Ordinary text counts as padding here only when foreign (`ViewConfig.gate_foreign_overlap`).
    """
    blocks = (split or _Split(msg)).blocks
    if len(blocks) < 3:
        return None
    longest = max(range(len(blocks)), key=lambda i: len(blocks[i][0]))
    after = sum(len(b) for b, _ in blocks[longest + 1 :])
    if longest == len(blocks) - 1 or after > _FOOTER_CHARS:
        return None
    return _without(msg, blocks[:longest] + blocks[longest + 1 :], [blocks[longest]], cfg)


# What may follow the paragraph the inner view drops: a footer or a signature. Not a reply
# under a quote (the modern train ham's replies: a quote dropped from their middle lifted
# them; benchmarks/results/issue21-evasion-session10.txt).
_FOOTER_CHARS = 300


def _unpadded(
    msg: Message, cfg: ViewConfig, split: _Split | None = None
) -> tuple[Message, Dropped] | None:
    """The message without every run of at least `ViewConfig.gate_links` bare links (None
    when it has none), and what that leaves out. Quotes stay: without a quote in the middle
    of a reply, the list mail of the modern train half read more like spam (in CV, 2 more
    of its ham flagged); a quote at the end is the trimmed view's."""
    split = split or _Split(msg)
    text = split.text
    kept: list[str] = []
    gone: list[tuple[str, str]] = []
    for block, kind in split.blocks:
        if kind == "links" and _links(block) >= cfg.gate_links:
            gone.append((block, kind))
        else:
            kept.append(block)
    if not gone:
        return None
    view = _cut(msg, "\n\n".join(kept), "\n\n".join(b for b, _ in gone), cfg)
    return view, _dropped(gone, len(text))


def _links(block: str) -> int:
    return sum(1 for line in block.splitlines() if line.strip())


def _domain(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else url
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return host.rsplit("@", 1)[-1].split(":", 1)[0].strip(".").lower()[:253]


def _without_subject(msg: Message) -> Message:
    headers = tuple((k, "" if k.lower() == "subject" else v) for k, v in msg.headers)
    return dataclasses.replace(msg, subject="", headers=headers)


def message_views(msg: Message, cfg: ViewConfig) -> list[tuple[str, Message]]:
    """The views of ``msg`` that differ from it (and from each other), by name; with
    `ViewConfig.gated`, only those whose left-out part looks like padding."""
    out: list[tuple[str, Message]] = []
    seen: list[Message] = [msg]
    for name, view, dropped in _candidates(msg, cfg):
        if cfg.gated and not dropped.looks_like_padding(cfg, name):
            continue
        if any(_same(view, other) for other in seen):
            continue
        seen.append(view)
        out.append((name, view))
    return out


_SUBJECT_TAGS = re.compile(r"^(?:(?:re|fwd?|aw|sv|tr)\s*:\s*|\[[^\]]*\]\s*)+", re.IGNORECASE)


def subject_overlap(subject: str, text: str) -> float:
    """`word_overlap` of the subject (without "Re:" and list tags) with ``text``."""
    return word_overlap(_SUBJECT_TAGS.sub("", subject), text)


def subject_chars(subject: str) -> int:
    """The subject's length without reply/forward prefixes and list tags ("[ILUG]")."""
    return len(_SUBJECT_TAGS.sub("", subject.strip()).strip())


def view_traits(msg: Message, cfg: ViewConfig) -> list[tuple[str, Message, Dropped]]:
    """Every view of ``msg`` that differs from it, ungated and each under its own name (two
    views may be equal), with what it leaves out: benchmarks/views_cv.py chooses the gates
    on these."""
    return [(n, v, d) for n, v, d in _candidates(msg, cfg) if not _same(v, msg)]


def _candidates(msg: Message, cfg: ViewConfig) -> Iterator[tuple[str, Message, Dropped]]:
    """Every view the config names, with what it leaves out, one at a time (so that
    `looks_padded` can stop at the first that looks padded), all reading one paragraph
    split of the message."""
    if not cfg.enabled:
        return
    split = _Split(msg)
    for name in cfg.views:
        if name == "opening":
            for n in cfg.openings:
                yield (f"opening-{n}", *_opening(msg, n, cfg, split))
        elif name == "trimmed":
            for n in cfg.trims:
                got = _trimmed(msg, n, cfg, split)
                if got is not None:
                    yield (f"trimmed-{n}", *got)
        elif name == "unpadded":
            got = _unpadded(msg, cfg, split)
            if got is not None:
                yield ("unpadded", *got)
        elif name == "inner":
            got = _inner(msg, cfg, split)
            if got is not None:
                yield ("inner", *got)
        elif name == "body" and msg.subject.strip():
            dropped = Dropped(
                subject_chars=max(1, subject_chars(msg.subject)),
                total_chars=max(1, len(split.text)),
            )
            foreign = (
                cfg.gate_subject_overlap >= 0
                and cfg.body_foreign_margin is not None
                and dropped.subject_chars >= cfg.gate_subject_chars
                and subject_overlap(msg.subject, split.text) <= cfg.gate_subject_overlap
            )
            yield ("body-foreign" if foreign else "body", _without_subject(msg), dropped)


def looks_padded(msg: Message, cfg: ViewConfig) -> bool:
    """Whether a gated scorer would read a view of ``msg`` (`ViewConfig.gated`): something
    in it looks like padding. The same views and gates as `message_views`, so the two
    cannot drift apart (the cascade reads `message_views` itself: a cheaper stage that
    cannot read views scores them before it calls such a message legitimate,
    spamguard.scoring.cascade)."""
    if not (cfg.enabled and cfg.gated):
        return False
    return any(dropped.looks_like_padding(cfg, name) for name, _, dropped in _candidates(msg, cfg))


def _same(a: Message, b: Message) -> bool:
    return (
        a.subject == b.subject
        and a.visible_text == b.visible_text
        and a.text == b.text
        and a.urls == b.urls
        and a.url_domains == b.url_domains
        and a.headers == b.headers
    )


def flatten(views: Sequence[list[tuple[str, Message]]]) -> tuple[list[Message], list[int]]:
    """All views of a batch in one list, and for each the index of the message it came from."""
    messages: list[Message] = []
    owner: list[int] = []
    for i, vs in enumerate(views):
        for _, view in vs:
            messages.append(view)
            owner.append(i)
    return messages, owner
