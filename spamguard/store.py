"""The SQLite state file: folder sync state, scored messages, score cache, journal, labels.

Over 600 lines on purpose: one `Store` class owns one SQLite schema and its migrations; its
sections (sync state, scores, journal, labels, first sync, explanations) share the connection,
the lock and the crash-safety rules, and are marked below.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spamguard.config import default_data_dir
from spamguard.errors import StateError, StateLostError
from spamguard.scoring.base import Evidence, Score

__all__ = [
    "SCHEMA_VERSION",
    "FeedbackRow",
    "FirstSyncRow",
    "FolderState",
    "JournalDraft",
    "JournalEntry",
    "JournalState",
    "ScoredMessage",
    "SeenMessage",
    "Settlement",
    "Store",
    "StoredExplanation",
    "default_store_path",
    "reset_command",
]

JournalState = Literal["planned", "applied", "undone", "failed"]
JournalAction = Literal["move_junk", "move", "flag", "keyword", "undo"]

_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE folder_state (
        account TEXT NOT NULL, folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, highestmodseq INTEGER,
        last_sync REAL NOT NULL,
        PRIMARY KEY (account, folder)
    );
    CREATE TABLE score_cache (
        content_hash TEXT NOT NULL, model_version TEXT NOT NULL,
        p_spam REAL NOT NULL, stage TEXT NOT NULL, evidence TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (content_hash, model_version)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL, folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
        message_id TEXT NOT NULL, content_hash TEXT NOT NULL,
        p_spam REAL NOT NULL, verdict TEXT NOT NULL, stage TEXT NOT NULL,
        model_version TEXT NOT NULL,
        evidence TEXT NOT NULL, subject TEXT NOT NULL, from_addr TEXT NOT NULL, date TEXT NOT NULL,
        plan TEXT NOT NULL, scored_at REAL NOT NULL,
        UNIQUE (account, message_id, content_hash)
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL, message_id TEXT NOT NULL, content_hash TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL, src TEXT NOT NULL, src_uidvalidity INTEGER, src_uid INTEGER,
        dst TEXT, dst_uidvalidity INTEGER, dst_uid INTEGER,
        detail TEXT NOT NULL DEFAULT '{}', reason TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('planned', 'applied', 'undone', 'failed')),
        error TEXT, undo_of INTEGER REFERENCES journal(id),
        created_at REAL NOT NULL, applied_at REAL, undone_at REAL
    );
    CREATE INDEX journal_state ON journal (account, state);
    CREATE INDEX journal_message ON journal (account, message_id, content_hash);
    CREATE TABLE rescued (
        account TEXT NOT NULL, message_id TEXT NOT NULL, content_hash TEXT NOT NULL,
        folder TEXT NOT NULL, rescued_at REAL NOT NULL,
        PRIMARY KEY (account, message_id, content_hash)
    );
    CREATE TABLE correspondents (
        account TEXT NOT NULL, address TEXT NOT NULL, seen_at REAL NOT NULL,
        PRIMARY KEY (account, address)
    );
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL, message_id TEXT NOT NULL, content_hash TEXT NOT NULL,
        label TEXT NOT NULL CHECK (label IN ('spam', 'ham')), source TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 2: learning from the user (learn/labels.py, learn/fit.py): what each label came from, the
    # labelled messages' bytes (so a retrain never needs the server), feature rows cached per
    # featurizer, and what feedback last saw in each folder to tell moves and keywords apart.
    """
    ALTER TABLE feedback ADD COLUMN from_addr TEXT NOT NULL DEFAULT '';
    ALTER TABLE feedback ADD COLUMN folder TEXT NOT NULL DEFAULT '';
    CREATE INDEX feedback_message ON feedback (account, message_id, content_hash);
    CREATE TABLE label_message (
        content_hash TEXT PRIMARY KEY, raw BLOB NOT NULL, created_at REAL NOT NULL
    );
    CREATE TABLE feature_row (
        content_hash TEXT NOT NULL, featurizer TEXT NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (content_hash, featurizer)
    );
    CREATE TABLE folder_seen (
        account TEXT NOT NULL, folder TEXT NOT NULL, uid INTEGER NOT NULL,
        message_id TEXT, content_hash TEXT, flags TEXT NOT NULL,
        PRIMARY KEY (account, folder, uid)
    );
    CREATE INDEX folder_seen_message ON folder_seen (account, message_id, content_hash);
    CREATE TABLE folder_watch (
        account TEXT NOT NULL, folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL, highestmodseq INTEGER,
        PRIMARY KEY (account, folder)
    )
    """,
    # 3: learning from an account's existing mail at first sync (learn/first_sync.py): what was read
    # from which folder, so a cancelled run resumes without fetching a message twice. The bytes
    # go to label_message like every label's.
    """
    CREATE TABLE first_sync (
        account TEXT NOT NULL, folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
        message_id TEXT NOT NULL, content_hash TEXT NOT NULL,
        label TEXT NOT NULL CHECK (label IN ('spam', 'ham')),
        provider_spam INTEGER NOT NULL DEFAULT 0, fetched_at REAL NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid)
    )
    """,
    # 4: what SpamGuard learnt about an account itself, such as the authserv-id of its
    # receiving server (whose Authentication-Results are the only ones trusted); an index to
    # find a sender's earlier mail; why a message was protected from Junk, for its
    # explanation.
    """
    ALTER TABLE messages ADD COLUMN protected TEXT NOT NULL DEFAULT '';
    CREATE TABLE account_fact (
        account TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (account, key)
    );
    CREATE INDEX messages_sender ON messages (account, from_addr)
    """,
    # 5: after a state reset (`spamguard state reset`), accounts whose folders start from the
    # next new message: what is already there may have been rescued, and the record is gone.
    """
    CREATE TABLE start_from_new_mail (account TEXT PRIMARY KEY, since REAL NOT NULL)
    """,
    # 6: the explanation shown for a message (the LLM's checked text, or the summary that
    # replaced it), kept once written; ``context`` names the model, prompt and outcome it was
    # written for, so a new action or model writes it anew.
    """
    CREATE TABLE explanation (
        account TEXT NOT NULL, message_id TEXT NOT NULL, content_hash TEXT NOT NULL,
        context TEXT NOT NULL, text TEXT NOT NULL, from_llm INTEGER NOT NULL,
        problems TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (account, message_id, content_hash)
    )
    """,
)
# Tables whose loss would let SpamGuard act twice or move rescued mail back: checked when the
# file is opened, so a truncated file is refused before anything is planned from it.
_VITAL_TABLES = ("rescued", "journal", "messages", "folder_state")
SCHEMA_VERSION = len(_MIGRATIONS)


def default_store_path() -> Path:

    return default_data_dir() / "spamguard.sqlite3"


def reset_command(path: Path) -> str:
    """The command that sets a damaged state file aside (what a `StateLostError` tells)."""
    default = path == default_store_path()
    return "spamguard state reset" if default else "spamguard --config FILE state reset"


@dataclass(frozen=True, slots=True)
class StoredExplanation:
    """An explanation as shown: ``text``, whether it is the LLM's (``from_llm``) or the summary
    that replaced it, and why the LLM's text was withheld (``problems``)."""

    text: str
    from_llm: bool
    problems: tuple[str, ...] = ()
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class FolderState:
    """What we last knew of a folder: messages below `uidnext` under this UIDVALIDITY are done."""

    account: str
    folder: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int | None = None
    last_sync: float = 0.0


