"""A deterministic scorer for mail tests: p_spam is the message's X-Test-Score header."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

from spamguard.message import Message
from spamguard.scoring.base import Evidence, Score


class HeaderScorer:
    """Reads ``X-Test-Score``; counts what it scored so tests can check "exactly once"."""

    version = "test-header-1"

    def __init__(self) -> None:
        self.scored: list[str] = []  # content hashes, in order
        self._lock = threading.Lock()

    def score(self, messages: Sequence[Message]) -> list[Score]:
        # Crash tests slow the engine down so random kills land in the middle of the work.
        delay = float(os.environ.get("TEST_SCORER_DELAY", "0"))
        if delay:
            time.sleep(delay * len(messages))
        out = []
        for msg in messages:
            try:
                p = float(msg.header("X-Test-Score") or 0.0)
            except ValueError:
                p = 0.0
            out.append(Score(p, "test", self.version, (Evidence("x-test-score", p),)))
        with self._lock:
            self.scored.extend(m.content_hash for m in messages)
        return out


def factory() -> HeaderScorer:
    """For SPAMGUARD_SCORER=header_scorer:factory in subprocess tests."""
    return HeaderScorer()
