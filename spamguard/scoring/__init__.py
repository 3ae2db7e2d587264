"""Scoring: messages in, calibrated spam probabilities with evidence out."""

from __future__ import annotations

from spamguard.scoring.base import Evidence, Neighbour, Score, Scorer

__all__ = ["Evidence", "Neighbour", "Score", "Scorer"]
