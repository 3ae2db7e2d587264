"""Score caches keyed by (message content hash, model version), so a rescan costs nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

from spamguard.scoring.base import Evidence, Neighbour, Score

__all__ = [
    "LRUScoreCache",
    "SQLiteScoreCache",
    "ScoreCache",
    "TieredScoreCache",
    "score_from_json",
    "score_to_json",
]


@runtime_checkable
class ScoreCache(Protocol):
    """Where scores are remembered. Implementations are thread-safe."""

    def get(self, content_hash: str, model_version: str) -> Score | None: ...

    def put(self, content_hash: str, model_version: str, score: Score) -> None: ...


def score_to_json(score: Score) -> str:
    return json.dumps(
        {
            "p_spam": score.p_spam,
            "stage": score.stage,
            "model_version": score.model_version,
            "evidence": [[e.feature, e.weight, e.detail] for e in score.evidence],
            "neighbours": [[n.label, n.similarity, n.subject, n.ref] for n in score.neighbours],
        },
        ensure_ascii=False,
    )


def score_from_json(text: str) -> Score:
    data = json.loads(text)
    return Score(
        p_spam=float(data["p_spam"]),
        stage=str(data["stage"]),
        model_version=str(data["model_version"]),
        evidence=tuple(Evidence(str(f), float(w), str(d)) for f, w, d in data["evidence"]),
        neighbours=tuple(
            Neighbour("spam" if lab == "spam" else "ham", float(s), str(subj), str(ref))
            for lab, s, subj, ref in data["neighbours"]
        ),
    )


class LRUScoreCache:
    """In-memory, bounded: the least recently used entry goes first."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[tuple[str, str], Score] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, content_hash: str, model_version: str) -> Score | None:
        key = (content_hash, model_version)
        with self._lock:
            score = self._data.get(key)
            if score is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return score

    def put(self, content_hash: str, model_version: str, score: Score) -> None:
        with self._lock:
            self._data[(content_hash, model_version)] = score
            self._data.move_to_end((content_hash, model_version))
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class SQLiteScoreCache:
    """A table in a SQLite file (the app's store or a file of its own); survives restarts.

    One connection per thread (sqlite3 connections are not shared across threads).
    """

    TABLE = "llm_score_cache"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.TABLE} ("
                "content_hash TEXT NOT NULL, model_version TEXT NOT NULL, score TEXT NOT NULL, "
                "PRIMARY KEY (content_hash, model_version))"
            )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def get(self, content_hash: str, model_version: str) -> Score | None:
        row = (
            self._conn()
            .execute(
                f"SELECT score FROM {self.TABLE} WHERE content_hash = ? AND model_version = ?",
                (content_hash, model_version),
            )
            .fetchone()
        )
        return score_from_json(row[0]) if row else None

    def put(self, content_hash: str, model_version: str, score: Score) -> None:
        with self._conn() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO {self.TABLE} VALUES (?, ?, ?)",
                (content_hash, model_version, score_to_json(score)),
            )

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class TieredScoreCache:
    """Memory first, then a persistent cache; a persistent hit is copied into memory."""

    def __init__(self, memory: ScoreCache, persistent: ScoreCache | None = None) -> None:
        self.memory = memory
        self.persistent = persistent

    def get(self, content_hash: str, model_version: str) -> Score | None:
        score = self.memory.get(content_hash, model_version)
        if score is None and self.persistent is not None:
            score = self.persistent.get(content_hash, model_version)
            if score is not None:
                self.memory.put(content_hash, model_version, score)
        return score

    def put(self, content_hash: str, model_version: str, score: Score) -> None:
        self.memory.put(content_hash, model_version, score)
        if self.persistent is not None:
            self.persistent.put(content_hash, model_version, score)
