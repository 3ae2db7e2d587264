"""The per-account workers: backlog scan, IDLE loop, reconnects; they publish `engine.events`.

Longer than 600 lines on purpose: `AccountWorker` is one state machine (connect, scan, IDLE,
reconnect, journalled batches) whose steps share its state; cut across files it would be
harder to follow, not easier.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

from spamguard.config import AccountSettings, describe_backlog
from spamguard.engine.events import (
    PHASES,
    ActionApplied,
    ConnectionState,
    Error,
    Event,
    EventBus,
    MessageScored,
    Progress,
    Subscriber,
)
from spamguard.errors import (
    AuthError,
    ConfigError,
    ConnectionLostError,
    CredentialError,
    FolderMissingError,
    MailStoreError,
    NotMailError,
    StateError,
    TLSError,
)
from spamguard.learn.labels import record_label
from spamguard.mail.base import DELETED, FetchedMessage, MailStore
from spamguard.mail.connect import open_mailstore
from spamguard.mail.executor import Executor
from spamguard.mail.folders import find_junk_folder, find_sent_folder
from spamguard.message import Message, learn_authserv_id, parse_message
from spamguard.metrics import cpu_count
from spamguard.policy import Plan, PolicyContext, plan_for, sender_authenticated
from spamguard.scoring.base import Score, Scorer, StagedScorer
from spamguard.store import FolderState, ScoredMessage, Store

if TYPE_CHECKING:
    from spamguard.engine.first_scan import PlanHook
    from spamguard.learn.loop import Learner

__all__ = [
    "AccountWorker",
    "Service",
    "policy_context",
]

log = logging.getLogger(__name__)

# -- what the account knows about a message's sender ------------------------------------------

#: A sender's earlier message counts as kept once it has sat this long without the user
#: moving it to Junk (a message scored minutes ago has not been judged by anyone yet).
KEPT_AFTER = 24 * 3600.0
#: Inbox messages read (newest first, headers only) to learn the receiving server's
#: authserv-id each time the account connects.
AUTHSERV_SAMPLE = 50
AUTHSERV_RECHECK = 24 * 3600.0


def policy_context(
    store: Store,
    account: str,
    msg: Message,
    *,
    folder: str = "INBOX",
    junk_available: bool = True,
    now: float | None = None,
) -> PolicyContext:
    """What the account's history says about ``msg``: rescued, a known correspondent, or an
    authenticated sender whose earlier mail the user kept. ``msg.auth`` must have been read
    under the account's authserv-id (`with_authserv_id`)."""
    now = time.time() if now is None else now
    sender = msg.from_addr
    return PolicyContext(
        folder=folder,
        rescued=store.is_rescued(account, msg.message_id, msg.content_hash),
        known_correspondent=bool(sender) and store.is_correspondent(account, sender),
        kept_sender=sender_authenticated(msg)
        and store.kept_count(account, sender, now - KEPT_AFTER) > 0,
        junk_available=junk_available,
    )


# -- the worker ---------------------------------------------------------------------------------

_PERMANENT = (AuthError, TLSError, CredentialError, ConfigError)


#: Watched folders beyond the first that get a connection of their own to IDLE on. Servers
#: limit connections per user (Dovecot 10, Gmail 15); further folders are polled.
MAX_EXTRA_IDLE = 4


