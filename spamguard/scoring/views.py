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
* ``body``: the message without its subject.

Each view keeps only the links found in its text (or not in the text left out), at most
`ViewConfig.max_links`. A message's log-odds is lifted towards its most spam-like view's: by
`ViewConfig.lift_weight` times what the view beats it by, less `ViewConfig.view_margin`
(weight 1 and margin 0: the highest of its own and its views'). The winning view is scored
with its own sentence vector (`ViewConfig.own_embedding`, one encoder call more for that
message), because padding and an innocent subject colour the whole message's vector too.
Padding then only adds views, it cannot dilute the part that was there. Views identical to
the message are not scored.

The settings were chosen on train data only (the SpamAssassin train half and the modern
corpus's train part: benchmarks/evasion_views.py). A model's config.json may carry a
``"views"`` block (``{"enabled": true}`` turns them on); without one they are off, which is
how the shipped model runs: see `ViewConfig.enabled` for what they cost it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spamguard.message import Message

__all__ = ["VIEW_NAMES", "ViewConfig", "flatten", "message_views"]

VIEW_NAMES = ("opening", "trimmed", "body")


@dataclass(frozen=True, slots=True)
class ViewConfig:
    """Which views a scorer reads and how far."""

    # Off unless a model's config.json turns them on. With the settings below, chosen on
    # train data, the shipped default-3 held its ranking on the SpamAssassin test half (AUC
    # 0.99976) but moved 5 of its 2,075 ham instead of 2 (hard-ham-1: 4 instead of 2) and
    # fell to 94.8% recall at 0.1% FPR (the target is 96%): views lift some legitimate mail as
    # well as padded spam. They stay a measured option (benchmarks/evasion.py --views on)
    # until a model is trained with them in place.
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
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ViewConfig:
        if not data:
            return cls()
        base = cls()
        views = tuple(str(v) for v in data.get("views", base.views))
        unknown = [v for v in views if v not in VIEW_NAMES]
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
        )


_BLOCK_SPLIT = re.compile(r"\n\s*\n")
_BARE_URL = re.compile(r"\s*(?:https?://|www\.)\S+\s*")
_QUOTED = re.compile(r"\s*>")
# The line that introduces a quote: "On Mon, 3 Jun 2002, Ann wrote:", "Ann <a@b> writes:".
_ATTRIBUTION = re.compile(r"(?is).{0,300}\b(?:wrote|writes|schrieb|a écrit|escribió)\s*:\s*")


def _kind(block: str) -> str:
    """``links`` for a paragraph of bare links only, ``quote`` for one of quoted lines only
    (each starting with ">"), else ``text``."""
    lines = [line for line in block.splitlines() if line.strip()]
    if lines and all(_BARE_URL.fullmatch(line) for line in lines):
        return "links"
    if lines and all(_QUOTED.match(line) for line in lines):
        return "quote"
    return "text"


def _blocks(text: str) -> list[str]:
    """The text's paragraphs; a run of paragraphs that are each bare links, or each quoted
    lines, counts as one (HTML comes out one line per paragraph: a list of links or a quoted
    message appended as HTML would otherwise be many), and a quote takes the line that
    introduces it ("On ..., Ann wrote:") with it."""
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
    return out


def _cut(msg: Message, kept: str, gone: str, cfg: ViewConfig) -> Message:
    """``msg`` reading only ``kept`` of its text: links only in ``gone`` left out, at most
    `ViewConfig.max_links` of them, hidden HTML text left out."""
    urls = tuple(u for u in msg.urls if u in kept or u not in gone)[: cfg.max_links]
    domains = {_domain(u) for u in urls}
    return dataclasses.replace(
        msg,
        text=kept,
        visible=None,
        hidden_chars=0,
        urls=urls,
        url_domains=tuple(d for d in msg.url_domains if d in domains),
    )


def _opening(msg: Message, chars: int, cfg: ViewConfig) -> Message:
    """The paragraphs that fit in ``chars`` characters (the first one cut between words when
    even it is longer)."""
    text = msg.visible_text
    if len(text) <= chars:
        return _cut(msg, text, "", cfg)
    blocks = _blocks(text)
    kept = ""
    for block in blocks:
        candidate = f"{kept}\n\n{block}" if kept else block
        if len(candidate) > chars:
            break
        kept = candidate
    if not kept:
        cut = text[:chars]
        space = max(cut.rfind(" "), cut.rfind("\n"))
        kept = cut[:space] if space > chars // 2 else cut
    return _cut(msg, kept, text[len(kept) :], cfg)


def _trimmed(msg: Message, drop: int, cfg: ViewConfig) -> Message | None:
    """The message without its last ``drop`` paragraphs (None when it has too few)."""
    blocks = _blocks(msg.visible_text)
    if len(blocks) <= drop:
        return None
    return _cut(msg, "\n\n".join(blocks[:-drop]), "\n\n".join(blocks[-drop:]), cfg)


def _domain(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else url
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return host.rsplit("@", 1)[-1].split(":", 1)[0].strip(".").lower()[:253]


def _without_subject(msg: Message) -> Message:
    headers = tuple((k, "" if k.lower() == "subject" else v) for k, v in msg.headers)
    return dataclasses.replace(msg, subject="", headers=headers)


def message_views(msg: Message, cfg: ViewConfig) -> list[tuple[str, Message]]:
    """The views of ``msg`` that differ from it (and from each other), by name."""
    if not cfg.enabled:
        return []
    candidates: list[tuple[str, Message | None]] = []
    for name in cfg.views:
        if name == "opening":
            candidates += [(f"opening-{n}", _opening(msg, n, cfg)) for n in cfg.openings]
        elif name == "trimmed":
            candidates += [(f"trimmed-{n}", _trimmed(msg, n, cfg)) for n in cfg.trims]
        elif name == "body" and msg.subject.strip():
            candidates.append(("body", _without_subject(msg)))
    out: list[tuple[str, Message]] = []
    seen: list[Message] = [msg]
    for name, view in candidates:
        if view is None or any(_same(view, other) for other in seen):
            continue
        seen.append(view)
        out.append((name, view))
    return out


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
