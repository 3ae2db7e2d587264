"""One QThread per account that drives the engine's scan generator and runs the user's commands."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QThread, Signal

from spamguard.engine.first_scan import Choice
from spamguard.engine.session import AccountSession, ScanUpdate
from spamguard.errors import (
    AuthError,
    ConfigError,
    CredentialError,
    ModelError,
    OAuthLoginRefused,
    OAuthSignInRequired,
    SpamGuardError,
    TLSError,
)
from spamguard.verdict import Thresholds

log = logging.getLogger(__name__)

# Errors that retrying cannot fix: the user has to act first.
_PERMANENT = (AuthError, TLSError, CredentialError, ConfigError, ModelError)


@dataclass(frozen=True)
class _Command:
    name: str
    args: tuple[Any, ...] = ()


class AccountRunner(QThread):
    """Owns one `AccountSession` (and so one mail connection) for its whole life.

    The session is made inside the thread, every call on it happens there, and results
    reach the GUI as queued signals; the GUI thread never waits on mail or the model.
    """

    updated = Signal(object)  # ScanUpdate
    rowsLoaded = Signal(object)  # list[MessageRow]
    rowChanged = Signal(object)  # MessageRow
    stateChanged = Signal(str, str)  # "scanning"/"idle"/"paused"/"error"/"stopped", detail
    failed = Signal(str, str)  # what the user tried (or "scan"), the engine's message
    signInNeeded = Signal(str)  # an OAuth2 account's tokens are gone or refused; the message
    scanFinished = Signal(int)  # messages scored in that scan
    explained = Signal(object, object)  # row key, Score | None
    rationalePiece = Signal(object, str)  # row key, the next piece of the LLM's text
    rationaleDone = Signal(object)  # row key
    # A message's checked explanation kept from an earlier request (row key, its text).
    rationaleKept = Signal(object, str)
    # The first scan of a new account, as a dry run: what it would do (`first_scan.Review`).
    # Nothing on the server changes until `apply_review` brings the user's choice.
    reviewReady = Signal(object)

    def __init__(
        self,
        name: str,
        session_factory: Callable[[], AccountSession],
        *,
        watch: bool = True,
        poll_interval: float = 60.0,
        review_first: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.setObjectName(f"spamguard-{name}")
        self._factory = session_factory
        self._watch = watch
        self._poll = poll_interval
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._scan_wanted = threading.Event()
        self._scan_wanted.set()  # the first scan starts at once
        self._review_first = review_first  # a never-scanned account's first scan is a review
        self._awaiting_review = False  # a review was shown; nothing acts until a choice
        self._choice: Choice | None = None  # the user's choice, until a scan carried it out

    # -- called from the GUI thread --------------------------------------------------------

    def scan_now(self) -> None:
        self._scan_wanted.set()
        self._commands.put(_Command("wake"))

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()
            self._scan_wanted.set()
        self._commands.put(_Command("wake"))

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def mark(self, key: tuple[str, str, str], label: str) -> None:
        self._commands.put(_Command("mark", (key, label)))

    def undo(self, key: tuple[str, str, str]) -> None:
        self._commands.put(_Command("undo", (key,)))

    def undo_journal(self, ids: list[int]) -> None:
        self._commands.put(_Command("undo_journal", (ids,)))

    def explain(self, key: tuple[str, str, str]) -> None:
        self._commands.put(_Command("explain", (key,)))

    def rationale(self, key: tuple[str, str, str], llm: Any) -> None:
        self._commands.put(_Command("rationale", (key, llm)))

    def kept_rationale(self, key: tuple[str, str, str], llm: Any) -> None:
        """Look up the message's kept explanation in the store (`rationaleKept` if there is
        one); the model is not asked."""
        self._commands.put(_Command("kept_rationale", (key, llm)))

    def set_thresholds(self, thresholds: Thresholds) -> None:
        self._commands.put(_Command("thresholds", (thresholds,)))

    def apply_review(self, choice: Choice) -> None:
        """The user's choice after the first-scan review: the real first scan carries it out."""
        self._commands.put(_Command("apply_review", (choice,)))

    def review_again(self) -> None:
        """Look again before anything moves (the model changed, e.g. after first-sync learning);
        once the first scan was applied this is an ordinary scan."""
        self._commands.put(_Command("review_again"))

    def stop(self) -> None:
        self._stop.set()
        self._commands.put(_Command("wake"))

    # -- the thread ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            session = self._factory()
        except SpamGuardError as exc:
            self.failed.emit("start", str(exc))
            self.stateChanged.emit("error", str(exc))
            return
        try:
            self.rowsLoaded.emit(session.rows())
            self._loop(session)
        finally:
            try:
                session.close()
            except SpamGuardError:
                log.debug("closing %s failed", self.name, exc_info=True)
            self.stateChanged.emit("stopped", "")

    def _loop(self, session: AccountSession) -> None:
        retry_in = 0.0
        while not self._stop.is_set():
            self._drain(session)
            if self._stop.is_set():
                return
            if self._paused.is_set():
                self.stateChanged.emit("paused", "")
                self._wait_command(None)
                continue
            if self._scan_wanted.is_set():
                self._scan_wanted.clear()
                try:
                    if self._review_first and self._choice is None and session.needs_review():
                        self._awaiting_review = self._review(session)
                    if not self._awaiting_review:
                        self._scan(session, self._choice)
                        self._choice = None  # carried out; a failed scan retries with it
                    retry_in = 0.0
                except _PERMANENT as exc:
                    self._report("scan", exc)
                    self._wait_command(None)  # until the user changes something
                    continue
                except SpamGuardError as exc:
                    self._report("scan", exc)
                    retry_in = min(300.0, max(2.0, retry_in * 2))
                    session.close()
                    if self._wait_command(retry_in) is None:
                        self._scan_wanted.set()
                    continue
            if self._paused.is_set() or self._stop.is_set():
                continue
            self.stateChanged.emit("idle", "")
            if self._awaiting_review:  # no watching either: new mail waits for the choice
                self._wait_command(None)
                continue
            if self._watch:
                try:
                    if session.wait_for_mail(self._poll, self._interrupted):
                        self._scan_wanted.set()
                    elif self._commands.empty() and not self._stop.is_set():
                        self._scan_wanted.set()  # poll interval passed: look again
                except SpamGuardError as exc:
                    self._report("wait", exc)
                    session.close()
                    self._wait_command(5.0)
                    self._scan_wanted.set()
            else:
                self._wait_command(None)

    def _interrupted(self) -> bool:
        return self._stop.is_set() or not self._commands.empty() or self._paused.is_set()

    def _wait_command(self, timeout: float | None) -> _Command | None:
        """Sleep until a command arrives (it is put back for `_drain`) or ``timeout``."""
        try:
            command = self._commands.get(timeout=timeout)
        except queue.Empty:
            return None
        self._commands.put(command)
        return command

    def _review(self, session: AccountSession) -> bool:
        """The first scan as a dry run. True when it would change something: the review is
        shown and the runner waits for the user's choice; False: nothing to decide."""
        from spamguard.engine.first_scan import ReviewRecorder

        self.stateChanged.emit("scanning", "")
        recorder = ReviewRecorder(self.name)
        updates = session.review(recorder)
        try:
            for update in updates:
                self._emit_update(update)
                if self._stop.is_set() or self._paused.is_set():
                    return True  # not looked at whole: look again on resume, act on nothing
        finally:
            updates.close()
        review = recorder.review()
        if not review.moves and not review.flags:
            return False
        self.reviewReady.emit(review)
        return True

    def _scan(self, session: AccountSession, choice: Choice | None = None) -> None:
        self.stateChanged.emit("scanning", "")
        scored = 0
        updates = session.scan(choice)
        try:
            for update in updates:
                scored += len(update.rows)
                self._emit_update(update)
                # Between batches: the user's clicks first, then pause or quit if asked.
                self._drain(session)
                if self._stop.is_set() or self._paused.is_set():
                    break
        finally:
            updates.close()
        self.scanFinished.emit(scored)

    def _emit_update(self, update: ScanUpdate) -> None:
        self.updated.emit(update)

    def _drain(self, session: AccountSession) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._run_command(session, command)

    def _run_command(self, session: AccountSession, command: _Command) -> None:
        try:
            if command.name == "mark":
                key, label = command.args
                self.rowChanged.emit(session.mark(key, label))
            elif command.name == "undo":
                row = session.undo(command.args[0])
                if row is not None:
                    self.rowChanged.emit(row)
                else:  # the message is gone: the list is reloaded instead
                    self.rowsLoaded.emit(session.rows())
            elif command.name == "undo_journal":
                session.undo_journal(command.args[0])
                self.rowsLoaded.emit(session.rows())
            elif command.name == "explain":
                key = command.args[0]
                self.explained.emit(key, session.explain(key))
            elif command.name == "kept_rationale":
                key, llm = command.args
                kept = session.kept_rationale(key, llm)
                if kept is not None:
                    self.rationaleKept.emit(key, kept)
            elif command.name == "rationale":
                key, llm = command.args
                try:
                    for piece in session.rationale(key, llm):
                        self.rationalePiece.emit(key, piece)
                        if self._stop.is_set():
                            break
                finally:
                    self.rationaleDone.emit(key)
            elif command.name == "thresholds":
                session.set_thresholds(command.args[0])
            elif command.name == "apply_review":
                self._choice = command.args[0]
                self._awaiting_review = False
                self._scan_wanted.set()
            elif command.name == "review_again":
                self._scan_wanted.set()
        except SpamGuardError as exc:
            self._report(command.name, exc)

    def _report(self, what: str, exc: SpamGuardError) -> None:
        log.info("%s: %s failed: %s", self.name, what, exc)
        self.failed.emit(what, str(exc))
        if isinstance(exc, OAuthSignInRequired | OAuthLoginRefused):
            self.signInNeeded.emit(str(exc))
        if what in ("scan", "wait", "start"):
            self.stateChanged.emit("error", str(exc))
