"""Score in several worker processes: a backlog (first scan, `score --jobs N`) on every core.

Scoring is mostly Python (parsing, hashed terms), so one process uses one core however many
the machine has. A `WorkerPool` starts ``jobs`` processes (spawn), each loading the same
scorer once, and scores chunks of raw messages in them, in order. Each worker's encoder gets
an equal share of the cores, so the pool does not oversubscribe the machine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spamguard.errors import MessageError
from spamguard.message import parse_message
from spamguard.metrics import cpu_count
from spamguard.scoring.assemble import load_default_scorer
from spamguard.scoring.base import Score

__all__ = ["Parsed", "WorkerPool"]

CHUNK = 32


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the parent needs of a message besides its score (for reports)."""

    subject: str
    from_addr: str


_scorer: Any = None
_authserv_id: str | None = None


def _init(
    model_dir: str | None,
    encoder_kind: str | None,
    cascade: bool,
    threads: int,
    authserv_id: str | None = None,
) -> None:
    global _scorer, _authserv_id
    _authserv_id = authserv_id

    _scorer = load_default_scorer(
        Path(model_dir) if model_dir else None, encoder_kind=encoder_kind, cascade=cascade
    )
    for stage in getattr(_scorer, "stages", [_scorer]):
        if hasattr(stage, "encoder_threads"):
            stage.encoder_threads = threads


def _score_chunk(raws: Sequence[bytes]) -> list[tuple[Parsed, Score] | str]:
    """Parse and score one chunk; a message that cannot be parsed gives its error text."""

    parsed: list[Any] = []
    for raw in raws:
        try:
            parsed.append(parse_message(raw, authserv_id=_authserv_id))
        except MessageError as exc:
            parsed.append(str(exc))
    messages = [m for m in parsed if not isinstance(m, str)]
    scores = iter(_scorer.score(messages))
    return [
        m if isinstance(m, str) else (Parsed(m.subject, m.from_addr), next(scores)) for m in parsed
    ]


def _pid(raw: bytes) -> int:
    import os

    _score_chunk([raw])
    return os.getpid()


class WorkerPool:
    """``jobs`` processes scoring with the default scorer (see `load_default_scorer`)."""

    def __init__(
        self,
        jobs: int,
        *,
        model_dir: Path | None = None,
        encoder_kind: str | None = None,
        cascade: bool = True,
        authserv_id: str | None = None,
    ) -> None:
        """``authserv_id``: whose Authentication-Results to trust (`parse_message`)."""
        import multiprocessing

        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        threads = max(1, cpu_count() // jobs)
        self._pool = ProcessPoolExecutor(
            jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(
                str(model_dir) if model_dir else None,
                encoder_kind,
                cascade,
                threads,
                authserv_id,
            ),
        )

    def warm_up(self, raw: bytes) -> None:
        """Start every worker and load its models now, so a timed run starts warm."""
        seen: set[int] = set()
        for _ in range(20):
            seen |= {f.result() for f in [self._pool.submit(_pid, raw) for _ in range(self.jobs)]}
            if len(seen) >= self.jobs:
                return

    def score_raw(self, raws: Iterable[bytes]) -> Iterator[tuple[Parsed, Score] | str]:
        """Results in input order; at most 2 chunks per worker are in flight (bounded memory)."""
        inflight: deque[Future[list[tuple[Parsed, Score] | str]]] = deque()
        chunk: list[bytes] = []
        for raw in raws:
            chunk.append(raw)
            if len(chunk) == CHUNK:
                inflight.append(self._pool.submit(_score_chunk, chunk))
                chunk = []
                while len(inflight) > 2 * self.jobs:
                    yield from inflight.popleft().result()
        if chunk:
            inflight.append(self._pool.submit(_score_chunk, chunk))
        while inflight:
            yield from inflight.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