@dataclass(frozen=True, slots=True)
class ScoredMessage:
    """A message we scored and planned for, as the status view and dedup need it."""

    account: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    content_hash: str
    p_spam: float
    verdict: str
    stage: str
    model_version: str
    evidence: tuple[Evidence, ...] = ()
    subject: str = ""
    from_addr: str = ""
    date: str = ""
    plan: str = ""
    scored_at: float = 0.0
    protected: str = ""  # why it is never moved to Junk, when a protection applied


@dataclass(frozen=True, slots=True)
class JournalDraft:
    """An action about to be sent to the server."""

    action: JournalAction
    src: str
    src_uidvalidity: int | None
    src_uid: int | None
    dst: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    undo_of: int | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one journalled action ended: applied (``error`` None) or failed with ``error``."""

    entry_id: int
    error: str | None = None
    dst_uidvalidity: int | None = None
    dst_uid: int | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One row of the action journal."""

    id: int
    account: str
    message_id: str
    content_hash: str
    subject: str
    action: JournalAction
    src: str
    src_uidvalidity: int | None
    src_uid: int | None
    dst: str | None
    dst_uidvalidity: int | None
    dst_uid: int | None
    detail: dict[str, Any]
    reason: str
    state: JournalState
    error: str | None
    undo_of: int | None
    created_at: float
    applied_at: float | None
    undone_at: float | None


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One label the user gave, by a move, a keyword, a button or the CLI."""

    id: int
    account: str
    message_id: str
    content_hash: str
    label: Literal["spam", "ham"]
    source: str
    created_at: float
    from_addr: str = ""
    folder: str = ""


@dataclass(frozen=True, slots=True)
class FirstSyncRow:
    """One message first-sync learning read from an account's folder (not a user's label)."""

    uid: int
    message_id: str
    content_hash: str
    label: Literal["spam", "ham"]
    provider_spam: bool = False  # the account's own server had marked it spam


@dataclass(frozen=True, slots=True)
class SeenMessage:
    """A message as feedback last saw it in a folder; identity is filled in lazily."""

    uid: int
    message_id: str | None
    content_hash: str | None
    flags: frozenset[str]


class Store:
    """One SQLite file in WAL mode, safe to share between the account workers of a process.

    Several processes may open the same file (the CLI's `undo` while the tray app runs):
    WAL plus a busy timeout makes that work.
    """

    #: Seconds to wait for another process's write lock before giving up with a `StateError`.
    busy_timeout = 30.0

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        memory = str(self.path) == ":memory:"
        if not memory:
            self._check_file()
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout,
                check_same_thread=False,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise StateError(self._explain(exc)) from None
        try:
            with self._translate():
                self._db.row_factory = sqlite3.Row
                self._db.execute("PRAGMA journal_mode=WAL")
                # FULL: a journal row must be on disk before the server hears of the action.
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _check_file(self) -> None:
        """Refuse a state file that exists but holds nothing: that is lost state, not a
        first run (SQLite would happily start an empty database in a 0-byte file)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StateError(
                f"{self.path.parent} is a file, but SpamGuard keeps its data in that folder; "
                "move the file away or set data_dir in the config to another folder"
            ) from None
        except OSError as exc:
            raise StateError(
                f"cannot create the data folder {self.path.parent} ({exc.strerror}); "
                "check its permissions or set data_dir in the config"
            ) from None
        if self.path.is_dir():
            raise StateError(f"{self.path} is a folder, not SpamGuard's state file; move it away")
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(
                f"cannot read {self.path} ({exc.strerror}); check its permissions"
            ) from None
        if size == 0:
            raise StateLostError(self._lost("is empty (0 bytes)"))

    def _lost(self, what: str) -> str:
        return (
            f"the state file {self.path} {what}: the record of what SpamGuard moved and "
            "which messages you rescued from Junk is gone, so it will not act on mail. "
            f"Restore the file from a backup, or run `{reset_command(self.path)}` to set it "
            "aside and act only on mail that arrives from now on"
        )

    def _explain(self, exc: sqlite3.Error) -> str:
        text = str(exc).lower()
        if _is_damage(exc):
            return self._lost("is damaged")
        if "locked" in text or "busy" in text:
            return (
                f"{self.path} is in use by another SpamGuard (the app, or a run that has not "
                f"finished) and stayed locked for {self.busy_timeout:.0f} s; close the other one "
                "or wait, then run again"
            )
        if "full" in text:
            return (
                f"the disk holding {self.path} is full; free some space and run again "
                "(an interrupted action is finished by the next run; no mail is lost)"
            )
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return (
                f"cannot write {self.path} ({exc}); check the permissions of the file and "
                "its folder, or set data_dir in the config"
            )
        return f"the state file {self.path} failed ({exc}); run again, or check the disk"

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """SQLite's errors as one `StateError` that says what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            kind = StateLostError if _is_damage(exc) else StateError
            raise kind(self._explain(exc)) from None

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with suppress(sqlite3.Error):  # a failed COMMIT may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._translate():
            return list(self._db.execute(sql, args))

    def _migrate(self) -> None:
        with self._tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path} was written by a newer SpamGuard (schema {version}); "
                    "upgrade SpamGuard or move the file away"
                )
            if version > 0:
                for table in _VITAL_TABLES:
                    # Reads just these tables' pages: a file cut short fails here, at open.
                    problems = [r[0] for r in db.execute(f"PRAGMA quick_check({table})")]
                    if problems != ["ok"]:
                        raise StateLostError(self._lost("is damaged"))
            for number in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    # -- folder state ----------------------------------------------------------------------------

    def folder_state(self, account: str, folder: str) -> FolderState | None:
        rows = self._query(
            "SELECT * FROM folder_state WHERE account = ? AND folder = ?", (account, folder)
        )
        if not rows:
            return None
        r = rows[0]
        return FolderState(
            r["account"],
            r["folder"],
            r["uidvalidity"],
            r["uidnext"],
            r["highestmodseq"],
            r["last_sync"],
        )

    def folder_states(self, account: str | None = None) -> list[FolderState]:
        rows = self._query(
            "SELECT * FROM folder_state WHERE ? IS NULL OR account = ? ORDER BY account, folder",
            (account, account),
        )
        return [
            FolderState(
                r["account"],
                r["folder"],
                r["uidvalidity"],
                r["uidnext"],
                r["highestmodseq"],
                r["last_sync"],
            )
            for r in rows
        ]

    def save_folder_state(self, state: FolderState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO folder_state VALUES (?, ?, ?, ?, ?, ?)",
                (
                    state.account,
                    state.folder,
                    state.uidvalidity,
                    state.uidnext,
                    state.highestmodseq,
                    state.last_sync or time.time(),
                ),
            )

    # -- after a reset: start from new mail -----------------------------------------------------

    def start_from_new_mail(self, accounts: Iterable[str]) -> None:
        """Folders of these accounts seen for the first time start at their next message."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO start_from_new_mail VALUES (?, ?)",
                [(a, now) for a in accounts],
            )

    def starts_from_new_mail(self, account: str) -> bool:
        return bool(self._query("SELECT 1 FROM start_from_new_mail WHERE account = ?", (account,)))

    def started_from_new_mail(self, account: str) -> None:
        """Every watched folder of ``account`` has its starting point now."""
        with self._tx() as db:
            db.execute("DELETE FROM start_from_new_mail WHERE account = ?", (account,))

    # -- scores ----------------------------------------------------------------------------------

    def cached_score(
        self, content_hash: str, model_version: str, context: str = ""
    ) -> Score | None:
        """The cached score of these bytes under this model; ``context`` is whatever else
        the score depended on (the authserv-id whose results were trusted)."""
        rows = self._query(
            "SELECT * FROM score_cache WHERE content_hash = ? AND model_version = ?",
            (content_hash, _cache_key(model_version, context)),
        )
        if not rows:
            return None
        r = rows[0]
        return Score(r["p_spam"], r["stage"], model_version, _evidence_from_json(r["evidence"]))

    def cache_scores(self, items: Iterable[tuple[str, Score]], context: str = "") -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO score_cache VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        h,
                        _cache_key(s.model_version, context),
                        s.p_spam,
                        s.stage,
                        _evidence_to_json(s.evidence),
                        now,
                    )
                    for h, s in items
                ],
            )

    # -- messages and the journal ----------------------------------------------------------------

    def is_handled(self, account: str, message_id: str, content_hash: str) -> bool:
        return bool(
            self._query(
                "SELECT 1 FROM messages WHERE account = ? AND message_id = ? AND content_hash = ?",
                (account, message_id, content_hash),
            )
        )

    def scored_message(
        self, account: str, message_id: str, content_hash: str
    ) -> ScoredMessage | None:
        rows = self._query(
            "SELECT * FROM messages WHERE account = ? AND message_id = ? AND content_hash = ?",
            (account, message_id, content_hash),
        )
        return _scored_from_row(rows[0]) if rows else None

    def find_scored(self, ref: str, account: str | None = None) -> ScoredMessage | None:
        """A scored message by its row id (digits) or its Message-ID (with or without <>)."""
        sql = "SELECT * FROM messages WHERE (? IS NULL OR account = ?) AND "
        args: list[Any] = [account, account]
        if ref.isdigit():
            rows = self._query(sql + "id = ?", [*args, int(ref)])
            if rows:
                return _scored_from_row(rows[0])
        bare = ref.strip().strip("<>")
        rows = self._query(
            sql + "message_id IN (?, ?) ORDER BY id DESC LIMIT 1", [*args, bare, f"<{bare}>"]
        )
        return _scored_from_row(rows[0]) if rows else None

    def scored_messages(self, account: str | None = None, limit: int = 1000) -> list[ScoredMessage]:
        rows = self._query(
            "SELECT * FROM messages WHERE ? IS NULL OR account = ? ORDER BY id DESC LIMIT ?",
            (account, account, limit),
        )
        return [_scored_from_row(r) for r in rows]

    def record_plan(self, scored: ScoredMessage, drafts: Sequence[JournalDraft]) -> list[int]:
        """Mark the message handled and journal its actions as planned, in one transaction.

        Called before anything is sent: after a crash the journal says what may have happened.
        """
        return self.record_plans([(scored, drafts)])[0]

    def record_plans(
        self, plans: Sequence[tuple[ScoredMessage, Sequence[JournalDraft]]]
    ) -> list[list[int]]:
        """`record_plan` for a whole batch of messages in one transaction (one fsync)."""
        now = time.time()
        out: list[list[int]] = []
        with self._tx() as db:
            for scored, drafts in plans:
                out.append(self._insert_plan(db, scored, drafts, now))
        return out

    @staticmethod
    def _insert_plan(
        db: sqlite3.Connection, scored: ScoredMessage, drafts: Sequence[JournalDraft], now: float
    ) -> list[int]:
        ids: list[int] = []
        db.execute(
            "INSERT OR IGNORE INTO messages (account, folder, uidvalidity, uid, message_id, "
            "content_hash, p_spam, verdict, stage, model_version, evidence, subject, "
            "from_addr, date, plan, scored_at, protected) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scored.account,
                scored.folder,
                scored.uidvalidity,
                scored.uid,
                scored.message_id,
                scored.content_hash,
                scored.p_spam,
                scored.verdict,
                scored.stage,
                scored.model_version,
                _evidence_to_json(scored.evidence),
                scored.subject,
                scored.from_addr,
                scored.date,
                scored.plan,
                scored.scored_at or now,
                scored.protected,
            ),
        )
        for d in drafts:
            cur = db.execute(
                "INSERT INTO journal (account, message_id, content_hash, subject, action, src, "
                "src_uidvalidity, src_uid, dst, detail, reason, state, undo_of, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
                (
                    scored.account,
                    scored.message_id,
                    scored.content_hash,
                    scored.subject,
                    d.action,
                    d.src,
                    d.src_uidvalidity,
                    d.src_uid,
                    d.dst,
                    json.dumps(d.detail),
                    d.reason,
                    d.undo_of,
                    now,
                ),
            )
            ids.append(int(cur.lastrowid or 0))
        return ids

    def add_journal(
        self, account: str, message_id: str, content_hash: str, subject: str, draft: JournalDraft
    ) -> int:
        """Journal one planned action for a message already handled (undo, reconciliation)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO journal (account, message_id, content_hash, subject, action, src, "
                "src_uidvalidity, src_uid, dst, detail, reason, state, undo_of, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
                (
                    account,
                    message_id,
                    content_hash,
                    subject,
                    draft.action,
                    draft.src,
                    draft.src_uidvalidity,
                    draft.src_uid,
                    draft.dst,
                    json.dumps(draft.detail),
                    draft.reason,
                    draft.undo_of,
                    time.time(),
                ),
            )
            return int(cur.lastrowid or 0)

    def forget_message(self, account: str, message_id: str, content_hash: str) -> None:
        """Undo `record_plan`'s handled mark: the plan never reached the server, plan again."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM messages WHERE account = ? AND message_id = ? AND content_hash = ?",
                (account, message_id, content_hash),
            )

    def mark_applied(
        self,
        entry_id: int,
        *,
        dst_uidvalidity: int | None = None,
        dst_uid: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE journal SET state = 'applied', applied_at = ?, error = NULL, "
                "dst_uidvalidity = COALESCE(?, dst_uidvalidity), dst_uid = COALESCE(?, dst_uid), "
                "detail = COALESCE(?, detail) WHERE id = ?",
                (
                    time.time(),
                    dst_uidvalidity,
                    dst_uid,
                    json.dumps(detail) if detail is not None else None,
                    entry_id,
                ),
            )

    def mark_failed(self, entry_id: int, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE journal SET state = 'failed', error = ? WHERE id = ?", (error, entry_id)
            )

    def mark_undone(self, entry_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE journal SET state = 'undone', undone_at = ? WHERE id = ?",
                (time.time(), entry_id),
            )

    def settle(self, outcomes: Sequence[Settlement]) -> None:
        """Mark many journal rows applied or failed in one transaction (a batch's results)."""
        now = time.time()
        with self._tx() as db:
            for o in outcomes:
                if o.error is not None:
                    db.execute(
                        "UPDATE journal SET state = 'failed', error = ? WHERE id = ?",
                        (o.error, o.entry_id),
                    )
                    continue
                db.execute(
                    "UPDATE journal SET state = 'applied', applied_at = ?, error = NULL, "
                    "dst_uidvalidity = COALESCE(?, dst_uidvalidity), "
                    "dst_uid = COALESCE(?, dst_uid), detail = COALESCE(?, detail) WHERE id = ?",
                    (
                        now,
                        o.dst_uidvalidity,
                        o.dst_uid,
                        json.dumps(o.detail) if o.detail is not None else None,
                        o.entry_id,
                    ),
                )

    def journal_entry(self, entry_id: int) -> JournalEntry | None:
        rows = self._query("SELECT * FROM journal WHERE id = ?", (entry_id,))
        return _entry_from_row(rows[0]) if rows else None

    def journal(
        self,
        *,
        account: str | None = None,
        states: Sequence[JournalState] | None = None,
        actions: Sequence[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
        message: tuple[str, str] | None = None,
    ) -> list[JournalEntry]:
        """Journal rows, newest first."""
        sql = ["SELECT * FROM journal WHERE 1 = 1"]
        args: list[Any] = []
        if account is not None:
            sql.append("AND account = ?")
            args.append(account)
        if states:
            sql.append(f"AND state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if actions:
            sql.append(f"AND action IN ({', '.join('?' * len(actions))})")
            args.extend(actions)
        if since is not None:
            sql.append("AND created_at >= ?")
            args.append(since)
        if message is not None:
            sql.append("AND message_id = ? AND content_hash = ?")
            args.extend(message)
        sql.append("ORDER BY id DESC")
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        return [_entry_from_row(r) for r in self._query(" ".join(sql), args)]

    # -- rescued messages, correspondents, feedback ----------------------------------------------

    def add_rescued(self, account: str, message_id: str, content_hash: str, folder: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO rescued VALUES (?, ?, ?, ?, ?)",
                (account, message_id, content_hash, folder, time.time()),
            )

    def is_rescued(self, account: str, message_id: str, content_hash: str) -> bool:
        return bool(
            self._query(
                "SELECT 1 FROM rescued WHERE account = ? AND message_id = ? AND content_hash = ?",
                (account, message_id, content_hash),
            )
        )

    def add_correspondents(self, account: str, addresses: Iterable[str]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO correspondents VALUES (?, ?, ?)",
                [(account, a.lower(), now) for a in addresses if a],
            )

    def is_correspondent(self, account: str, address: str) -> bool:
        return bool(
            self._query(
                "SELECT 1 FROM correspondents WHERE account = ? AND address = ?",
                (account, address.lower()),
            )
        )

    # -- learning from the user (learn/labels.py, learn/fit.py) ----------------------------------

    def record_feedback(
        self,
        account: str,
        message_id: str,
        content_hash: str,
        label: Literal["spam", "ham"],
        source: str,
        *,
        from_addr: str = "",
        folder: str = "",
        raw: bytes | None = None,
    ) -> int:
        """Add one label (and the labelled bytes, kept for retraining); returns its id."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO feedback (account, message_id, content_hash, label, source, "
                "created_at, from_addr, folder) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (account, message_id, content_hash, label, source, now, from_addr.lower(), folder),
            )
            if raw is not None:
                db.execute(
                    "INSERT OR IGNORE INTO label_message VALUES (?, ?, ?)",
                    (content_hash, sqlite3.Binary(raw), now),
                )
            return int(cur.lastrowid or 0)

    def feedback_rows(
        self,
        account: str | None = None,
        *,
        after_id: int = 0,
        message: tuple[str, str] | None = None,
    ) -> list[FeedbackRow]:
        """Labels, oldest first."""
        sql = "SELECT * FROM feedback WHERE id > ? AND (? IS NULL OR account = ?)"
        args: list[Any] = [after_id, account, account]
        if message is not None:
            sql += " AND message_id = ? AND content_hash = ?"
            args.extend(message)
        return [
            FeedbackRow(
                r["id"],
                r["account"],
                r["message_id"],
                r["content_hash"],
                r["label"],
                r["source"],
                r["created_at"],
                r["from_addr"],
                r["folder"],
            )
            for r in self._query(sql + " ORDER BY id", args)
        ]

    def withdraw_label(
        self, account: str, message_id: str, content_hash: str, label: Literal["spam", "ham"]
    ) -> bool:
        """Delete the newest label of one message when it is ``label`` (its Spam / Not spam
        was undone); the one before it, if any, is the label again. True when one went."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM feedback WHERE label = ? AND id = (SELECT MAX(id) FROM feedback "
                "WHERE account = ? AND message_id = ? AND content_hash = ?)",
                (label, account, message_id, content_hash),
            )
            return cur.rowcount > 0

    def label_raw(self, content_hash: str) -> bytes | None:
        rows = self._query("SELECT raw FROM label_message WHERE content_hash = ?", (content_hash,))
        return bytes(rows[0][0]) if rows else None

    def has_label_raw(self, content_hash: str) -> bool:
        return bool(
            self._query("SELECT 1 FROM label_message WHERE content_hash = ?", (content_hash,))
        )

    def save_label_raw(self, content_hash: str, raw: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO label_message VALUES (?, ?, ?)",
                (content_hash, sqlite3.Binary(raw), time.time()),
            )

    # -- first-sync learning (learn/first_sync.py) ------------------------------------------------

    def first_sync_read(
        self, account: str, folder: str, uidvalidity: int
    ) -> dict[int, FirstSyncRow]:
        """UID -> what first-sync learning already read from ``folder`` (this UIDVALIDITY)."""
        rows = self._query(
            "SELECT * FROM first_sync WHERE account = ? AND folder = ? AND uidvalidity = ?",
            (account, folder, uidvalidity),
        )
        return {
            int(r["uid"]): FirstSyncRow(
                int(r["uid"]),
                r["message_id"],
                r["content_hash"],
                r["label"],
                bool(r["provider_spam"]),
            )
            for r in rows
        }

    def save_first_sync(
        self,
        account: str,
        folder: str,
        uidvalidity: int,
        rows: Iterable[tuple[FirstSyncRow, bytes]],
    ) -> None:
        """Record one batch of messages read at first sync, with their bytes, in one step."""
        now = time.time()
        with self._tx() as db:
            # Rows of an older UIDVALIDITY name messages that are gone or renumbered.
            db.execute(
                "DELETE FROM first_sync WHERE account = ? AND folder = ? AND uidvalidity != ?",
                (account, folder, uidvalidity),
            )
            for row, raw in rows:
                db.execute(
                    "INSERT OR REPLACE INTO first_sync VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        account,
                        folder,
                        uidvalidity,
                        row.uid,
                        row.message_id,
                        row.content_hash,
                        row.label,
                        int(row.provider_spam),
                        now,
                    ),
                )
                db.execute(
                    "INSERT OR IGNORE INTO label_message VALUES (?, ?, ?)",
                    (row.content_hash, sqlite3.Binary(raw), now),
                )

    def first_sync_count(self, account: str | None = None) -> int:
        rows = self._query(
            "SELECT COUNT(*) FROM first_sync WHERE ? IS NULL OR account = ?", (account, account)
        )
        return int(rows[0][0])

    def junk_history(self, account: str) -> tuple[set[str], set[str]]:
        """(Message-IDs SpamGuard moved to Junk, Message-IDs the user labelled spam)."""
        moved = self._query(
            "SELECT DISTINCT message_id FROM journal WHERE account = ? AND action = 'move_junk' "
            "AND state IN ('applied', 'undone')",
            (account,),
        )
        labelled = self._query(
            "SELECT DISTINCT message_id FROM feedback WHERE account = ? AND label = 'spam'",
            (account,),
        )
        return {r[0] for r in moved if r[0]}, {r[0] for r in labelled if r[0]}

    # -- what SpamGuard learnt about the account ------------------------------------------------

    def account_fact(self, account: str, key: str) -> str | None:
        rows = self._query(
            "SELECT value FROM account_fact WHERE account = ? AND key = ?", (account, key)
        )
        return str(rows[0]["value"]) if rows else None

    def save_account_fact(self, account: str, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO account_fact VALUES (?, ?, ?, ?)",
                (account, key, value, time.time()),
            )

    def explanation(
        self, account: str, message_id: str, content_hash: str, context: str
    ) -> StoredExplanation | None:
        """The explanation kept for a message, if one was written for this ``context``."""
        rows = self._query(
            "SELECT * FROM explanation WHERE account = ? AND message_id = ? AND content_hash = ?"
            " AND context = ?",
            (account, message_id, content_hash, context),
        )
        if not rows:
            return None
        r = rows[0]
        problems = tuple(json.loads(r["problems"]))
        return StoredExplanation(str(r["text"]), bool(r["from_llm"]), problems, r["created_at"])

    def save_explanation(
        self,
        account: str,
        message_id: str,
        content_hash: str,
        context: str,
        explanation: StoredExplanation,
    ) -> None:
        """Keep a message's explanation (replacing one written for another context)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO explanation VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account,
                    message_id,
                    content_hash,
                    context,
                    explanation.text,
                    int(explanation.from_llm),
                    json.dumps(list(explanation.problems)),
                    explanation.created_at,
                ),
            )

    def authserv_id(self, account: str) -> str | None:
        """The authserv-id of the account's receiving server, once learnt from its Inbox."""
        return self.account_fact(account, "authserv_id") or None

    def save_authserv_id(self, account: str, authserv_id: str) -> None:
        self.save_account_fact(account, "authserv_id", authserv_id.lower())

    def label_authserv_id(self, content_hash: str) -> str | None:
        """The authserv-id of the account a labelled message came from (None: none learnt),
        so that retraining reads its Authentication-Results as scoring did."""
        rows = self._query(
            "SELECT value FROM account_fact WHERE key = 'authserv_id' AND account IN ("
            "SELECT account FROM feedback WHERE content_hash = ? "
            "UNION SELECT account FROM first_sync WHERE content_hash = ?) "
            "ORDER BY account LIMIT 1",
            (content_hash, content_hash),
        )
        return str(rows[0]["value"]) if rows else None

    def kept_count(self, account: str, from_addr: str, before: float) -> int:
        """How many distinct messages from ``from_addr`` the user kept: scored before
        ``before`` and never moved to Junk by SpamGuard, or labelled not spam (rescued
        from Junk, a $NotJunk keyword, the app's button). Zero once the user has labelled
        anything from this sender as spam."""
        sender = from_addr.lower()
        if not sender:
            return 0
        spam = self._query(
            "SELECT 1 FROM feedback WHERE account = ? AND from_addr = ? AND label = 'spam' LIMIT 1",
            (account, sender),
        )
        if spam:
            return 0
        rows = self._query(
            "SELECT COUNT(DISTINCT m.content_hash) FROM messages m WHERE m.account = ? "
            "AND m.from_addr = ? AND m.scored_at < ? AND NOT EXISTS ("
            "  SELECT 1 FROM journal j WHERE j.account = m.account "
            "  AND j.message_id = m.message_id AND j.content_hash = m.content_hash "
            "  AND j.action = 'move_junk' AND j.state = 'applied')",
            (account, sender, before),
        )
        ham = self._query(
            "SELECT COUNT(DISTINCT content_hash) FROM feedback WHERE account = ? "
            "AND from_addr = ? AND label = 'ham'",
            (account, sender),
        )
        return int(rows[0][0]) + int(ham[0][0])

    def rescued_count(self, account: str, from_addr: str) -> int:
        """How many distinct messages from ``from_addr`` the user took out of Junk."""
        rows = self._query(
            "SELECT COUNT(DISTINCT content_hash) FROM feedback WHERE account = ? "
            "AND from_addr = ? AND label = 'ham' AND source LIKE 'moved out of Junk%'",
            (account, from_addr.lower()),
        )
        return int(rows[0][0])

    def feature_rows(self, featurizer: str, hashes: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(hashes), 500):
            chunk = list(hashes[i : i + 500])
            rows = self._query(
                "SELECT content_hash, data FROM feature_row WHERE featurizer = ? "
                f"AND content_hash IN ({', '.join('?' * len(chunk))})",
                [featurizer, *chunk],
            )
            out.update((r[0], bytes(r[1])) for r in rows)
        return out

    def cached_feature_hashes(self, featurizer: str, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` have a feature row for ``featurizer`` (without reading it)."""
        out: set[str] = set()
        for i in range(0, len(hashes), 500):
            chunk = list(hashes[i : i + 500])
            rows = self._query(
                "SELECT content_hash FROM feature_row WHERE featurizer = ? "
                f"AND content_hash IN ({', '.join('?' * len(chunk))})",
                [featurizer, *chunk],
            )
            out.update(str(r[0]) for r in rows)
        return out

    def save_feature_rows(self, featurizer: str, rows: Iterable[tuple[str, bytes]]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO feature_row VALUES (?, ?, ?)",
                [(h, featurizer, sqlite3.Binary(data)) for h, data in rows],
            )

    def folder_watch(self, account: str, folder: str) -> tuple[int, int | None] | None:
        """(uidvalidity, highestmodseq) feedback last saw ``folder`` at."""
        rows = self._query(
            "SELECT uidvalidity, highestmodseq FROM folder_watch WHERE account = ? AND folder = ?",
            (account, folder),
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def seen_in_folder(self, account: str, folder: str) -> dict[int, SeenMessage]:
        rows = self._query(
            "SELECT * FROM folder_seen WHERE account = ? AND folder = ?", (account, folder)
        )
        return {
            r["uid"]: SeenMessage(
                r["uid"],
                r["message_id"],
                r["content_hash"],
                frozenset(json.loads(r["flags"])),
            )
            for r in rows
        }

    def save_folder_seen(
        self,
        account: str,
        folder: str,
        uidvalidity: int,
        highestmodseq: int | None,
        *,
        upsert: Iterable[SeenMessage] = (),
        removed: Iterable[int] = (),
        reset: bool = False,
    ) -> None:
        """Update what feedback knows of ``folder`` in one transaction."""
        with self._tx() as db:
            if reset:
                db.execute(
                    "DELETE FROM folder_seen WHERE account = ? AND folder = ?", (account, folder)
                )
            db.executemany(
                "DELETE FROM folder_seen WHERE account = ? AND folder = ? AND uid = ?",
                [(account, folder, uid) for uid in removed],
            )
            db.executemany(
                "INSERT OR REPLACE INTO folder_seen VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        account,
                        folder,
                        m.uid,
                        m.message_id,
                        m.content_hash,
                        json.dumps(sorted(m.flags)),
                    )
                    for m in upsert
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO folder_watch VALUES (?, ?, ?, ?)",
                (account, folder, uidvalidity, highestmodseq),
            )

    def seen_elsewhere(self, account: str, message_id: str, content_hash: str) -> list[str]:
        """Folders feedback last saw this message in."""
        rows = self._query(
            "SELECT folder FROM folder_seen WHERE account = ? AND message_id = ? "
            "AND content_hash = ?",
            (account, message_id, content_hash),
        )
        return [str(r[0]) for r in rows]

    def counts(self, account: str) -> dict[str, int]:
        """Numbers for `spamguard status`."""
        out: dict[str, int] = {}
        for row in self._query(
            "SELECT verdict, COUNT(*) FROM messages WHERE account = ? GROUP BY verdict", (account,)
        ):
            out[f"scored_{row[0]}"] = int(row[1])
        for row in self._query(
            "SELECT action || '_' || state, COUNT(*) FROM journal WHERE account = ? GROUP BY 1",
            (account,),
        ):
            out[str(row[0])] = int(row[1])
        out["rescued"] = int(
            self._query("SELECT COUNT(*) FROM rescued WHERE account = ?", (account,))[0][0]
        )
        return out


def _cache_key(model_version: str, context: str) -> str:
    # Without a context the key is the bare version, as before the context existed.
    return f"{model_version} | {context}" if context else model_version


def _is_damage(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("not a database", "malformed", "corrupt"))


def _evidence_to_json(evidence: Sequence[Evidence]) -> str:
    return json.dumps([e.to_json() for e in evidence])


def _evidence_from_json(text: str) -> tuple[Evidence, ...]:
    try:
        items = json.loads(text)
        return tuple(
            Evidence(str(i["feature"]), float(i["weight"]), str(i.get("detail", ""))) for i in items
        )
    except (ValueError, KeyError, TypeError):
        return ()


def _scored_from_row(r: sqlite3.Row) -> ScoredMessage:
    return ScoredMessage(
        account=r["account"],
        folder=r["folder"],
        uidvalidity=r["uidvalidity"],
        uid=r["uid"],
        message_id=r["message_id"],
        content_hash=r["content_hash"],
        p_spam=r["p_spam"],
        verdict=r["verdict"],
        stage=r["stage"],
        model_version=r["model_version"],
        evidence=_evidence_from_json(r["evidence"]),
        subject=r["subject"],
        from_addr=r["from_addr"],
        date=r["date"],
        plan=r["plan"],
        scored_at=r["scored_at"],
        protected=r["protected"],
    )


def _entry_from_row(r: sqlite3.Row) -> JournalEntry:
    return JournalEntry(
        id=r["id"],
        account=r["account"],
        message_id=r["message_id"],
        content_hash=r["content_hash"],
        subject=r["subject"],
        action=r["action"],
        src=r["src"],
        src_uidvalidity=r["src_uidvalidity"],
        src_uid=r["src_uid"],
        dst=r["dst"],
        dst_uidvalidity=r["dst_uidvalidity"],
        dst_uid=r["dst_uid"],
        detail=json.loads(r["detail"] or "{}"),
        reason=r["reason"],
        state=r["state"],
        error=r["error"],
        undo_of=r["undo_of"],
        created_at=r["created_at"],
        applied_at=r["applied_at"],
        undone_at=r["undone_at"],
    )