class _FolderWatcher(threading.Thread):
    """IDLEs on one more watched folder over a connection it owns; sets ``wake`` on news.

    An IMAP connection can IDLE on one folder only. The account's worker IDLEs on its first
    watched folder; each further one (up to `MAX_EXTRA_IDLE`) gets a watcher, which never
    does anything but wait. The worker still looks at every folder each poll interval, so a
    watcher that cannot connect costs latency, not mail: its errors are logged, not shown,
    and it retries with backoff. A refused login or a missing folder ends it.
    """

    def __init__(
        self,
        settings: AccountSettings,
        folder: str,
        wake: threading.Event,
        make_mail: Callable[[AccountSettings], MailStore],
    ) -> None:
        super().__init__(name=f"spamguard-{settings.name}-idle-{folder}", daemon=True)
        self.settings, self.folder, self.wake = settings, folder, wake
        self._make_mail = make_mail
        self.stop_event = threading.Event()

    def run(self) -> None:
        mail: MailStore | None = None
        backoff = _Backoff()
        try:
            while not self.stop_event.is_set():
                try:
                    on_ready = None
                    if mail is None:
                        mail = self._make_mail(self.settings)
                        mail.connect()
                        # Mail that came between the worker's last look and this IDLE would
                        # wake nobody: once IDLE is up, have the worker look once more.
                        on_ready = self.wake.set
                    stop = self.stop_event.is_set
                    if mail.wait(self.folder, self.settings.idle_timeout, stop, on_ready):
                        self.wake.set()
                    backoff.reset()
                except (FolderMissingError, *_PERMANENT) as exc:
                    log.info("not watching %s of %s: %s", self.folder, self.settings.name, exc)
                    return
                except (MailStoreError, OSError) as exc:
                    log.info("watching %s of %s: %s", self.folder, self.settings.name, exc)
                    if mail is not None:
                        mail.close()
                        mail = None
                    self.stop_event.wait(backoff.next())
        finally:
            if mail is not None:
                mail.close()

    def stop(self) -> None:
        self.stop_event.set()


class _Backoff:
    """Exponential backoff with full jitter: 1 s, 2 s, 4 s ... capped, never in lock-step."""

    def __init__(self, base: float = 1.0, cap: float = 300.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class _Begun:
    """A batch between `AccountWorker._begin_batch` and `_finish_batch`: each fetched message
    with what it parsed to (None: empty or not mail), where the ones being scored are in
    the scores, and the function that finishes their scoring."""

    parsed: list[tuple[FetchedMessage, Message | None]]
    fresh: dict[int, int]
    scores: Callable[[], list[tuple[Score, bool]]]


class _ShortSwitchInterval:
    """The GIL's switch interval at 0.5 ms while any pipelined sync runs, put back when the
    last one ends (accounts sync in threads of their own, so entries overlap).

    The encoder's thread needs the GIL back after each Session.run, and the parsing thread
    holds it for up to the switch interval (5 ms) before it lets go: at 0.5 ms the
    20,000-message first sync took 131-136 s instead of 142-145 s on a quiet machine
    (benchmarks/results/issue20-first-sync-20000.txt)."""

    def __init__(self, seconds: float = 0.0005) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, self.seconds))
            self._users += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._saved)


short_switch_interval = _ShortSwitchInterval()


