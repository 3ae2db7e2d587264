"""Store: schema and migrations, folder state, score cache, journal life cycle, dedup keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from spamguard.errors import SpamGuardError
from spamguard.scoring.base import Evidence, Score
from spamguard.store import SCHEMA_VERSION, FolderState, JournalDraft, ScoredMessage, Store


def _scored(i: int = 1) -> ScoredMessage:
    return ScoredMessage(
        "a",
        "INBOX",
        7,
        i,
        f"<{i}@t>",
        f"hash{i}",
        0.95,
        "spam",
        "t",
        "v1",
        (Evidence("w", 1.0),),
        subject=f"s{i}",
    )


def test_wal_and_schema_version(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    with Store(tmp_path / "s.db") as store:  # reopening migrates nothing twice
        assert store.schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SpamGuardError, match="newer SpamGuard"):
        Store(tmp_path / "s.db")


def test_folder_state_round_trip(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        assert store.folder_state("a", "INBOX") is None
        store.save_folder_state(FolderState("a", "INBOX", 7, 42, 99, 1.0))
        assert store.folder_state("a", "INBOX") == FolderState("a", "INBOX", 7, 42, 99, 1.0)


def test_score_cache_by_hash_and_model_version(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        score = Score(0.8, "head", "v1", (Evidence("url", 0.5, "x"),))
        store.cache_scores([("h", score)])
        assert store.cached_score("h", "v1") == score
        assert store.cached_score("h", "v2") is None


def test_journal_life_cycle_and_dedup(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        scored = _scored()
        assert not store.is_handled("a", scored.message_id, scored.content_hash)
        [jid] = store.record_plan(
            scored, [JournalDraft("move_junk", "INBOX", 7, 1, "Junk", reason="r")]
        )
        assert store.is_handled("a", scored.message_id, scored.content_hash)
        assert [e.id for e in store.journal(states=["planned"])] == [jid]
        store.mark_applied(jid, dst_uidvalidity=9, dst_uid=3, detail={"method": "move"})
        entry = store.journal_entry(jid)
        assert (
            entry
            and entry.state == "applied"
            and entry.dst_uid == 3
            and entry.detail == {"method": "move"}
        )
        store.mark_undone(jid)
        assert store.journal_entry(jid).state == "undone"  # type: ignore[union-attr]
        # Recording the same message again changes nothing about it being handled.
        store.record_plan(scored, [])
        assert store.counts("a")["scored_spam"] == 1
        store.add_rescued("a", scored.message_id, scored.content_hash, "INBOX")
        assert store.is_rescued("a", scored.message_id, scored.content_hash)
        store.forget_message("a", scored.message_id, scored.content_hash)
        assert not store.is_handled("a", scored.message_id, scored.content_hash)


def test_journal_filters(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        ids = [
            store.record_plan(
                _scored(i), [JournalDraft("flag", "INBOX", 7, i, detail={"flags": ["\\Flagged"]})]
            )[0]
            for i in range(5)
        ]
        for jid in ids[:3]:
            store.mark_applied(jid)
        assert [e.id for e in store.journal(states=["applied"], limit=2)] == [ids[2], ids[1]]
        assert store.journal(actions=["move_junk"]) == []
        assert len(store.journal(message=("<4@t>", "hash4"))) == 1
        store.mark_failed(ids[4], "refused")
        assert store.journal_entry(ids[4]).error == "refused"  # type: ignore[union-attr]


def test_correspondents(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.add_correspondents("a", ["Bob@Example.com", ""])
        assert store.is_correspondent("a", "bob@example.com")
        assert not store.is_correspondent("b", "bob@example.com")


def test_score_cache_context_keeps_trusted_and_untrusted_scores_apart(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        plain, trusted = Score(0.8, "head", "v1"), Score(0.3, "head", "v1")
        store.cache_scores([("h", plain)])
        store.cache_scores([("h", trusted)], "authserv-id=mx.example")
        assert store.cached_score("h", "v1") == plain
        assert store.cached_score("h", "v1", "authserv-id=mx.example") == trusted
        assert store.cached_score("h", "v1", "authserv-id=mx.other.example") is None


def test_account_facts_and_kept_senders(tmp_path: Path) -> None:
    import dataclasses

    with Store(tmp_path / "s.db") as store:
        assert store.authserv_id("a") is None
        store.save_authserv_id("a", "MX.Example.COM")
        assert store.authserv_id("a") == "mx.example.com" and store.authserv_id("b") is None

        def scored(i: int, at: float) -> ScoredMessage:
            return dataclasses.replace(_scored(i), from_addr="news@shop.example", scored_at=at)

        store.record_plan(scored(1, 100.0), [])  # kept: left where it was
        draft = JournalDraft("move_junk", "INBOX", 7, 2, dst="Junk")
        moved = store.record_plan(scored(2, 100.0), [draft])
        store.mark_applied(moved[0])  # moved by SpamGuard, never rescued
        store.record_plan(scored(3, 500.0), [])  # too recent to have been judged
        assert store.kept_count("a", "news@shop.example", before=200.0) == 1
        assert store.kept_count("a", "NEWS@shop.example", before=600.0) == 2
        assert store.kept_count("a", "other@shop.example", before=600.0) == 0
        assert store.kept_count("b", "news@shop.example", before=600.0) == 0
        # Said "not spam" about one, by any path: it counts as kept.
        store.record_feedback("a", "<9@t>", "hash9", "ham", "button", from_addr="news@shop.example")
        assert store.kept_count("a", "news@shop.example", before=200.0) == 2
        # Once the user called anything of theirs spam, nothing of theirs counts as kept.
        store.record_feedback(
            "a", "<3@t>", "hash3", "spam", "button", from_addr="news@shop.example"
        )
        assert store.kept_count("a", "news@shop.example", before=600.0) == 0


def test_a_labelled_message_is_read_under_its_accounts_authserv_id(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.record_feedback("a", "<1@t>", "hash1", "spam", "button", raw=b"From: x@y\r\n\r\nb")
        assert store.label_authserv_id("hash1") is None  # account a has learnt none yet
        store.save_authserv_id("a", "mx.a.example")
        store.save_authserv_id("b", "mx.b.example")
        assert store.label_authserv_id("hash1") == "mx.a.example"
        assert store.label_authserv_id("unknown") is None


def test_an_explanation_is_kept_per_message_for_its_context(tmp_path: Path) -> None:
    from spamguard.store import StoredExplanation

    shown = StoredExplanation("It was moved to Junk.", True, (), 5.0)
    withheld = StoredExplanation("(summary)", False, ("it contradicted the evidence",), 6.0)
    with Store(tmp_path / "s.db") as store:
        assert store.explanation("a", "<1@t>", "hash1", "ctx-moved") is None
        store.save_explanation("a", "<1@t>", "hash1", "ctx-moved", shown)
        assert store.explanation("a", "<1@t>", "hash1", "ctx-moved") == shown
        # Another action (context) or another message: nothing kept for it.
        assert store.explanation("a", "<1@t>", "hash1", "ctx-rescued") is None
        assert store.explanation("a", "<1@t>", "hash2", "ctx-moved") is None
        assert store.explanation("b", "<1@t>", "hash1", "ctx-moved") is None
    with Store(tmp_path / "s.db") as store:  # kept across restarts
        assert store.explanation("a", "<1@t>", "hash1", "ctx-moved") == shown
        store.save_explanation("a", "<1@t>", "hash1", "ctx-rescued", withheld)
        assert store.explanation("a", "<1@t>", "hash1", "ctx-rescued") == withheld
        assert store.explanation("a", "<1@t>", "hash1", "ctx-moved") is None  # replaced
