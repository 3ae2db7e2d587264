"""Scoring: messages in, calibrated spam probabilities with evidence out."""

from __future__ import annotations

from spamguard.scoring.base import (
    DEFAULT_FLAG_THRESHOLD,
    DEFAULT_MOVE_THRESHOLD,
    Evidence,
    Neighbour,
    Score,
    Scorer,
    Verdict,
    verdict_for,
)

__all__ = [
    "DEFAULT_FLAG_THRESHOLD",
    "DEFAULT_MOVE_THRESHOLD",
    "Evidence",
    "Neighbour",
    "Score",
    "Scorer",
    "Verdict",
    "verdict_for",
]
