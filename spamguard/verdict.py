"""What a spam probability means for a message: the thresholds and the verdict they give.

The one home of the default thresholds: clear spam (p >= 0.90) moves to Junk, the uncertain
(p >= 0.50) is flagged in place. A model's config.json, an account's settings and the command
line may each set their own; every fallback reads the defaults here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_FLAG_THRESHOLD",
    "DEFAULT_MOVE_THRESHOLD",
    "Thresholds",
    "Verdict",
    "model_thresholds",
    "verdict_for",
]

DEFAULT_MOVE_THRESHOLD = 0.90
DEFAULT_FLAG_THRESHOLD = 0.50

Verdict = Literal["spam", "flag", "ham"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """p_spam at or above `move` goes to Junk; at or above `flag` is marked in place."""

    move: float = DEFAULT_MOVE_THRESHOLD
    flag: float = DEFAULT_FLAG_THRESHOLD


def verdict_for(
    p_spam: float, move: float = DEFAULT_MOVE_THRESHOLD, flag: float = DEFAULT_FLAG_THRESHOLD
) -> Verdict:
    """`spam` at or above the move threshold, `flag` at or above the flag one, else `ham`."""
    if p_spam >= move:
        return "spam"
    if p_spam >= flag:
        return "flag"
    return "ham"


def model_thresholds(saved: Mapping[str, float] | None) -> Thresholds:
    """The thresholds a model's config.json carries; the defaults for any it does not."""
    saved = saved or {}
    return Thresholds(
        move=float(saved.get("move", DEFAULT_MOVE_THRESHOLD)),
        flag=float(saved.get("flag", DEFAULT_FLAG_THRESHOLD)),
    )
