"""The nearest messages among the user's own labelled mail, for the Why pane.

A model's neighbour set is the corpus it was trained on (and a personal version copies its
parent's), so "nearest known messages" used to be 2002 mailing-list subjects. The messages the
user (or their other mail client, or a rescue from Junk) labelled in this account are closer
to what they get and mean more to them: they are looked up here, with the same encoder and
the same similarity as the model's set, and shown first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from spamguard.errors import NotMailError
from spamguard.learn.labels import latest_labels
from spamguard.message import Message, parse_message
from spamguard.scoring.base import Neighbour
from spamguard.store import Store

if TYPE_CHECKING:
    import numpy as np

__all__ = ["OWN_REF_PREFIX", "OwnNeighbours", "is_own"]

OWN_REF_PREFIX = "label:"  # a Neighbour.ref of the user's own labelled mail: label:<hash>
Embed = Callable[[Sequence[Message]], "np.ndarray | None"]


def is_own(neighbour: Neighbour) -> bool:
    return neighbour.ref.startswith(OWN_REF_PREFIX)


class OwnNeighbours:
    """One account's labelled messages, embedded once each (kept in memory for the session)."""

    def __init__(self, store: Store, account: str, *, newest: int = 500) -> None:
        self.store = store
        self.account = account
        self.newest = newest
        self._seen: dict[str, tuple[np.ndarray, str] | None] = {}  # hash -> (vector, subject)

    def find(self, message: Message, embed: Embed, k: int = 3) -> tuple[Neighbour, ...]:
        """The ``k`` labelled messages most like ``message`` (itself left out), most similar
        first; () when the model embeds nothing or nothing was labelled."""
        import numpy as np

        rows = sorted(latest_labels(self.store, self.account).values(), key=lambda r: -r.id)
        rows = [r for r in rows if r.content_hash != message.content_hash][: self.newest]
        todo: list[tuple[str, Message]] = []
        for row in rows:
            if row.content_hash in self._seen:
                continue
            raw = self.store.label_raw(row.content_hash)
            try:
                parsed = parse_message(raw) if raw is not None else None
            except NotMailError:
                parsed = None
            if parsed is None:
                self._seen[row.content_hash] = None
            else:
                todo.append((row.content_hash, parsed))
        if todo:
            vectors = embed([m for _, m in todo])
            if vectors is None:
                return ()
            for (digest, parsed), vector in zip(todo, vectors, strict=True):
                self._seen[digest] = (np.asarray(vector, dtype=np.float32), parsed.subject)
        known: list[tuple[str, np.ndarray, str, str]] = []  # label, vector, subject, hash
        for row in rows:
            seen = self._seen.get(row.content_hash)
            if seen is not None:
                known.append((row.label, seen[0], seen[1], row.content_hash))
        if not known:
            return ()
        query = embed([message])
        if query is None:
            return ()
        sims = np.stack([item[1] for item in known]) @ np.asarray(query[0], dtype=np.float32)
        order = np.argsort(-sims)[:k]
        return tuple(
            Neighbour(
                label="spam" if known[i][0] == "spam" else "ham",
                similarity=float(sims[i]),
                subject=known[i][2],
                ref=OWN_REF_PREFIX + known[i][3],
            )
            for i in order
        )
