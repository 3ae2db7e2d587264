"""The LLM as a cascade stage: label logits -> log-odds -> a calibrated probability, cached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spamguard.llm.catalog import CatalogEntry
from spamguard.llm.engine import LLMEngine
from spamguard.llm.prompts import mail_for_prompt
from spamguard.message import Message
from spamguard.scoring.base import Evidence, Score
from spamguard.scoring.cache import LRUScoreCache, ScoreCache

__all__ = [
    "Calibration",
    "LLMScorer",
]


# --------------------------------------------------------------------------- scorer


@dataclass(frozen=True, slots=True)
class Calibration:
    """p = sigmoid(a * logodds + b), fitted on a train-split subset (Platt)."""

    a: float = 1.0
    b: float = 0.0
    fitted: bool = False

    @classmethod
    def from_entry(cls, entry: CatalogEntry, prompt_version: str) -> Calibration:
        cal = entry.calibration or {}
        if cal.get("prompt") == prompt_version and "a" in cal and "b" in cal:
            return cls(float(cal["a"]), float(cal["b"]), True)
        return cls()

    def __call__(self, logodds: np.ndarray) -> np.ndarray:
        z = np.clip(self.a * logodds + self.b, -50.0, 50.0)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class LLMScorer:
    """`Scorer` over an `LLMEngine`: calibrated label-logit probability, cached by content."""

    def __init__(
        self,
        engine: LLMEngine,
        *,
        calibration: Calibration | None = None,
        cache: ScoreCache | None = None,
        stage: str = "llm",
    ) -> None:
        self.engine = engine
        self.calibration = calibration or Calibration.from_entry(
            engine.entry, engine.prompt.version
        )
        self.cache: ScoreCache = cache if cache is not None else LRUScoreCache()
        self.stage = stage

    @property
    def version(self) -> str:
        e = self.engine
        budget = e.settings.token_budget
        return f"llm-{e.entry.name}-{e.entry.sha256[:8]}-{e.prompt.version}-t{budget}"

    def logodds(self, messages: Sequence[Message]) -> np.ndarray:
        return np.asarray(
            self.engine.label_logodds([mail_for_prompt(m) for m in messages]), dtype=np.float64
        )

    def score(self, messages: Sequence[Message]) -> list[Score]:
        version = self.version
        out: list[Score | None] = [self.cache.get(m.content_hash, version) for m in messages]
        todo = [i for i, s in enumerate(out) if s is None]
        if todo:
            raw = self.logodds([messages[i] for i in todo])
            probs = self.calibration(raw)
            for i, lo, p in zip(todo, raw, probs, strict=True):
                score = Score(
                    p_spam=float(p),
                    stage=self.stage,
                    model_version=version,
                    evidence=(
                        Evidence(
                            "llm:label-logits",
                            float(lo),
                            f"the local LLM ({self.engine.entry.name}) read the mail as "
                            + ("spam" if lo > 0 else "not spam"),
                        ),
                    ),
                )
                self.cache.put(messages[i].content_hash, version, score)
                out[i] = score
        return [s for s in out if s is not None]
