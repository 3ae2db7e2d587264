"""Score caches: LRU eviction, SQLite round trip, the memory-then-disk tier."""

from __future__ import annotations

import threading
from pathlib import Path

from spamguard.scoring.base import Evidence, Neighbour, Score
from spamguard.scoring.cache import LRUScoreCache, SQLiteScoreCache, TieredScoreCache

SCORE = Score(
    0.91,
    "llm",
    "llm-x-1",
    (Evidence("subject:free", 1.5, "'free' in the subject"),),
    (Neighbour("spam", 0.8, "Win now", "spam/1"),),
)


def test_lru_evicts_least_recently_used_and_counts_hits() -> None:
    cache = LRUScoreCache(maxsize=2)
    cache.put("a", "v1", SCORE)
    cache.put("b", "v1", SCORE)
    assert cache.get("a", "v1") is SCORE  # a is now the most recent
    cache.put("c", "v1", SCORE)
    assert cache.get("b", "v1") is None
    assert cache.get("a", "v2") is None  # another model version is another entry
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)


def test_sqlite_round_trip_survives_a_new_instance_and_other_threads(tmp_path: Path) -> None:
    db = tmp_path / "scores.sqlite"
    first = SQLiteScoreCache(db)
    first.put("h", "v", SCORE)
    first.close()
    again = SQLiteScoreCache(db)
    got: list[Score | None] = []
    thread = threading.Thread(target=lambda: got.append(again.get("h", "v")))
    thread.start()
    thread.join()
    assert got == [SCORE]
    assert again.get("h", "other") is None
    again.close()


def test_tiered_copies_a_disk_hit_into_memory(tmp_path: Path) -> None:
    disk = SQLiteScoreCache(tmp_path / "s.sqlite")
    disk.put("h", "v", SCORE)
    memory = LRUScoreCache()
    tiered = TieredScoreCache(memory, disk)
    assert tiered.get("h", "v") == SCORE
    assert memory.get("h", "v") == SCORE
    disk.close()
