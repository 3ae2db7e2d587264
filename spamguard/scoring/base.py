"""The scoring contract: `Scorer.score(messages) -> scores`, and the values it returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from spamguard.message import Message
from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD, Verdict, verdict_for

__all__ = ["Evidence", "Neighbour", "Score", "Scorer", "StagedScorer", "score_batches"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason behind a score: a feature or term and how far it pushed (log-odds)."""

    feature: str
    weight: float
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"feature": self.feature, "weight": round(self.weight, 4), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A labelled training message close to the scored one in embedding space."""

    label: Literal["spam", "ham"]
    similarity: float
    subject: str
    ref: str

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "similarity": round(self.similarity, 4),
            "subject": self.subject,
            "ref": self.ref,
        }


@dataclass(frozen=True, slots=True)
class Score:
    """What a scorer says about one message."""

    p_spam: float
    stage: str
    model_version: str
    evidence: tuple[Evidence, ...] = field(default=())
    neighbours: tuple[Neighbour, ...] = field(default=())

    def verdict(
        self, move: float = DEFAULT_MOVE_THRESHOLD, flag: float = DEFAULT_FLAG_THRESHOLD
    ) -> Verdict:
        return verdict_for(self.p_spam, move, flag)


@runtime_checkable
class Scorer(Protocol):
    """Anything that turns messages into scores, one score per message, in order."""

    @property
    def version(self) -> str: ...

    def score(self, messages: Sequence[Message]) -> list[Score]: ...


@runtime_checkable
class StagedScorer(Scorer, Protocol):
    """A scorer that can score in two halves (the cascade): `begin` runs what must run now
    and returns the function that finishes; with ``background``, work that leaves the GIL
    (the sentence encoder) runs there in between. The scores are `score`'s."""

    def begin(
        self, messages: Sequence[Message], background: Executor | None = None
    ) -> Callable[[], list[Score]]: ...


def score_batches(scorer: Scorer, batches: Iterable[Sequence[Message]]) -> Iterator[list[Score]]:
    """``scorer.score`` of each batch, in order: pipelined when the scorer can overlap one
    batch's later stages with the next batch (`Cascade.score_batches`), else one by one.
    ``batches`` is read lazily, so making the next batch (parsing) overlaps too."""
    pipelined = getattr(scorer, "score_batches", None)
    if pipelined is not None:
        yield from pipelined(batches)
        return
    for batch in batches:
        yield scorer.score(batch)
