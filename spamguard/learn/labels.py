"""Labels from what the user does with mail on any device: moves, Junk keywords, buttons, CLI."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from typing import Literal, Protocol

from spamguard.config import AccountSettings
from spamguard.errors import FolderMissingError, MailStoreError, MessageError, NotMailError
from spamguard.mail.base import DELETED, MailStore
from spamguard.mail.connect import open_mailstore
from spamguard.mail.executor import Executor
from spamguard.mail.folders import find_junk_folder
from spamguard.message import Message, parse_message
from spamguard.policy import Action, Plan
from spamguard.scoring.rules import is_gtube
from spamguard.store import FeedbackRow, ScoredMessage, SeenMessage, Store

__all__ = [
    "HAM_KEYWORDS",
    "SPAM_KEYWORDS",
    "FeedbackWatcher",
    "Label",
    "LabelRecorded",
    "MailContext",
    "apply_label",
    "find_scored",
    "latest_labels",
    "record_label",
]

log = logging.getLogger(__name__)

Label = Literal["spam", "ham"]

# Apple Mail, Thunderbird, Roundcube and the RFC 5788 registry spell them these ways.
SPAM_KEYWORDS = frozenset({"$Junk", "Junk"})
HAM_KEYWORDS = frozenset({"$NotJunk", "NotJunk", "NonJunk", "$NonJunk"})
# Rescues of one sender after which they are treated like someone the user writes to:
# once is an accident of the filter, twice is a pattern.
ALLOW_AFTER_RESCUES = 2
# A Junk folder emptied in one go is deletion, not rescue: only this many vanished
# messages are looked for in other folders per sync.
MAX_SEARCHED = 100
_FETCH_BATCH = 100
_SKIP_FOLDER_FLAGS = frozenset({"\\junk", "\\trash", "\\drafts", "\\noselect", "\\sent"})


@dataclass(frozen=True, slots=True)
class LabelRecorded:
    """A label feedback recorded (a new one, not a repeat of the message's last label)."""

    id: int
    account: str
    message_id: str
    content_hash: str
    label: Label
    source: str
    subject: str = ""
    rescued: bool = False
    allowed_sender: str = ""  # set when this rescue put the sender on the learned allow list


class MailContext(Protocol):
    """What feedback needs of an account worker (`service.AccountWorker` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def mail(self) -> MailStore: ...
    @property
    def store(self) -> Store: ...
    @property
    def settings(self) -> AccountSettings: ...
    @property
    def junk_folder(self) -> str | None: ...


@dataclass(frozen=True)
class LabelContext:
    """A `MailContext` for one label outside a running worker (`spamguard label`, the
    Thunderbird host): the account's open mail store, state store and settings."""

    name: str
    mail: MailStore
    store: Store
    settings: AccountSettings
    junk_folder: str | None


@contextmanager
def labelling(settings: AccountSettings, store: Store) -> Iterator[tuple[LabelContext, Executor]]:
    """The account's mail store, connected, as a `LabelContext` and its `Executor` for
    `apply_label`; closed afterwards. A missing Junk folder is None (a ham label still works)."""
    mail = open_mailstore(settings)
    mail.connect()
    try:
        try:
            junk: str | None = find_junk_folder(mail, settings)
        except FolderMissingError:
            junk = None
        ctx = LabelContext(settings.name, mail, store, settings, junk)
        yield ctx, Executor(mail, store, settings, junk_folder=junk)
    finally:
        mail.close()


# -- recording ----------------------------------------------------------------------------------


def record_label(
    store: Store,
    account: str,
    message_id: str,
    content_hash: str,
    label: Label,
    source: str,
    *,
    message: Message | None = None,
    raw: bytes | None = None,
    folder: str = "",
    rescued: bool = False,
    allow_after: int = ALLOW_AFTER_RESCUES,
) -> LabelRecorded | None:
    """Record the user's label for one message; None when it repeats the last one.

    The one entry point for moves, keywords, the app's buttons and `spamguard label`.
    ``raw`` (the fetched bytes) is kept locally so a retrain never needs the server.
    A rescue also protects the message from any later move and, after ``allow_after``
    rescues from one sender, makes that sender count as a known correspondent.
    """
    if raw is not None and _is_test_message(message, raw):
        # The GTUBE test line: the user's action is recorded, but the bytes are not kept,
        # so a retrain never learns from a filter check.
        raw = None
    if rescued:
        store.add_rescued(account, message_id, content_hash, folder)
    previous = store.feedback_rows(account, message=(message_id, content_hash))
    if previous and previous[-1].label == label:
        if raw is not None and store.label_raw(content_hash) is None:
            store.record_feedback(account, message_id, content_hash, label, source, raw=raw)
        return None
    sender = message.from_addr.lower() if message is not None else ""
    row_id = store.record_feedback(
        account,
        message_id,
        content_hash,
        label,
        source,
        from_addr=sender,
        folder=folder,
        raw=raw,
    )
    allowed = ""
    if (
        rescued
        and sender
        and not store.is_correspondent(account, sender)
        and store.rescued_count(account, sender) >= allow_after
    ):
        store.add_correspondents(account, [sender])
        allowed = sender
    return LabelRecorded(
        row_id,
        account,
        message_id,
        content_hash,
        label,
        source,
        message.subject if message is not None else "",
        rescued,
        allowed,
    )


def _is_test_message(message: Message | None, raw: bytes) -> bool:
    if message is None:
        try:
            message = parse_message(raw)
        except MessageError:
            return False
    return is_gtube(message)


def latest_labels(store: Store, account: str | None = None) -> dict[tuple[str, str], FeedbackRow]:
    """(Message-ID, content hash) -> the newest label: a user may change their mind."""
    out: dict[tuple[str, str], FeedbackRow] = {}
    for row in store.feedback_rows(account):
        out[(row.message_id, row.content_hash)] = row
    return out


# -- detection during sync ----------------------------------------------------------------------


@dataclass
class _Fetched:
    uid: int
    message: Message
    raw: bytes
    flags: frozenset[str]


class FeedbackWatcher:
    """Turns what changed in Junk and the watched folders since the last sync into labels.

    Runs before the account's folders are synced, so a message the user took out of Junk
    is marked rescued before the engine meets it again in the Inbox and is never moved back.
    Flag changes come from CONDSTORE (FETCH CHANGEDSINCE) where the server offers it, else
    from a full FLAGS diff; arrivals and departures from a diff of the UID list, which is
    a few kilobytes even for large folders. Messages are matched by Message-ID + content hash.
    """

    def __init__(self, *, max_searched: int = MAX_SEARCHED) -> None:
        self.max_searched = max_searched

    def refresh_junk(self, ctx: MailContext) -> list[LabelRecorded]:
        """Look at Junk again after a sync so what SpamGuard just moved there is known
        before the user can move it out (its departure is then a rescue, found by diff)."""
        if ctx.junk_folder is None:
            return []
        try:
            return self._scan(ctx, ctx.junk_folder, is_junk=True)
        except FolderMissingError:
            return []

    def backfill(self, ctx: MailContext, *, limit: int = 20) -> int:
        """Fetch the bytes of labels recorded without them (the app's buttons label from a
        table row), looking where the label was given, then in Junk and the watched folders.
        Returns how many were found; the rest are tried again next sync."""
        store, mail = ctx.store, ctx.mail
        rows = [
            r
            for r in latest_labels(store, ctx.name).values()
            if r.message_id and store.label_raw(r.content_hash) is None
        ][:limit]
        found = 0
        for row in rows:
            folders = [row.folder, ctx.junk_folder, *ctx.settings.watch_folders]
            for folder in dict.fromkeys(f for f in folders if f):
                try:
                    uids = mail.search_message(folder, row.message_id)
                    hits = self._fetch(ctx, folder, uids) if uids else {}
                except FolderMissingError:
                    continue
                match = [h for h in hits.values() if h.message.content_hash == row.content_hash]
                if match:
                    store.save_label_raw(row.content_hash, match[0].raw)
                    found += 1
                    break
        return found

    def detect(self, ctx: MailContext) -> list[LabelRecorded]:
        out: list[LabelRecorded] = []
        junk = ctx.junk_folder
        if junk is not None:
            try:
                out += self._scan(ctx, junk, is_junk=True)
            except FolderMissingError:
                log.info("Junk folder %r vanished during feedback detection", junk)
        for folder in ctx.settings.watch_folders:
            if folder == junk:
                continue
            try:
                out += self._scan(ctx, folder, is_junk=False)
            except FolderMissingError:
                continue  # the service reports missing watched folders itself
        return out

    # -- one folder --------------------------------------------------------------------------

    def _scan(self, ctx: MailContext, folder: str, *, is_junk: bool) -> list[LabelRecorded]:
        mail, store, account = ctx.mail, ctx.store, ctx.name
        status = mail.select(folder)
        watch = store.folder_watch(account, folder)
        first_look = watch is None or watch[0] != status.uidvalidity
        seen = {} if first_look else store.seen_in_folder(account, folder)
        since = None if first_look or watch is None else watch[1]
        use_modseq = since is not None and status.highestmodseq is not None
        current = set(mail.uids(folder))
        if use_modseq and status.highestmodseq == since:
            listing: dict[int, frozenset[str]] = {}
        else:
            listing = _flags(mail, folder, sorted(current), since if use_modseq else None)
        arrived = sorted(current - set(seen))
        gone = sorted(set(seen) - current)
        # With CONDSTORE the listing holds only what changed; without, it is the diff base.
        changed = {u: f for u, f in listing.items() if u in seen and seen[u].flags != f}
        out: list[LabelRecorded] = []
        upsert: list[SeenMessage] = []

        # Arrivals. Before we watched (first look) nothing is a label: we cannot tell who did it.
        # What SpamGuard moved here itself is known from the journal (COPYUID): after a first
        # sync that is most of Junk, thousands of messages not worth fetching again.
        ours = _moved_here(store, account, folder, status.uidvalidity) if is_junk else {}
        fetched: dict[int, _Fetched] = {}
        tried: set[int] = set()
        for n, uid in enumerate(arrived):
            if uid in ours:
                upsert.append(SeenMessage(uid, *ours[uid], listing.get(uid, frozenset())))
                continue
            if is_junk and uid not in tried:
                # One chunk at a time, so a big Junk folder is never held in memory at once.
                chunk = list(islice((u for u in arrived[n:] if u not in ours), _FETCH_BATCH))
                fetched, tried = self._fetch(ctx, folder, chunk), set(chunk)
            got = fetched.get(uid)
            if got is None:
                upsert.append(SeenMessage(uid, None, None, listing.get(uid, frozenset())))
                continue
            msg = got.message
            upsert.append(SeenMessage(uid, msg.message_id, msg.content_hash, got.flags))
            if first_look or not is_junk or _moved_by_spamguard(store, account, msg):
                continue
            # Known = we scored it (or saw it) in another folder: a person moved it here.
            # Unknown mail the server filed straight into Junk teaches nothing.
            known = store.is_handled(account, msg.message_id, msg.content_hash) or any(
                f != folder for f in store.seen_elsewhere(account, msg.message_id, msg.content_hash)
            )
            if known:
                rec = record_label(
                    store,
                    account,
                    msg.message_id,
                    msg.content_hash,
                    "spam",
                    f"moved to {folder}",
                    message=msg,
                    raw=got.raw,
                    folder=folder,
                )
                if rec is not None:
                    out.append(rec)

        # Keywords another client set on messages we had seen before.
        keyword_uids = [
            uid
            for uid, flags in changed.items()
            if uid in seen and _keyword_label(flags - seen[uid].flags, ctx.settings) is not None
        ]
        need = [u for u in keyword_uids if seen[u].content_hash is None]
        identities = self._fetch(ctx, folder, need) if need else {}
        for uid, flags in changed.items():
            old = seen[uid]
            label = _keyword_label(flags - old.flags, ctx.settings)
            got = identities.get(uid)
            mid = old.message_id if got is None else got.message.message_id
            chash = old.content_hash if got is None else got.message.content_hash
            upsert.append(SeenMessage(uid, mid, chash, flags))
            if label is None or mid is None or chash is None:
                continue
            if got is None:
                # Fetch the bytes once: they are what a retrain learns from.
                got = self._fetch(ctx, folder, [uid]).get(uid)
            keyword = sorted((flags - old.flags) & (SPAM_KEYWORDS | HAM_KEYWORDS))[0]
            rec = record_label(
                store,
                account,
                mid,
                chash,
                label,
                f"keyword {keyword} in {folder}",
                message=got.message if got is not None else None,
                raw=got.raw if got is not None else None,
                folder=folder,
                # Someone said "not junk" in so many words: never move it.
                rescued=label == "ham",
            )
            if rec is not None:
                out.append(rec)

        # Departures from Junk: a rescue if the same bytes turn up in another folder.
        removed = list(gone)
        if is_junk and gone:
            candidates = [seen[u] for u in gone if seen[u].message_id and seen[u].content_hash]
            if len(candidates) <= self.max_searched:
                out += self._find_rescued(ctx, folder, candidates)
            else:
                log.info("%d messages left %r at once: treated as emptying Junk", len(gone), folder)
        store.save_folder_seen(
            account,
            folder,
            status.uidvalidity,
            status.highestmodseq,
            upsert=upsert,
            removed=removed,
            reset=first_look,
        )
        return out

    def _find_rescued(
        self, ctx: MailContext, junk: str, candidates: Sequence[SeenMessage]
    ) -> list[LabelRecorded]:
        mail, store, account = ctx.mail, ctx.store, ctx.name
        try:
            folders = [
                f.name
                for f in mail.list_folders()
                if f.name != junk
                and not {x.lower() for x in f.flags} & _SKIP_FOLDER_FLAGS
                and f.name.lower() not in ("trash", "deleted messages", "deleted items")
            ]
        except MailStoreError:
            return []
        # The watched folders first: that is where rescued mail usually goes.
        folders.sort(key=lambda f: (f not in ctx.settings.watch_folders, f))
        out: list[LabelRecorded] = []
        for seen in candidates:
            assert seen.message_id is not None and seen.content_hash is not None
            if store.is_rescued(account, seen.message_id, seen.content_hash):
                continue
            for folder in folders:
                try:
                    uids = mail.search_message(folder, seen.message_id)
                except FolderMissingError:
                    continue
                if not uids:
                    continue
                hits = [
                    f
                    for f in self._fetch(ctx, folder, uids).values()
                    if f.message.content_hash == seen.content_hash and DELETED not in f.flags
                ]
                if not hits:
                    continue
                hit = hits[0]
                rec = record_label(
                    store,
                    account,
                    seen.message_id,
                    seen.content_hash,
                    "ham",
                    f"moved out of Junk to {folder}",
                    message=hit.message,
                    raw=hit.raw,
                    folder=folder,
                    rescued=True,
                )
                if rec is not None:
                    out.append(rec)
                break
        return out

    def _fetch(self, ctx: MailContext, folder: str, uids: Sequence[int]) -> dict[int, _Fetched]:
        out: dict[int, _Fetched] = {}
        for i in range(0, len(uids), _FETCH_BATCH):
            for item in ctx.mail.fetch(
                folder, uids[i : i + _FETCH_BATCH], ctx.settings.max_fetch_bytes
            ):
                try:
                    msg = parse_message(item.raw)
                except NotMailError:
                    continue
                out[item.uid] = _Fetched(item.uid, msg, item.raw, item.flags)
        return out


def _moved_here(
    store: Store, account: str, folder: str, uidvalidity: int
) -> dict[int, tuple[str, str]]:
    """{UID in ``folder``: (Message-ID, content hash)} of the messages SpamGuard moved there,
    as the server's COPYUID numbered them (only while the folder keeps its UIDVALIDITY)."""
    return {
        e.dst_uid: (e.message_id, e.content_hash)
        for e in store.journal(account=account, states=["applied"], actions=["move_junk"])
        if e.dst == folder and e.dst_uid is not None and e.dst_uidvalidity == uidvalidity
    }


def _flags(
    mail: MailStore, folder: str, uids: Sequence[int], changed_since: int | None
) -> dict[int, frozenset[str]]:
    reader = getattr(mail, "fetch_flags", None)
    if reader is not None:
        flags: dict[int, frozenset[str]] = reader(folder, uids, changed_since=changed_since)
        return flags
    # Backends without a flags-only read (Maildir: flags live in file names anyway).
    return {f.uid: f.flags for f in mail.fetch(folder, uids, 1)}


def _keyword_label(added: Iterable[str], settings: AccountSettings) -> Label | None:
    # SpamGuard's own flag keyword is ours, whatever the user named it.
    words = {w for w in added if w != settings.flag_keyword}
    if words & HAM_KEYWORDS:
        return "ham"
    if words & SPAM_KEYWORDS:
        return "spam"
    return None


def _moved_by_spamguard(store: Store, account: str, msg: Message) -> bool:
    entries = store.journal(
        account=account,
        states=["planned", "applied"],
        actions=["move_junk"],
        message=(msg.message_id, msg.content_hash),
        limit=1,
    )
    return bool(entries)


# -- explicit labels: `spamguard label` and the app's buttons ---------------------------------


def find_scored(store: Store, ref: str, account: str | None = None) -> ScoredMessage | None:
    """A message SpamGuard scored, by store id (digits) or Message-ID (with or without <>)."""
    return store.find_scored(ref, account)


def apply_label(
    ctx: MailContext,
    executor: Executor,
    scored: ScoredMessage,
    label: Label,
    *,
    source: str = "spamguard label",
) -> LabelRecorded | None:
    """Record ``label`` and move the message to match: spam into Junk; ham out of Junk
    (undoing SpamGuard's own move when there was one) and rescued for good."""
    store, account = ctx.store, ctx.name
    key = (scored.message_id, scored.content_hash)
    ours = store.journal(account=account, states=["applied"], message=key)
    location = scored.folder
    for e in sorted(ours, key=lambda e: e.id):
        if e.action in ("move_junk", "move", "undo") and e.dst:
            location = e.dst
    found = executor.locate(location, scored.message_id, scored.content_hash, scored.subject)
    raw = None
    msg = None
    if found:
        fetched = ctx.mail.fetch(location, [found[0].uid], ctx.settings.max_fetch_bytes)
        if fetched:
            raw = fetched[0].raw
            try:
                msg = parse_message(raw)
            except NotMailError:
                msg = None
    if label == "spam":
        junk = ctx.junk_folder
        if junk is None:
            raise FolderMissingError(
                f"account {account!r} has no Junk folder to move the message to; choose "
                'one in the account settings (junk_folder = "..." in the config)',
                folder="Junk",
            )
        if location != junk:
            if not found:
                raise MailStoreError(
                    f"the message is no longer in {location!r} (moved or deleted elsewhere)"
                )
            status = ctx.mail.select(location)
            here = replace(
                scored, folder=location, uid=found[0].uid, uidvalidity=status.uidvalidity
            )
            plan = Plan(scored.p_spam, "spam", (Action("junk", "you labelled it spam"),))
            for applied in executor.apply(here, plan, found[0].flags):
                if applied.state != "applied":
                    raise MailStoreError(applied.error or "the server refused the move")
        return record_label(
            store, account, *key, "spam", source, message=msg, raw=raw, folder=location
        )
    undoable = [e for e in ours if e.action in ("move_junk", "move", "flag", "keyword")]
    if undoable:
        for result in executor.undo(undoable):
            if result.outcome == "not found":
                raise MailStoreError(result.detail or "the message could not be found")
    elif location == ctx.junk_folder and found:
        # The server (not SpamGuard) filed it: move it to where the user reads mail.
        inbox = ctx.settings.watch_folders[0] if ctx.settings.watch_folders else "INBOX"
        status = ctx.mail.select(location)
        here = replace(scored, folder=location, uid=found[0].uid, uidvalidity=status.uidvalidity)
        plan = Plan(scored.p_spam, "ham", (Action("move", "you labelled it not spam", inbox),))
        for applied in executor.apply(here, plan, found[0].flags):
            if applied.state != "applied":
                raise MailStoreError(applied.error or "the server refused the move")
    return record_label(
        store,
        account,
        *key,
        "ham",
        source,
        message=msg,
        raw=raw,
        folder=scored.folder,
        rescued=True,
    )
