"""The shipped cascade, writing down every message it scores.

For subprocess tests: ``SPAMGUARD_SCORER=counting_scorer:factory`` with
``TEST_SCORED_LOG=<file>``. Each call appends one line per message, ``<pid> <content hash>``,
after the model returned and before the engine sees the scores, so a test can tell which
process scored what, across a SIGKILL and a restart. The scores are the real model's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from spamguard.message import Message
from spamguard.scoring.base import Score


class CountingScorer:
    def __init__(self, inner: Any, log: str) -> None:
        self.inner = inner
        self.log = log

    @property
    def version(self) -> str:
        return str(self.inner.version)

    def __getattr__(self, name: str) -> Any:  # recorder, model, ...: the real scorer's
        return getattr(self.inner, name)

    def score(self, messages: Sequence[Message]) -> list[Score]:
        scores: list[Score] = self.inner.score(messages)
        self._write(messages)
        return scores

    def begin(
        self, messages: Sequence[Message], background: Executor | None = None
    ) -> Callable[[], list[Score]]:
        """The cascade's two halves (the engine's pipelined first sync): written down when
        the second half returns, as `score` does when it returns."""
        finish = self.inner.begin(messages, background)

        def scores() -> list[Score]:
            out: list[Score] = finish()
            self._write(messages)
            return out

        return scores

    def _write(self, messages: Sequence[Message]) -> None:
        lines = "".join(f"{os.getpid()} {m.content_hash}\n" for m in messages)
        with open(self.log, "a", encoding="ascii") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())


def factory() -> CountingScorer:
    from spamguard.scoring.assemble import load_default_scorer

    return CountingScorer(load_default_scorer(None), os.environ["TEST_SCORED_LOG"])