class AccountWorker:
    """Owns one account's `MailStore` connection; everything for that account runs here."""

    def __init__(
        self,
        settings: AccountSettings,
        *,
        scorer: Scorer,
        store: Store,
        mail: MailStore | None = None,
        events: EventBus | None = None,
        dry_run: bool = False,
        scorer_lock: threading.Lock | None = None,
        backoff: Callable[[], _Backoff] = _Backoff,
        learner: Learner | None = None,
        mail_factory: Callable[[AccountSettings], MailStore] = open_mailstore,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.store = store
        self.mail = mail if mail is not None else mail_factory(settings)
        self._mail_factory = mail_factory  # for the connections that IDLE on further folders
        self._watchers: dict[str, _FolderWatcher] = {}
        self._wake = threading.Event()
        self.events = events if events is not None else EventBus()
        self.dry_run = dry_run
        self._scorer_lock = scorer_lock or threading.Lock()
        self._backoff = backoff()
        self.junk_folder: str | None = None
        self.executor: Executor | None = None
        self._missing: set[str] = set()
        self.stop_event = threading.Event()
        # Labels from other clients' moves and keywords, retraining, shadow (learning.py).
        self.learner = learner
        self._authserv_id: str | None = None  # read from the store on first use
        # Sees every plan before it is carried out (`first_scan`: the review records them,
        # the user's choice after it adjusts them); None: plans as the policy made them.
        self.plan_hook: PlanHook | None = None
        # Wall and process CPU seconds per phase of `process_batch` (bench --imap).
        self.timings: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.cpu_timings: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._cpu_mark = 0.0

    @property
    def name(self) -> str:
        return self.settings.name

    def _emit(self, event: Event) -> None:
        self.events.publish(event)

    # -- connecting ------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, settle the journal, find Junk, learn correspondents from Sent."""
        self._emit(ConnectionState(self.name, "connecting", self.settings.host))
        self.mail.connect()
        try:
            # A dry run (the first-scan review) plans the moves but creates no folder.
            self.junk_folder = find_junk_folder(self.mail, self.settings, create=not self.dry_run)
        except FolderMissingError as exc:
            self.junk_folder = None
            self._emit(Error(self.name, str(exc), type(exc).__name__))
        self.executor = Executor(self.mail, self.store, self.settings, junk_folder=self.junk_folder)
        if not self.dry_run:
            for entry in self.executor.reconcile():
                if entry.detail.get("rescued") and entry.action == "move_junk":
                    self._record_rescue(entry.src, entry.message_id, entry.content_hash)
                self._emit(
                    ActionApplied(
                        self.name,
                        entry.id,
                        entry.action,
                        entry.src,
                        entry.dst,
                        entry.message_id,
                        entry.subject,
                        "finished after an interruption",
                        entry.state,
                        entry.error or "",
                    )
                )
        self._learn_correspondents()
        self._learn_authserv_id()
        self._missing.clear()
        self._emit(ConnectionState(self.name, "connected", self.settings.host))

    def _learn_correspondents(self) -> None:
        """Addresses the user wrote to (To/Cc in Sent) are never moved to Junk."""
        sent = find_sent_folder(self.mail, self.settings)
        if sent is None:
            return
        try:
            status = self.mail.select(sent)
        except FolderMissingError:
            return
        state = self.store.folder_state(self.name, sent)
        start = state.uidnext if state and state.uidvalidity == status.uidvalidity else 1
        uids = self.mail.uids(sent, min_uid=start)[-2000:]
        addresses: set[str] = set()
        for i in range(0, len(uids), 200):
            # Headers are all we need, and they come first: 16 KB covers them.
            for fetched in self.mail.fetch(sent, uids[i : i + 200], 16 * 1024):
                try:
                    msg = parse_message(fetched.raw)
                except NotMailError:
                    continue
                addresses.update(a.lower() for a in msg.to)
        self.store.add_correspondents(self.name, addresses)
        if not self.dry_run:
            self.store.save_folder_state(
                FolderState(
                    self.name,
                    sent,
                    status.uidvalidity,
                    max([start, *(u + 1 for u in uids)]),
                    status.highestmodseq,
                    time.time(),
                )
            )

    def _learn_authserv_id(self) -> None:
        """Which receiving server's Authentication-Results to trust: the authserv-id topmost
        on most of the newest Inbox messages. Kept in the store; an Inbox that says nothing
        (empty, or a server that writes no A-R) leaves what was learnt before. Looked at
        once every `AUTHSERV_RECHECK` seconds, not on every reconnect."""
        checked = self.store.account_fact(self.name, "authserv_checked_at")
        if checked and time.time() - float(checked) < AUTHSERV_RECHECK:
            return
        try:
            status = self.mail.select("INBOX")
        except FolderMissingError:
            return
        if not status.exists:
            return
        uids = self.mail.uids("INBOX")[-AUTHSERV_SAMPLE:]
        messages: list[Message] = []
        # The receiving server's headers are the first ones: 8 KB holds them.
        for fetched in self.mail.fetch("INBOX", uids, 8 * 1024):
            try:
                messages.append(parse_message(fetched.raw))
            except NotMailError:
                continue
        learnt = learn_authserv_id(messages)
        if not self.dry_run and (learnt or len(uids) >= AUTHSERV_SAMPLE):
            # A small Inbox that says nothing yet is asked again on the next connect.
            self.store.save_account_fact(self.name, "authserv_checked_at", str(time.time()))
        if learnt and learnt != self.authserv_id:
            log.info("%s: trusting Authentication-Results from %s", self.name, learnt)
            if not self.dry_run:
                self.store.save_authserv_id(self.name, learnt)
            self._authserv_id = learnt

    @property
    def authserv_id(self) -> str | None:
        """The authserv-id whose Authentication-Results this account trusts (None: none)."""
        if self._authserv_id is None:
            self._authserv_id = self.store.authserv_id(self.name) or ""
        return self._authserv_id or None

    def close(self) -> None:
        self._stop_watchers()
        self.mail.close()

    # -- waiting for mail ------------------------------------------------------------------------

    def wait_for_mail(self, timeout: float, should_stop: Callable[[], bool]) -> bool:
        """Block until a watched folder may have new mail (True), ``timeout`` passes or
        ``should_stop()`` turns true (False). IDLE on the first watched folder over this
        connection and on up to `MAX_EXTRA_IDLE` more over connections of their own."""
        watched = self.watched()
        if not watched:
            return False
        self._start_watchers(watched[1:])
        try:
            changed = self.mail.wait(
                watched[0], timeout, lambda: should_stop() or self._wake.is_set()
            )
        except FolderMissingError:
            self._missing.add(watched[0])
            return False
        if self._wake.is_set():
            self._wake.clear()
            return True
        return changed

    def _start_watchers(self, folders: Sequence[str]) -> None:
        if "IDLE" not in self.mail.capabilities:
            return  # a server without IDLE: the wait polls, more connections would not help
        for folder in folders[:MAX_EXTRA_IDLE]:
            if folder not in self._watchers:  # an ended watcher stays ended until reconnect
                watcher = _FolderWatcher(self.settings, folder, self._wake, self._mail_factory)
                self._watchers[folder] = watcher
                watcher.start()

    def _stop_watchers(self) -> None:
        watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            watcher.stop()
        for watcher in watchers:
            watcher.join(5.0)  # each checks its stop flag at least once a second
        self._wake.clear()

    # -- syncing ---------------------------------------------------------------------------------

    def watched(self) -> list[str]:
        return [f for f in self.settings.watch_folders if f not in self._missing]

    def sync(self) -> Iterator[Progress]:
        """Catch up every watched folder; yields progress. Closing the generator cancels
        between batches (each batch is finished first, so the journal stays settled)."""
        learning = self.learner is not None and not self.dry_run
        if learning:
            # Before the folders: a message taken out of Junk is marked rescued first.
            assert self.learner is not None
            self.learner.before_sync(self)
        for folder in self.watched():
            try:
                yield from self.sync_folder(folder)
            except FolderMissingError as exc:
                self._missing.add(folder)
                self._emit(
                    Error(
                        self.name,
                        f"watched folder {folder!r} is gone (renamed or "
                        f"deleted by another client); not watching it until it is back",
                        type(exc).__name__,
                    )
                )
        if learning:
            assert self.learner is not None
            self.learner.after_sync(self)
        if (
            not self.dry_run
            and self.store.starts_from_new_mail(self.name)
            and all(self.store.folder_state(self.name, f) for f in self.settings.watch_folders)
        ):
            self.store.started_from_new_mail(self.name)

    def sync_folder(self, folder: str) -> Iterator[Progress]:
        s = self.settings
        status = self.mail.select(folder)
        state = self.store.folder_state(self.name, folder)
        phase: Literal["backlog", "new mail", "resync"] = "new mail"
        if state is None and self.store.starts_from_new_mail(self.name):
            # The state file was reset after it was lost: mail already here may be mail the
            # user rescued, and that record is gone. Leave it as it is; act on what comes next.
            state = FolderState(
                self.name, folder, status.uidvalidity, status.uidnext, status.highestmodseq
            )
            if not self.dry_run:
                self.store.save_folder_state(state)
            uids = []
            phase = "backlog"
        elif state is None or state.uidvalidity != status.uidvalidity:
            # First run, or the server renumbered the folder (UIDVALIDITY changed): scan the
            # backlog window; messages already handled are recognised by Message-ID + hash.
            phase = "backlog" if state is None else "resync"
            since = date.today() - timedelta(days=s.backlog_days) if s.backlog_days else None
            uids = self.mail.uids(folder, since=since)
            if s.backlog_messages:  # 0 is no limit, as for backlog_days
                uids = uids[-s.backlog_messages :]
            start = uids[0] if uids else status.uidnext
            if state is not None:
                self._emit(
                    Error(
                        self.name,
                        f"{folder!r} was renumbered by the server "
                        "(UIDVALIDITY changed); re-checking it without acting twice",
                        "UidValidityChanged",
                    )
                )
            state = FolderState(
                self.name, folder, status.uidvalidity, start, status.highestmodseq, time.time()
            )
            if not self.dry_run:
                self.store.save_folder_state(state)
        else:
            uids = self.mail.uids(folder, min_uid=state.uidnext)
        total = len(uids)
        done = 0
        scope = describe_backlog(s.backlog_messages, s.backlog_days) if phase != "new mail" else ""
        if total:
            yield Progress(self.name, folder, 0, total, phase, scope)
        batches = [uids[i : i + s.batch_size] for i in range(0, total, s.batch_size)]
        for batch in self._pipeline(folder, status.uidvalidity, batches):
            done += len(batch)
            state = FolderState(
                self.name,
                folder,
                status.uidvalidity,
                max(state.uidnext, batch[-1] + 1),
                status.highestmodseq,
                time.time(),
            )
            if not self.dry_run:
                self.store.save_folder_state(state)
            yield Progress(self.name, folder, done, total, phase, scope)

    def process_batch(self, folder: str, uidvalidity: int, uids: Sequence[int]) -> None:
        """Fetch, parse, score, plan and act on one batch, start to end."""
        started, self._cpu_mark = time.perf_counter(), time.process_time()
        fetched = self.mail.fetch(folder, uids, self.settings.max_fetch_bytes)
        self._tick("fetch", started)
        self._finish_batch(folder, uidvalidity, self._begin_batch(folder, fetched))

    def _pipeline(
        self, folder: str, uidvalidity: int, batches: Sequence[Sequence[int]]
    ) -> Iterator[Sequence[int]]:
        """Process ``batches`` in order, yielding each once it is finished (scored, planned,
        acted on and journalled), as `process_batch` would one after another.

        They overlap, so a first sync keeps both cores busy: while batch i waits for the
        sentence encoder (a thread of its own; onnxruntime leaves the GIL), batch i+1 is
        fetched (another thread: the connection's only user meanwhile) and parsed and scored
        by stage 0 here. Scores and actions are those of `process_batch`: each message's
        score depends on it alone, and whatever a batch decides from the state (handled
        already, a cached score) is decided again once the batches before it are done.
        Closing the generator waits for the work in flight and drops the batch begun last:
        nothing of it was recorded, so the next sync does it again."""
        if len(batches) < 2:
            for uids in batches:
                self.process_batch(folder, uidvalidity, uids)
                yield uids
            return
        for stage in getattr(self.scorer, "stages", ()):
            # The encoder runs beside this thread, which is busy too: it leaves it a core
            # (on 2 cores, 1 thread: ~7% less encoder CPU than 2 competing with the parsing).
            # Chosen only if nobody did and the encoder is not loaded yet (it is fixed then).
            if getattr(stage, "encoder_threads", False) is None:
                stage.encoder_threads = max(1, cpu_count() - 1)
        fetcher = ThreadPoolExecutor(1, thread_name_prefix=f"spamguard-{self.name}-fetch")
        encoder = ThreadPoolExecutor(1, thread_name_prefix=f"spamguard-{self.name}-encode")
        cap = self.settings.max_fetch_bytes
        fetching: Future[list[FetchedMessage]] | None = None
        short_switch_interval.__enter__()
        try:
            fetching = fetcher.submit(self.mail.fetch, folder, batches[0], cap)
            previous: tuple[Sequence[int], _Begun] | None = None
            for i, uids in enumerate(batches):
                started, self._cpu_mark = time.perf_counter(), time.process_time()
                assert fetching is not None
                fetched = fetching.result()
                fetching = None
                if i + 1 < len(batches):
                    fetching = fetcher.submit(self.mail.fetch, folder, batches[i + 1], cap)
                self._tick("fetch", started)
                begun = self._begin_batch(folder, fetched, encoder)
                if previous is not None:
                    if fetching is not None:
                        fetching.result()  # finishing may use the connection (moves, rescues)
                    self._finish_batch(folder, uidvalidity, previous[1])
                    yield previous[0]
                previous = (uids, begun)
            if previous is not None:
                self._finish_batch(folder, uidvalidity, previous[1])
                yield previous[0]
        finally:
            # The connection must be idle before anyone uses or closes it again.
            fetcher.shutdown(wait=True, cancel_futures=True)
            encoder.shutdown(wait=True, cancel_futures=True)
            short_switch_interval.__exit__(None, None, None)

    def _tick(self, phase: str, since: float) -> float:
        now, cpu = time.perf_counter(), time.process_time()
        self.timings[phase] += now - since
        self.cpu_timings[phase] += cpu - self._cpu_mark
        self._cpu_mark = cpu
        return now

    def _begin_batch(
        self,
        folder: str,
        fetched: Sequence[FetchedMessage],
        background: concurrent.futures.Executor | None = None,
    ) -> _Begun:
        """Parse a fetched batch and start scoring what is not handled yet (`_finish_batch`
        does the rest). With ``background``, later cascade stages' encoder work runs there."""
        started, self._cpu_mark = time.perf_counter(), time.process_time()
        parsed: list[tuple[FetchedMessage, Message | None]] = []
        for item in fetched:
            if not item.raw:
                parsed.append((item, None))
                continue
            try:
                parsed.append((item, parse_message(item.raw, authserv_id=self.authserv_id)))
            except NotMailError:
                parsed.append((item, None))
        fresh = [
            i
            for i, (_, msg) in enumerate(parsed)
            if msg is not None
            and not self.store.is_handled(self.name, msg.message_id, msg.content_hash)
        ]
        started = self._tick("parse", started)
        scores = self._begin_scores([m for i in fresh if (m := parsed[i][1])], background)
        self._tick("score", started)
        return _Begun(parsed, dict(zip(fresh, range(len(fresh)), strict=True)), scores)

    def _finish_batch(self, folder: str, uidvalidity: int, begun: _Begun) -> None:
        started, self._cpu_mark = time.perf_counter(), time.process_time()
        todo: list[tuple[FetchedMessage, Message]] = []
        scored: list[int | None] = []  # where each of todo's scores is in begun's
        for k, (item, msg) in enumerate(begun.parsed):
            if not item.raw:
                # Expunged by another client between SEARCH and FETCH: gone, not "not mail".
                log.info("message %d in %r was deleted meanwhile; skipped", item.uid, folder)
                continue
            if msg is None:
                self._emit(
                    Error(
                        self.name,
                        f"message {item.uid} in {folder!r} is not mail; left alone",
                        "NotMailError",
                    )
                )
                continue
            if self.store.is_handled(self.name, msg.message_id, msg.content_hash):
                # A \Deleted copy is on its way out, not back: the original a COPY-fallback
                # move left behind when it was killed before UID EXPUNGE. Reading it as a
                # rescue would pin the spam in place and, after two, allow-list its sender.
                if DELETED in item.flags:
                    continue
                if not self._note_rescue(folder, msg, item.raw):
                    continue
                # A second copy of mail we moved, whose first copy is still in Junk (a
                # restore, a Sieve `fileinto :copy`): new mail like any other, not a rescue.
            todo.append((item, msg))
            scored.append(begun.fresh.get(k))
        started = self._tick("parse", started)
        if not todo:
            return
        ready = begun.scores()
        # Handled when the batch began (a rescue's second copy): scored now, as ever.
        late = [i for i, j in enumerate(scored) if j is None]
        now = dict(zip(late, self._scores([todo[i][1] for i in late]), strict=True))
        scores = [ready[j] if j is not None else now[i] for i, j in enumerate(scored)]
        started = self._tick("score", started)
        if self.learner is not None and not self.dry_run:
            self.learner.observe(self, [m for _, m in todo])
            started = self._tick("learn", started)
        pending: list[tuple[ScoredMessage, Plan, frozenset[str]]] = []
        for (item, msg), (score, cached) in zip(todo, scores, strict=True):
            context = policy_context(
                self.store,
                self.name,
                msg,
                folder=folder,
                junk_available=self.junk_folder is not None,
            )
            plan = plan_for(msg, score, self.settings, context)
            if self.plan_hook is not None:
                plan = self.plan_hook(folder, item.uid, msg, plan)
            self._emit(
                MessageScored(
                    self.name,
                    folder,
                    item.uid,
                    msg.message_id,
                    msg.subject,
                    msg.from_addr,
                    score.p_spam,
                    plan.verdict,
                    score.stage,
                    score.model_version,
                    plan.describe(),
                    cached,
                    self.dry_run,
                    planned=sum(a.kind != "leave" for a in plan.actions),
                )
            )
            if not self.dry_run:
                pending.append(
                    (self._scored(folder, uidvalidity, item, msg, score, plan), plan, item.flags)
                )
        started = self._tick("plan", started)
        if pending:
            self._apply(pending)
            self._tick("actions", started)

    def _scored(
        self,
        folder: str,
        uidvalidity: int,
        item: FetchedMessage,
        msg: Message,
        score: Score,
        plan: Plan,
    ) -> ScoredMessage:
        return ScoredMessage(
            account=self.name,
            folder=folder,
            uidvalidity=uidvalidity,
            uid=item.uid,
            message_id=msg.message_id,
            content_hash=msg.content_hash,
            p_spam=score.p_spam,
            verdict=plan.verdict,
            stage=score.stage,
            model_version=score.model_version,
            evidence=score.evidence,
            subject=msg.subject,
            from_addr=msg.from_addr,
            date=msg.date,
            plan=plan.describe(),
            scored_at=time.time(),
            protected=plan.protected,
        )

    def _apply(self, pending: Sequence[tuple[ScoredMessage, Plan, frozenset[str]]]) -> None:
        """Journal and send a batch's actions: one server command per folder and action."""
        assert self.executor is not None
        for scored, result in self.executor.apply_batch(pending):
            self._emit(
                ActionApplied(
                    self.name,
                    result.journal_id,
                    result.action,
                    result.src,
                    result.dst,
                    scored.message_id,
                    scored.subject,
                    result.reason,
                    result.state,
                    result.error,
                )
            )

    def _note_rescue(self, folder: str, msg: Message, raw: bytes | None = None) -> bool:
        """A handled message seen again in a watched folder. If we moved it to Junk and a
        copy we put there is gone, the user rescued it: remember that (and the label) so it
        is never moved again. True when instead every copy we moved is still in Junk: this
        one is a second delivery of the same bytes (a restore, a Sieve `fileinto :copy`).
        """
        if self.dry_run or self.store.is_rescued(self.name, msg.message_id, msg.content_hash):
            return False
        moves = [
            e
            for e in self.store.journal(
                account=self.name,
                states=["applied"],
                actions=["move_junk"],
                message=(msg.message_id, msg.content_hash),
            )
            if e.dst is not None and e.dst != folder
        ]
        if not moves:
            return False
        junk = moves[0].dst
        assert junk is not None and self.executor is not None
        ours = [e for e in moves if e.dst == junk]
        found = {
            t.uid for t in self.executor.locate(junk, msg.message_id, msg.content_hash, msg.subject)
        }
        uidvalidity = self.mail.select(junk).uidvalidity
        if all(e.dst_uid is not None and e.dst_uidvalidity == uidvalidity for e in ours):
            all_there = all(e.dst_uid in found for e in ours)
        else:  # the server gave no COPYUID for some: count the copies instead
            all_there = len(found) >= len(ours)
        if all_there:
            return True
        self._record_rescue(folder, msg.message_id, msg.content_hash, msg, raw)
        return False

    def _record_rescue(
        self,
        folder: str,
        message_id: str,
        content_hash: str,
        msg: Message | None = None,
        raw: bytes | None = None,
    ) -> None:

        record_label(
            self.store,
            self.name,
            message_id,
            content_hash,
            "ham",
            f"moved out of Junk to {folder}",
            message=msg,
            raw=raw,
            folder=folder,
            rescued=True,
        )

    def _scores(self, messages: Sequence[Message]) -> list[tuple[Score, bool]]:
        """Scores from the cache (content hash + model version), the rest from the scorer."""
        return self._begin_scores(messages)()

    def _begin_scores(
        self, messages: Sequence[Message], background: concurrent.futures.Executor | None = None
    ) -> Callable[[], list[tuple[Score, bool]]]:
        """`_scores` in two halves: what is not cached is begun now (a `StagedScorer`'s first
        stage, its encoder work in ``background``) and finished when the returned function
        is called; that looks in the cache again first, for bytes an earlier batch scored
        in between, so a pipelined batch takes a cached score wherever a serial one would."""
        version = self.scorer.version
        # A score depends on which Authentication-Results were trusted, not only the bytes.
        context = f"authserv-id={self.authserv_id}" if self.authserv_id else ""
        cached = [self.store.cached_score(m.content_hash, version, context) for m in messages]
        missing = [i for i, c in enumerate(cached) if c is None]
        batch = [messages[i] for i in missing]
        finish: Callable[[], list[Score]] = list
        if batch:
            with self._scorer_lock:
                if isinstance(self.scorer, StagedScorer):
                    finish = self.scorer.begin(batch, background)
                else:
                    done = self.scorer.score(batch)
                    finish = done.copy

        def scores() -> list[tuple[Score, bool]]:
            out = [(c, True) if c else None for c in cached]
            if not batch:
                return [o for o in out if o is not None]
            with self._scorer_lock:
                fresh = finish()
            if len(fresh) != len(missing):
                raise MailStoreError(
                    f"the scorer returned {len(fresh)} scores for {len(missing)} messages"
                )
            new: list[tuple[str, Score]] = []
            for i, score in zip(missing, fresh, strict=True):
                h = messages[i].content_hash
                again = self.store.cached_score(h, version, context)
                out[i] = (again, True) if again else (score, False)
                if again is None:
                    new.append((h, score))
            self.store.cache_scores(new, context)
            return [o for o in out if o is not None]

        return scores

    # -- running ---------------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Connect, catch up every watched folder, disconnect. False on any error."""
        try:
            self.open()
            for progress in self.sync():
                self._emit(progress)
                if self.stop_event.is_set():
                    break
            return True
        except (MailStoreError, ConfigError, StateError) as exc:
            self._emit(Error(self.name, str(exc), type(exc).__name__, fatal=True))
            return False
        finally:
            self.close()
            self._emit(ConnectionState(self.name, "stopped"))

    def run(self) -> None:
        """Until `stop()`: sync, then wait (IDLE or polling) and sync again; reconnect with
        backoff on dropped connections; stop for good on refused credentials or TLS."""
        while not self.stop_event.is_set():
            try:
                self.open()
                self._backoff.reset()
                self._loop()
            except (*_PERMANENT, StateError) as exc:
                # Retrying a refused password only locks the account: tell the user once.
                # A state file that cannot be written (disk full, damaged) stops it too: acting
                # on mail without a journal could lose track of it.
                self._emit(Error(self.name, str(exc), type(exc).__name__, fatal=True))
                self._emit(ConnectionState(self.name, "failed", str(exc)))
                self.close()
                return
            except (ConnectionLostError, OSError) as exc:
                self.close()
                delay = self._backoff.next()
                self._emit(
                    ConnectionState(self.name, "reconnecting", f"{exc}; retrying in {delay:.0f} s")
                )
                self.stop_event.wait(delay)
            except MailStoreError as exc:
                self.close()
                delay = self._backoff.next()
                self._emit(Error(self.name, str(exc), type(exc).__name__))
                self._emit(ConnectionState(self.name, "reconnecting", f"retrying in {delay:.0f} s"))
                self.stop_event.wait(delay)
        self.close()
        self._emit(ConnectionState(self.name, "stopped"))

    def _loop(self) -> None:
        s = self.settings
        while not self.stop_event.is_set():
            for progress in self.sync():
                self._emit(progress)
                if self.stop_event.is_set():
                    return
            watched = self.watched()
            if not watched:
                self.stop_event.wait(s.poll_interval)
                self._missing.clear()
                continue
            # Folders past MAX_EXTRA_IDLE + 1 (and any whose watcher failed) are caught up
            # at least every poll interval.
            timeout = s.idle_timeout if len(watched) == 1 else min(s.idle_timeout, s.poll_interval)
            idle = "IDLE" in self.mail.capabilities
            self._emit(ConnectionState(self.name, "idle" if idle else "polling", watched[0]))
            self.wait_for_mail(timeout, self.stop_event.is_set)

    def stop(self) -> None:
        self.stop_event.set()


class Service:
    """All accounts: one worker thread (and connection) each. Scorer and store are injected."""

    def __init__(
        self,
        accounts: Sequence[AccountSettings],
        *,
        scorer: Scorer,
        store: Store,
        mail_factory: Callable[[AccountSettings], MailStore] = open_mailstore,
        dry_run: bool = False,
        learner: Learner | None = None,
    ) -> None:
        self.events = EventBus()
        self._scorer_lock = threading.Lock()  # one model, shared: one caller at a time
        self.workers = [
            AccountWorker(
                a,
                scorer=scorer,
                store=store,
                mail=mail_factory(a),
                mail_factory=mail_factory,
                events=self.events,
                dry_run=dry_run,
                scorer_lock=self._scorer_lock,
                learner=learner,
            )
            for a in accounts
        ]
        self._threads: list[threading.Thread] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self.events.subscribe(callback)

    def run_once(self) -> bool:
        """Every account once, one after another; True when all succeeded."""
        ok = True
        for worker in self.workers:
            ok = worker.run_once() and ok
        return ok

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(
                target=worker.run, name=f"spamguard-{worker.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
