"""Apply plans to a mailbox through the journal; reconcile after a crash; undo. Never lose mail."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from spamguard.config import AccountSettings
from spamguard.errors import ConnectionLostError, FolderMissingError, MailStoreError
from spamguard.mail.base import DELETED, BatchMoves, MailStore, content_hash, failpoint
from spamguard.policy import Plan
from spamguard.store import JournalDraft, JournalEntry, ScoredMessage, Settlement, Store

__all__ = ["Applied", "Executor", "UndoResult"]

log = logging.getLogger(__name__)

_GONE = "message no longer in its folder (moved or deleted by another client)"


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one journalled action."""

    journal_id: int
    action: str
    src: str
    dst: str | None
    state: Literal["applied", "failed", "planned"]
    reason: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class UndoResult:
    journal_id: int
    outcome: Literal["undone", "already undone", "not applied", "not found"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Target:
    uid: int
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Row:
    """One journalled action of a batch, with the message it is for."""

    entry_id: int
    draft: JournalDraft
    scored: ScoredMessage

    @property
    def uid(self) -> int:
        assert self.draft.src_uid is not None
        return self.draft.src_uid

    def applied(self, state: Literal["applied", "failed"], error: str = "") -> Applied:
        d = self.draft
        return Applied(self.entry_id, d.action, d.src, d.dst, state, d.reason, error)


def _chunks(rows: list[_Row], size: int) -> list[list[_Row]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class Executor:
    """Carries out plans for one account over its (single-owner) `MailStore`.

    The journal row is written (planned) before the server hears of an action and marked
    applied only after the server confirmed it. `reconcile()` settles rows a crash left
    planned by looking for the message (Message-ID, then content hash) in source and
    destination, so each message ends up exactly once.
    """

    def __init__(
        self, mail: MailStore, store: Store, settings: AccountSettings, *, junk_folder: str | None
    ) -> None:
        self.mail = mail
        self.store = store
        self.settings = settings
        self.junk_folder = junk_folder
        # Actions per server command in `apply_batch`; the IMAP store chunks again at its cap.
        self.batch_chunk = 500

    # -- apply -----------------------------------------------------------------------------------

    def drafts_for(
        self, plan: Plan, folder: str, uidvalidity: int, uid: int, flags: frozenset[str]
    ) -> list[JournalDraft]:
        drafts: list[JournalDraft] = []
        for action in plan.actions:
            if action.kind == "leave":
                continue
            if action.kind in ("junk", "move"):
                dst = self.junk_folder if action.kind == "junk" else action.folder
                if not dst:
                    continue  # the policy already flags instead when Junk is missing
                drafts.append(
                    JournalDraft(
                        "move_junk" if action.kind == "junk" else "move",
                        folder,
                        uidvalidity,
                        uid,
                        dst,
                        reason=action.reason,
                    )
                )
            else:
                # Remember what the user had already set, so undo removes only our marks.
                drafts.append(
                    JournalDraft(
                        "flag" if action.kind == "flag" else "keyword",
                        folder,
                        uidvalidity,
                        uid,
                        detail={
                            "flags": list(action.flags),
                            "already": sorted(f for f in action.flags if f in flags),
                        },
                        reason=action.reason,
                    )
                )
        return drafts

    def apply(self, scored: ScoredMessage, plan: Plan, flags: frozenset[str]) -> list[Applied]:
        """Journal and send every action of ``plan`` for the message ``scored`` describes.

        Raises `ConnectionLostError` with entries left planned; `reconcile()` settles them.
        """
        drafts = self.drafts_for(plan, scored.folder, scored.uidvalidity, scored.uid, flags)
        ids = self.store.record_plan(scored, drafts)
        results: list[Applied] = []
        for entry_id, draft in zip(ids, drafts, strict=True):
            results.append(self._send(entry_id, draft))
        return results

    def apply_batch(
        self, items: Sequence[tuple[ScoredMessage, Plan, frozenset[str]]]
    ) -> list[tuple[ScoredMessage, Applied]]:
        """`apply` for many messages at once: one UID STORE per folder and flag set, one UID
        MOVE per source and destination (in chunks of `batch_chunk`), the whole batch
        journalled as planned in one transaction before anything is sent, and each group's
        results settled in one transaction after the server answered.

        The server's COPYUID maps each message to its new UID; a message it leaves out (another
        client expunged it meanwhile) is looked for by Message-ID and settled on what is found.
        Without UIDPLUS the moved messages are found by Message-ID when undone, as for single
        moves. A crash anywhere leaves rows planned that `reconcile()` settles one by one.
        Raises `ConnectionLostError` with entries left planned, like `apply`.
        """
        if not isinstance(self.mail, BatchMoves):
            return [(s, a) for s, plan, flags in items for a in self.apply(s, plan, flags)]
        drafts = [self.drafts_for(p, s.folder, s.uidvalidity, s.uid, f) for s, p, f in items]
        ids = self.store.record_plans([(s, d) for (s, _, _), d in zip(items, drafts, strict=True)])
        failpoint("batch_after_journal")
        flag_groups: dict[tuple[str, tuple[str, ...]], list[_Row]] = {}
        move_groups: dict[tuple[str, str], list[_Row]] = {}
        order: list[_Row] = []
        for (scored, _, _), entry_ids, message_drafts in zip(items, ids, drafts, strict=True):
            for entry_id, d in zip(entry_ids, message_drafts, strict=True):
                row = _Row(entry_id, d, scored)
                order.append(row)
                if d.action in ("move_junk", "move"):
                    assert d.dst is not None
                    move_groups.setdefault((d.src, d.dst), []).append(row)
                else:
                    key = (d.src, tuple(d.detail["flags"]))
                    flag_groups.setdefault(key, []).append(row)
        done: dict[int, Applied] = {}
        # Flags first: a flag is set on the UID a message has before any move of it.
        for (src, flags), rows in flag_groups.items():
            for chunk in _chunks(rows, self.batch_chunk):
                self._send_flags(src, flags, chunk, done)
                failpoint("batch_mid_settle")
        for (src, dst), rows in move_groups.items():
            for chunk in _chunks(rows, self.batch_chunk):
                self._send_moves(src, dst, chunk, done)
                failpoint("batch_mid_settle")
        return [(row.scored, done[row.entry_id]) for row in order]

    def _send_flags(
        self, src: str, flags: tuple[str, ...], rows: list[_Row], done: dict[int, Applied]
    ) -> None:
        assert isinstance(self.mail, BatchMoves)
        error: str | None = None
        try:
            self.mail.add_flags_many(src, [r.uid for r in rows], flags)
        except ConnectionLostError:
            raise
        except MailStoreError as exc:
            error = str(exc)  # STORE changes nothing when refused: the messages stay as they were
        self.store.settle([Settlement(r.entry_id, error) for r in rows])
        for r in rows:
            done[r.entry_id] = r.applied("failed" if error else "applied", error or "")

    def _send_moves(self, src: str, dst: str, rows: list[_Row], done: dict[int, Applied]) -> None:
        assert isinstance(self.mail, BatchMoves)
        try:
            result = self.mail.move_many(src, [r.uid for r in rows], dst)
        except ConnectionLostError:
            raise
        except MailStoreError as exc:
            # Refused as a whole: Dovecot says NO [EXPUNGEISSUED] when another client expunged
            # one message of the set. One by one, as `apply` would: each message where it is.
            log.info("batch move of %d refused (%s); moving one at a time", len(rows), exc)
            for r in rows:
                done[r.entry_id] = self._send_one_after_refusal(r)
            return
        failpoint("batch_after_move")
        by_id = {r.entry_id: r for r in rows}
        settled: list[Settlement] = []
        unconfirmed: list[_Row] = []
        for r in rows:
            dst_uid = result.dst_uids.get(r.uid)
            if dst_uid is None and result.copyuid:
                unconfirmed.append(r)  # the server moved the others but not this one
                continue
            detail = {**r.draft.detail, "method": result.method, "batch": len(rows)}
            settled.append(Settlement(r.entry_id, None, result.dst_uidvalidity, dst_uid, detail))
        self.store.settle(settled)
        for s in settled:
            done[s.entry_id] = by_id[s.entry_id].applied("applied")
        for r in unconfirmed:
            done[r.entry_id] = self._settle_unconfirmed(r, _GONE)

    def _send_one_after_refusal(self, row: _Row) -> Applied:
        d, s = row.draft, row.scored
        assert d.dst is not None
        if self.locate(d.dst, s.message_id, s.content_hash, s.subject):
            # A copy got through before the refusal: finish it as after a crash.
            return self._settle_unconfirmed(row, "")
        if not self.locate(
            d.src, s.message_id, s.content_hash, s.subject, d.src_uid, d.src_uidvalidity
        ):
            self.store.mark_failed(row.entry_id, _GONE)
            return row.applied("failed", _GONE)
        return self._send(row.entry_id, d)

    def _settle_unconfirmed(self, row: _Row, error: str) -> Applied:
        """A move the server did not confirm: applied if the message is in its destination
        (finished like after a crash), else failed with ``error`` and the message left put."""
        d, s = row.draft, row.scored
        assert d.dst is not None
        if self.locate(d.dst, s.message_id, s.content_hash, s.subject):
            entry = self.store.journal_entry(row.entry_id)
            assert entry is not None
            self._reconcile_one(entry)
            return row.applied("applied")
        self.store.mark_failed(row.entry_id, error)
        return row.applied("failed", error)

    def _send(self, entry_id: int, d: JournalDraft) -> Applied:
        assert d.src_uid is not None
        try:
            if d.action in ("move_junk", "move", "undo"):
                assert d.dst is not None
                result = self.mail.move(d.src, d.src_uid, d.dst)
                self.store.mark_applied(
                    entry_id,
                    dst_uidvalidity=result.dst_uidvalidity,
                    dst_uid=result.dst_uid,
                    detail={**d.detail, "method": result.method},
                )
            else:
                self.mail.add_flags(d.src, d.src_uid, d.detail["flags"])
                self.store.mark_applied(entry_id)
        except ConnectionLostError:
            raise
        except MailStoreError as exc:
            # The server refused (folder gone, quota...). Nothing changed: the message stays put.
            self.store.mark_failed(entry_id, str(exc))
            return Applied(entry_id, d.action, d.src, d.dst, "failed", d.reason, str(exc))
        return Applied(entry_id, d.action, d.src, d.dst, "applied", d.reason)

    # -- finding a message again -----------------------------------------------------------------

    def locate(
        self,
        folder: str,
        message_id: str,
        wanted_hash: str,
        subject: str = "",
        uid_hint: int | None = None,
        uidvalidity_hint: int | None = None,
        *,
        include_deleted: bool = False,
    ) -> list[_Target]:
        """UIDs in ``folder`` holding exactly these bytes and (unless ``include_deleted``)
        not marked \\Deleted."""
        try:
            status = self.mail.select(folder)
        except FolderMissingError:
            return []
        candidates: list[int] = []
        if uid_hint is not None and uidvalidity_hint == status.uidvalidity:
            candidates.append(uid_hint)
        candidates += [
            u for u in self.mail.search_message(folder, message_id, subject) if u not in candidates
        ]
        found = []
        for fetched in self.mail.fetch(folder, candidates, self.settings.max_fetch_bytes):
            if content_hash(fetched.raw) == wanted_hash and (
                include_deleted or DELETED not in fetched.flags
            ):
                found.append(_Target(fetched.uid, fetched.flags))
        return found

    # -- crash recovery --------------------------------------------------------------------------

    def reconcile(self) -> list[JournalEntry]:
        """Settle every planned journal row of this account against the server; oldest first."""
        settled = []
        for entry in reversed(self.store.journal(account=self.settings.name, states=["planned"])):
            try:
                self._reconcile_one(entry)
            except ConnectionLostError:
                raise
            except MailStoreError as exc:
                # Left planned, tried again next time; one message the server will not look
                # up must not keep the account from running.
                log.warning("could not settle journal entry #%d yet: %s", entry.id, exc)
                continue
            settled.append(self.store.journal_entry(entry.id) or entry)
        return settled

    def _reconcile_one(self, e: JournalEntry) -> None:
        if e.action in ("flag", "keyword"):
            here = self.locate(
                e.src, e.message_id, e.content_hash, e.subject, e.src_uid, e.src_uidvalidity
            )
            if not here:
                self.store.mark_failed(e.id, "message no longer in its folder")
                return
            self.mail.add_flags(e.src, here[0].uid, e.detail.get("flags", []))
            self.store.mark_applied(e.id)
            return
        assert e.dst is not None
        in_src = self.locate(
            e.src, e.message_id, e.content_hash, e.subject, e.src_uid, e.src_uidvalidity
        )
        in_dst = self._not_ours_before(
            e, self.locate(e.dst, e.message_id, e.content_hash, e.subject)
        )
        if in_dst:
            # Crashed between COPY and EXPUNGE: the copy is safe in dst, drop the source,
            # including an original already marked \Deleted (killed before UID EXPUNGE);
            # left there it would be met again by the next sync and taken for a rescue.
            leftovers = self.locate(
                e.src,
                e.message_id,
                e.content_hash,
                e.subject,
                e.src_uid,
                e.src_uidvalidity,
                include_deleted=True,
            )
            for leftover in leftovers:
                self.mail.expunge_one(e.src, leftover.uid)
            status = self.mail.select(e.dst)
            self.store.mark_applied(
                e.id,
                dst_uidvalidity=status.uidvalidity,
                dst_uid=in_dst[0].uid,
                detail={**e.detail, "reconciled": True},
            )
        elif in_src and e.action != "undo" and not self._same_uid(e, in_src):
            # The server moved it (a move gives the message a new UID wherever it lands) and
            # someone moved it back before this was recorded: the user rescued it.
            status = self.mail.select(e.src)
            self.store.mark_applied(
                e.id,
                dst_uidvalidity=None,
                dst_uid=None,
                detail={**e.detail, "reconciled": True, "rescued": True},
            )
            if e.action == "move_junk":
                self.store.add_rescued(e.account, e.message_id, e.content_hash, e.src)
            log.info(
                "journal entry #%d: moved to %s and back to %s (UID %s of %d) before it was "
                "recorded; left where the user put it",
                e.id,
                e.dst,
                e.src,
                in_src[0].uid,
                status.uidvalidity,
            )
            return
        elif in_src:
            # The server never saw the move: carry out what was planned.
            result = self.mail.move(e.src, in_src[0].uid, e.dst)
            self.store.mark_applied(
                e.id,
                dst_uidvalidity=result.dst_uidvalidity,
                dst_uid=result.dst_uid,
                detail={**e.detail, "method": result.method, "reconciled": True},
            )
        else:
            self.store.mark_failed(
                e.id,
                f"message found in neither {e.src!r} nor {e.dst!r} "
                "(moved or deleted by another client)",
            )
            return
        if e.action == "undo" and e.undo_of is not None:
            self.store.mark_undone(e.undo_of)

    def _not_ours_before(self, e: JournalEntry, found: list[_Target]) -> list[_Target]:
        """``found`` (in e.dst) without the copies earlier applied moves of the same bytes put
        there: a second copy's interrupted move must not take the first copy for its own."""
        if not found or e.dst is None:
            return found
        earlier = {
            (x.dst_uidvalidity, x.dst_uid)
            for x in self.store.journal(
                account=e.account, states=["applied"], message=(e.message_id, e.content_hash)
            )
            if x.id != e.id and x.dst == e.dst and x.dst_uid is not None
        }
        if not earlier:
            return found
        status = self.mail.select(e.dst)
        return [t for t in found if (status.uidvalidity, t.uid) not in earlier]

    def _same_uid(self, e: JournalEntry, found: Sequence[_Target]) -> bool:
        """Whether the message still has the UID it was planned under; when the folder was
        renumbered that cannot be told, and the answer is no (leave it, never move it back)."""
        status = self.mail.select(e.src)
        return status.uidvalidity == e.src_uidvalidity and any(t.uid == e.src_uid for t in found)

    # -- undo ------------------------------------------------------------------------------------

    def undo(self, entries: Sequence[JournalEntry]) -> list[UndoResult]:
        """Move mail back / remove our marks for each entry, newest first. Idempotent."""
        results = []
        for e in entries:
            results.append(self._undo_one(e))
        return results

    def _undo_one(self, e: JournalEntry) -> UndoResult:
        current = self.store.journal_entry(e.id) or e
        if current.state == "undone":
            return UndoResult(e.id, "already undone")
        if current.state != "applied" or current.action == "undo":
            return UndoResult(e.id, "not applied", f"state {current.state}")
        if current.action in ("flag", "keyword"):
            ours = [
                f
                for f in current.detail.get("flags", [])
                if f not in current.detail.get("already", [])
            ]
            here = self.locate(
                current.src,
                current.message_id,
                current.content_hash,
                current.subject,
                current.src_uid,
                current.src_uidvalidity,
            )
            if here and ours:
                self.mail.remove_flags(current.src, here[0].uid, ours)
            self.store.mark_undone(current.id)
            self.store.add_rescued(
                current.account, current.message_id, current.content_hash, current.src
            )
            return UndoResult(e.id, "undone", "marks removed" if here else "message gone")
        assert current.dst is not None
        in_dst = self.locate(
            current.dst,
            current.message_id,
            current.content_hash,
            current.subject,
            current.dst_uid,
            current.dst_uidvalidity,
        )
        if not in_dst:
            if self.locate(current.src, current.message_id, current.content_hash, current.subject):
                self.store.mark_undone(current.id)
                return UndoResult(e.id, "undone", f"already back in {current.src}")
            return UndoResult(
                e.id, "not found", f"not in {current.dst!r} or {current.src!r} any more"
            )
        status = self.mail.select(current.dst)
        draft = JournalDraft(
            "undo",
            current.dst,
            status.uidvalidity,
            in_dst[0].uid,
            current.src,
            reason=f"undo of #{current.id}",
            undo_of=current.id,
        )
        undo_id = self.store.add_journal(
            current.account, current.message_id, current.content_hash, current.subject, draft
        )
        applied = self._send(undo_id, draft)
        if applied.state != "applied":
            return UndoResult(e.id, "not found", applied.error)
        self.store.mark_undone(current.id)
        # The user overruled us: never move this message again.
        self.store.add_rescued(
            current.account, current.message_id, current.content_hash, current.src
        )
        return UndoResult(e.id, "undone", f"moved back to {current.src}")
