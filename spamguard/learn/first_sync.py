"""Learning from the mail an account already holds, once, when the user agrees.

Its Junk folder is spam; mail in the Inbox (and the Archive) older than a few days that the
user read or answered, and that neither they nor SpamGuard ever sent to Junk, is ham. These
labels are implied, not given, so each counts for less than a label the user gave
(``FirstSyncOptions.weight``); a Junk message that the account's own server had also marked
spam counts a little more (``provider_weight``).

Read-only throughout: folders are opened with EXAMINE and bodies fetched with BODY.PEEK, so
no message moves and no flag changes. Every batch read is kept in the store before the next
is fetched, so a cancelled run resumes where it stopped without fetching a message twice.
The new head version is checked like every retrain (`learning.retrain_steps`: held-back
labels, here the account's own mail, which the active model never saw) and recorded as a
version that `ModelRegistry.rollback` undoes in one step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from spamguard.config import AccountSettings
from spamguard.errors import FolderMissingError, SpamGuardError
from spamguard.learn.fit import Progress
from spamguard.learn.loop import ImplicitLabels, LearnOptions, RetrainOutcome, retrain_steps
from spamguard.learn.registry import ModelRegistry
from spamguard.learn.warm import Cancelled, WarmStartOptions
from spamguard.mail.base import SEEN, MailStore, content_hash
from spamguard.mail.folders import find_archive_folder, locate_junk_folder
from spamguard.message import parse_message
from spamguard.store import FirstSyncRow, Store

__all__ = [
    "FirstSyncOptions",
    "FirstSyncResult",
    "first_sync_steps",
    "learn_existing",
    "provider_says_spam",
]

ANSWERED = "\\Answered"
# Keywords other clients (and SpamGuard's own feedback) use for "this is junk".
_JUNK_KEYWORDS = frozenset({"$junk", "junk", "$spam", "spam"})
FLAG_CHUNK = 2000  # UIDs per FETCH FLAGS (servers cap command lines)


@dataclass(frozen=True, slots=True)
class FirstSyncOptions:
    max_spam: int = 2000  # the newest this many in Junk
    max_ham: int = 2000  # the newest this many read or answered messages
    min_age_days: int = 3  # mail younger than this may not have been judged yet
    min_spam: int = 10  # fewer than this: no new version, and nothing is fetched
    min_ham: int = 10
    weight: float = 0.5  # an implied label counts half of one the user gave
    provider_weight: float = 0.75  # Junk mail the account's own server marked spam too
    batch: int = 50  # messages per FETCH; the unit of resuming
    max_bytes: int = 256 * 1024  # of each message, like scoring reads
    # 0: promote once the held-back checks pass (the account's own mail, thousands of
    # messages, is a stronger check than a shadow run); N: shadow for N live messages first.
    shadow_messages: int = 0
    ham_folders: tuple[str, ...] = ()  # default: INBOX and the Archive folder when there is one


@dataclass(frozen=True, slots=True)
class FirstSyncResult:
    account: str
    state: Literal["learned", "rejected", "shadow", "too little", "unchanged"]
    message: str  # one line for the user
    n_spam: int = 0
    n_ham: int = 0
    n_provider_spam: int = 0
    junk_folder: str | None = None
    ham_folders: tuple[str, ...] = ()
    fetched: int = 0  # messages read from the server in this run
    reused: int = 0  # read by an earlier, cancelled run
    outcome: RetrainOutcome | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Wanted:
    folder: str
    uidvalidity: int
    label: Literal["spam", "ham"]
    uids: list[int]


def provider_says_spam(raw: bytes) -> bool:
    """Whether the account's own server marked this message spam.

    Only a verdict header above the topmost Received header counts: the receiving server
    adds its Received line and its filter's verdict on top of the message, and anything a
    sender wrote sits below every Received line the receiving side added. A message with no
    Received header at all proves nothing either way.
    """
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("latin-1")
    fields: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + " " + line.strip())
            continue
        key, sep, text = line.partition(":")
        if sep:
            fields.append((key.strip().lower(), text.strip().lower()))
    if not any(key == "received" for key, _ in fields):
        return False
    for key, text in fields:
        if key == "received":
            return False
        if key in ("x-spam-flag", "x-spam", "x-spam-status") and text.startswith("yes"):
            return True
    return False


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _flags_of(mail: MailStore, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
    fetch_flags = getattr(mail, "fetch_flags", None)
    if fetch_flags is not None:
        flags: dict[int, frozenset[str]] = fetch_flags(folder, uids)
        return flags
    # A backend without a flags-only read (Maildir): the flags come with zero bytes of body.
    return {m.uid: m.flags for m in mail.fetch(folder, uids, 0)}


def _ham_candidates(
    mail: MailStore, folder: str, options: FirstSyncOptions, limit: int
) -> list[int]:
    """The newest ``limit`` UIDs in ``folder`` older than the age limit, read or answered,
    with no junk keyword."""
    everything = mail.uids(folder)
    recent = set(mail.uids(folder, since=_today() - dt.timedelta(days=options.min_age_days)))
    old = [u for u in reversed(everything) if u not in recent]
    out: list[int] = []
    for i in range(0, len(old), FLAG_CHUNK):
        chunk = old[i : i + FLAG_CHUNK]
        flags = _flags_of(mail, folder, chunk)
        for uid in chunk:
            f = flags.get(uid, frozenset())
            if (SEEN in f or ANSWERED in f) and not {x.lower() for x in f} & _JUNK_KEYWORDS:
                out.append(uid)
                if len(out) >= limit:
                    return out
    return out


def _plan(
    mail: MailStore, settings: AccountSettings, options: FirstSyncOptions
) -> tuple[str | None, list[_Wanted], list[str]]:

    junk = locate_junk_folder(mail, settings)
    wanted: list[_Wanted] = []
    if junk is not None:
        try:
            status = mail.select(junk)
            uids = sorted(mail.uids(junk), reverse=True)[: options.max_spam]
            wanted.append(_Wanted(junk, status.uidvalidity, "spam", uids))
        except FolderMissingError:
            junk = None
    folders = list(options.ham_folders)
    if not folders:
        folders = ["INBOX"]
        archive = find_archive_folder(mail)
        if archive is not None and archive not in folders:
            folders.append(archive)
    used: list[str] = []
    left = options.max_ham
    for folder in folders:
        if left <= 0 or folder == junk:
            break
        try:
            status = mail.select(folder)
        except FolderMissingError:
            continue
        uids = _ham_candidates(mail, folder, options, left)
        used.append(folder)
        wanted.append(_Wanted(folder, status.uidvalidity, "ham", uids))
        left -= len(uids)
    return junk, wanted, used


def first_sync_steps(
    mail: MailStore,
    settings: AccountSettings,
    store: Store,
    registry: ModelRegistry,
    options: FirstSyncOptions = FirstSyncOptions(),
    *,
    cancel: threading.Event | None = None,
    encoder: Any = None,
    learn: LearnOptions | None = None,
) -> Generator[Progress, None, FirstSyncResult]:
    """Read, then learn; yields progress ("looking", "reading", "features", then the
    retrain's steps). ``mail`` must be connected. Raises `Cancelled` when ``cancel`` is set
    (what was read stays in the store for the next run)."""
    account = settings.name

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("learning from the existing mail was cancelled")

    yield Progress("looking", 0, 1)
    junk, wanted, ham_folders = _plan(mail, settings, options)
    yield Progress("looking", 1, 1)
    check()
    n_spam_found = sum(len(w.uids) for w in wanted if w.label == "spam")
    n_ham_found = sum(len(w.uids) for w in wanted if w.label == "ham")
    where = " and ".join(ham_folders) or "the Inbox"
    base: dict[str, Any] = {
        "account": account,
        "junk_folder": junk,
        "ham_folders": tuple(ham_folders),
        "counts": {"junk": n_spam_found, "read": n_ham_found},
    }
    too_little = _too_little(junk, n_spam_found, n_ham_found, where, options)
    if too_little:
        return FirstSyncResult(state="too little", message=too_little, **base)

    # -- reading: only what an earlier run has not read yet ---------------------------------
    total = n_spam_found + n_ham_found
    done = fetched = reused = 0
    yield Progress("reading", 0, total)
    rows: list[tuple[str, FirstSyncRow]] = []
    for want in wanted:
        have = store.first_sync_read(account, want.folder, want.uidvalidity)
        todo = [u for u in want.uids if u not in have]
        reused += len(want.uids) - len(todo)
        done += len(want.uids) - len(todo)
        for i in range(0, len(todo), options.batch):
            check()
            batch: list[tuple[FirstSyncRow, bytes]] = []
            for msg in mail.fetch(want.folder, todo[i : i + options.batch], options.max_bytes):
                row = FirstSyncRow(
                    msg.uid,
                    _message_id(msg.raw),
                    content_hash(msg.raw),
                    want.label,
                    want.label == "spam" and provider_says_spam(msg.raw),
                )
                batch.append((row, msg.raw))
            store.save_first_sync(account, want.folder, want.uidvalidity, batch)
            for row, _ in batch:
                have[row.uid] = row
            fetched += len(batch)
            done += len(todo[i : i + options.batch])
            yield Progress("reading", done, total)
        rows.extend((want.folder, have[u]) for u in want.uids if u in have)
    check()

    implicit = _implicit(store, account, rows, options)
    n_spam = sum(implicit.spam)
    n_ham = len(implicit.spam) - n_spam
    n_provider = int(implicit.summary.get("provider_spam", 0))
    learned_from = _learned_from(n_spam, junk, n_ham)
    base.update(
        n_spam=n_spam,
        n_ham=n_ham,
        n_provider_spam=n_provider,
        fetched=fetched,
        reused=reused,
    )
    too_little = _too_little(junk, n_spam, n_ham, where, options, after_checks=True)
    if too_little:
        return FirstSyncResult(state="too little", message=too_little, **base)

    if fetched == 0 and _already_learned(registry, account, implicit):
        message = (
            f"already learned from this mail ({n_spam:,} spam in {junk}, {n_ham:,} read "
            f"messages) in the active model {registry.active}; nothing new to learn"
        )
        return FirstSyncResult(state="unchanged", message=message, **base)

    # -- features in chunks (cached in the store: a resumed run does not redo them) ----------
    from spamguard.learn.loop import _StoredMessages
    from spamguard.learn.warm import design_for
    from spamguard.scoring.model import load_model

    featurizer = load_model(registry.active_dir()).featurizer
    if featurizer.uses_embedding and encoder is None:
        from spamguard.scoring.encoder import load_encoder

        encoder = load_encoder("int8")
    hashes = implicit.hashes
    chunk = 64
    for i in range(0, len(hashes), chunk):
        part = hashes[i : i + chunk]
        design_for(
            featurizer,
            _StoredMessages(store, part),
            hashes=part,
            headerless=False,
            encoder=encoder,
            cache=store,
        )
        yield Progress("features", min(i + chunk, len(hashes)), len(hashes))
        check()

    # -- the retrain and its checks --------------------------------------------------------
    learn = learn or LearnOptions(
        shadow_messages=options.shadow_messages,
        background=False,
        # Thousands of implied labels: their headerless copies would double a dense Gram
        # matrix (4,000 rows: 128 MB; 8,000: 512 MB) for little gain.
        warm=WarmStartOptions(augment_headerless=False),
    )
    outcome: RetrainOutcome = yield from retrain_steps(
        store, registry, learn, cancel=cancel, encoder=encoder, implicit=implicit
    )
    if outcome.state == "rejected":
        message = (
            f"{learned_from}, but the new model did worse on that mail than the current one "
            f"({outcome.reason}); the current model stays"
        )
        return FirstSyncResult(state="rejected", message=message, outcome=outcome, **base)
    if outcome.state == "shadow":
        message = (
            f"{learned_from}; the new model {outcome.version} runs in shadow beside the "
            f"current one for {learn.shadow_messages} messages before it takes over"
        )
        return FirstSyncResult(state="shadow", message=message, outcome=outcome, **base)
    held = outcome.metrics.get("held_back", {})
    message = (
        f"{learned_from}; the new model {outcome.version} is active "
        f"({held.get('errors_candidate', '?')} vs {held.get('errors_active', '?')} errors "
        f"on {held.get('n', '?')} held-back messages; `spamguard models rollback` undoes it)"
    )
    return FirstSyncResult(state="learned", message=message, outcome=outcome, **base)


def _already_learned(registry: ModelRegistry, account: str, implicit: ImplicitLabels) -> bool:
    """Whether the active version was made by first sync from exactly these messages."""
    active = registry.active
    if active is None:
        return False
    done = registry.get(active).metrics.get("implicit", {})
    return bool(
        done.get("account") == account and done.get("digest") == implicit.summary.get("digest")
    )


def _message_id(raw: bytes) -> str:

    try:
        return parse_message(raw).message_id
    except SpamGuardError:
        return ""


def _learned_from(n_spam: int, junk: str | None, n_ham: int) -> str:
    return f"learned from {n_spam:,} spam in {junk or 'Junk'} and {n_ham:,} read messages"


def _too_little(
    junk: str | None,
    n_spam: int,
    n_ham: int,
    where: str,
    options: FirstSyncOptions,
    *,
    after_checks: bool = False,
) -> str | None:
    tail = (
        "; no new model version (SpamGuard still learns from each message you move to or "
        "out of Junk)"
    )
    kept = " that SpamGuard did not put there itself" if after_checks else ""
    if junk is None:
        return f"this account has no Junk folder, so there is no spam to learn from{tail}"
    if n_spam == 0 and not after_checks:
        return f"{junk} is empty: there is no spam to learn from{tail}"
    if n_spam < options.min_spam:
        return (
            f"only {n_spam} message{'s' if n_spam != 1 else ''} in {junk}{kept}; at least "
            f"{options.min_spam} are needed to learn from{tail}"
        )
    if n_ham < options.min_ham:
        return (
            f"only {n_ham} read message{'s' if n_ham != 1 else ''} older than "
            f"{options.min_age_days} days in {where}; at least {options.min_ham} are "
            f"needed to learn from{tail}"
        )
    return None


def _implicit(
    store: Store, account: str, rows: Sequence[tuple[str, FirstSyncRow]], options: FirstSyncOptions
) -> ImplicitLabels:
    """The implied labels, without SpamGuard's own verdicts and without contradictions."""
    moved_by_us, labelled_spam = store.junk_history(account)
    by_hash: dict[str, set[str]] = {}
    for _, row in rows:
        by_hash.setdefault(row.content_hash, set()).add(row.label)
    hashes: list[str] = []
    spam: list[bool] = []
    weights: list[float] = []
    seen: set[str] = set()
    skipped = {"ours": 0, "was_junk": 0, "both": 0}
    provider = 0
    for _, row in rows:
        h = row.content_hash
        if h in seen:
            continue
        seen.add(h)
        if len(by_hash[h]) > 1:
            skipped["both"] += 1  # the same message in Junk and in the Inbox: no evidence
            continue
        if row.message_id and row.message_id in moved_by_us:
            # SpamGuard's own past verdict (and, if it is in the Inbox now, a rescue, which
            # the feedback table already holds as an explicit label).
            skipped["ours"] += 1
            continue
        if row.label == "ham" and row.message_id and row.message_id in labelled_spam:
            skipped["was_junk"] += 1
            continue
        hashes.append(h)
        spam.append(row.label == "spam")
        if row.provider_spam:
            provider += 1
            weights.append(options.provider_weight)
        else:
            weights.append(options.weight)
    labels = sorted(f"{h}:{int(s)}" for h, s in zip(hashes, spam, strict=True))
    digest = hashlib.sha256("\n".join(labels).encode()).hexdigest()
    return ImplicitLabels(
        hashes,
        spam,
        weights,
        f"from {account}'s existing mail",
        summary={
            "account": account,
            "provider_spam": provider,
            "skipped": skipped,
            "digest": digest,
        },
    )


def learn_existing(
    mail: MailStore,
    settings: AccountSettings,
    store: Store,
    registry: ModelRegistry,
    options: FirstSyncOptions = FirstSyncOptions(),
    *,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    encoder: Any = None,
) -> FirstSyncResult:
    """Run `first_sync_steps` to the end."""
    gen = first_sync_steps(mail, settings, store, registry, options, cancel=cancel, encoder=encoder)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            result: FirstSyncResult = stop.value
            return result
        if on_progress is not None:
            on_progress(progress)
