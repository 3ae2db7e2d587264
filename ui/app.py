"""`spamguard-tray`: wires the engine's account sessions to the window, the tray and settings."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, QThread, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

from spamguard.config import (
    AccountSettings,
    LLMConfig,
    default_config_path,
    load_config,
    parse_config,
)
from spamguard.config.edit import save_account_thresholds
from spamguard.engine.events import ActionApplied
from spamguard.engine.first_scan import Review
from spamguard.engine.runtime import Runtime
from spamguard.engine.session import (
    DEMO_ACCOUNT,
    AccountSession,
    MessageRow,
    ScanUpdate,
    demo_settings,
    prepare_demo_mailbox,
)
from spamguard.errors import SpamGuardError
from spamguard.store import Store
from spamguard.verdict import Thresholds

from .main_window import MainWindow
from .messages import ROW_ROLE
from .models_page import ModelsPage
from .runner import AccountRunner
from .tray import Tray

log = logging.getLogger(__name__)

QUIT_TIMEOUT_MS = 2000
_WARM_UP = b"From: a@example.org\r\nSubject: warm-up\r\n\r\nHello, see you at noon.\r\n"
# Most urgent first: the tray shows the most urgent state of any account.
_STATE_ORDER = ("error", "scanning", "paused", "attention", "idle")


class _Unlocker(QThread):
    """Opens the encrypted password file with a passphrase; ``done`` carries the error text,
    or "" when it is open."""

    done = Signal(str)

    def __init__(self, passphrase: str) -> None:
        super().__init__()
        self.setObjectName("spamguard-unlock")
        self._passphrase = passphrase

    def run(self) -> None:
        from spamguard.mail.credentials import unlock_file_store

        try:
            unlock_file_store(self._passphrase)
        except SpamGuardError as exc:
            self.done.emit(str(exc))
            return
        finally:
            self._passphrase = ""
        self.done.emit("")


class SpamGuardApp(QObject):
    """The controller: one `AccountRunner` per account, one window, one tray icon."""

    scansFinished = Signal()  # every account finished its first scan
    # One account finished a scan (name, messages scored). Emitted in the GUI thread: wait on
    # this, not on `AccountRunner.scanFinished`, whose emits cross threads (see test_tray).
    scanDone = Signal(str, int)
    quitting = Signal()
    # A learning event (a label found, a version retrained, promoted or rejected), emitted
    # from the learner's thread; `modelChanged` follows in the GUI thread for new versions.
    learned = Signal(object)
    modelChanged = Signal(str)  # the version retrained, promoted or rejected

    def __init__(
        self,
        *,
        demo: bool,
        config_path: Path | None = None,
        model_dir: Path | None = None,
        settings: QSettings | None = None,
        workdir: Path | None = None,
        use_tray: bool = True,
        learn_options: Any = None,
        review_first_scan: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings or QSettings()
        self.config_path = config_path or default_config_path()
        self.model_dir = model_dir
        self.demo = demo
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.runners: dict[str, AccountRunner] = {}
        self.states: dict[str, str] = {}
        self.accounts: dict[str, AccountSettings] = {}
        self.sign_in_dialog: Any = None  # the last "Sign in again" dialog (tests drive it)
        self.unlock_dialog: Any = None  # the passphrase dialog of the encrypted file (tests too)
        self.unlocker: _Unlocker | None = None  # checks that passphrase off the GUI thread
        self.remove_dialog: Any = None  # the last "Remove account?" question (tests answer it)
        self.edit_dialog: Any = None  # the last account dialog opened to edit
        # Accounts whose password is in the locked encrypted file: started once it is unlocked.
        self._locked: dict[str, tuple[AccountSettings, object]] = {}
        self.first_sync_dialog: Any = None  # learning from an added account's existing mail
        # A new account's first scan is a review first (`first_scan`): nothing moves until
        # the user chooses in `review_dialog` (the demo mailbox acts at once: it is a copy).
        self.review_first_scan = review_first_scan
        self.reviews: dict[str, Review] = {}  # accounts whose review waits for a choice
        self._chosen: set[str] = set()  # a choice was sent; a review still on its way is stale
        self.review_dialog: Any = None  # the last first-scan review opened
        self._first_scan_pending: set[str] = set()
        self._scan_started: dict[str, float] = {}
        self._scored = 0
        self._scan_seconds = 0.0
        self._attention = False
        self._quitting = False
        self._in_flight: set[tuple[str, str, str]] = set()  # marks and undos not yet answered
        self._trouble: dict[str, str] = {}  # account -> the scan failure its banner shows
        self._scorer_lock = threading.Lock()
        self._scorer_load_lock = threading.Lock()
        self._loaded_scorer: object | None = None
        self._llm = LLMConfig()  # [llm] of the config (the demo uses the defaults)
        # The user's accounts run on `runtime` (store, model registry, scorer, learner); the
        # demo mailbox on a runtime of its own that never learns (its labels are examples).
        self.runtime: Runtime | None = None
        self._demo_runtime: Runtime | None = None
        self._learn_options = learn_options
        self.store: Store | None = None
        self._demo_store: Store | None = None

        self.models_page = ModelsPage(model_dir)
        self.window = MainWindow(self.settings, self.models_page)
        from ui.thunderbird_panel import ThunderbirdPanel

        self.thunderbird_panel = ThunderbirdPanel(self.config_path)
        self.window.tabs.addTab(self.thunderbird_panel, self.tr("T&hunderbird"))
        self.tray = Tray(self)
        self.tray_available = use_tray and Tray.available()
        self.window.keep_running_in_tray = self.tray_available

        self.window.scanRequested.connect(self.scan_now)
        self.window.quitRequested.connect(self.quit)
        self.window.addAccountRequested.connect(self.add_account)
        self.window.signInRequested.connect(self.sign_in_again)
        self.window.unlockRequested.connect(self.unlock_secrets)
        self.window.reviewRequested.connect(self.open_review)
        self.window.removeAccountRequested.connect(self.ask_remove_account)
        self.window.editAccountRequested.connect(lambda: self._pick_account(self.edit_account))
        self.window.demoRequested.connect(self.start_demo)
        self.window.detail.markRequested.connect(self.mark)
        self.window.detail.undoRequested.connect(self.undo)
        self.window.detail.rationaleRequested.connect(self.rationale)
        self.window.detail.neighboursWanted.connect(self.explain)
        self.window.thresholds.applied.connect(self.apply_thresholds)
        self.models_page.llm_changed.connect(self._set_llm)
        self.window.undo_batch.clicked.connect(self.tray._undo_last)
        self.window.tabs.currentChanged.connect(lambda _: self._clear_attention())
        self.tray.openRequested.connect(self.open_window)
        self.tray.scanRequested.connect(self.scan_now)
        self.tray.pauseToggled.connect(self.set_paused)
        self.tray.settingsRequested.connect(self.open_settings)
        self.tray.quitRequested.connect(self.quit)
        self.tray.undoRequested.connect(self.undo_batch)
        self.learned.connect(self._learned)

    # -- start-up --------------------------------------------------------------------------

    def start(self, *, show_window: bool | None = None) -> None:
        if self.tray_available:
            self.tray.show()
        else:
            self.window.show_banner(
                self.tr(
                    "No system tray was found on this desktop, so SpamGuard runs as a normal "
                    "window. Closing it quits SpamGuard and stops watching your mail."
                )
            )
        try:
            self._open_accounts()
            self._update_tray()  # "watching your mail" only when there is mail to watch
        except SpamGuardError as exc:
            self.window.show_banner(self.tr("SpamGuard cannot start: %1").replace("%1", str(exc)))
            self.tray.set_state("error", str(exc))
        # First run (no account yet): the window, not an icon in the tray nobody notices.
        first_run = not self.runners and not self._locked
        if show_window or (
            show_window is None and (self.demo or not self.tray_available or first_run)
        ):
            self.open_window()
        self.tray.set_paused(self.settings.value("paused", False, type=bool))

    def _scorer(self) -> object:
        """The one model every account shares, loaded by the first worker that needs it.

        Importing the scoring stack and reading the head take seconds on a busy laptop; done
        here, in a worker thread, they keep the tray icon and the window from waiting on them.
        """
        with self._scorer_load_lock:
            if self._loaded_scorer is None:
                from spamguard.message import parse_message

                # Imports and the model make objects by the hundred thousand; a full collection
                # over the growing heap mid-load is another GIL-held pause, and none of it is
                # garbage.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    runtime = self.runtime or self._demo_runtime
                    assert runtime is not None  # made before any account worker starts
                    scorer = runtime.scorer()
                    # One message through it loads what the model loads lazily (the encoder).
                    scorer.score([parse_message(_WARM_UP)])
                finally:
                    if collecting:
                        gc.enable()
                self._loaded_scorer = scorer
                # Everything alive now (Qt wrappers, the scoring stack, the model) lives as
                # long as the app. Without this, each full garbage collection walks all of it
                # while holding the GIL: a 150-200 ms freeze of the window every few seconds
                # of a backlog scan (bench_ui's stalls were these, not the scoring itself).
                gc.freeze()
            return self._loaded_scorer

    def _open_accounts(self) -> None:
        scorer = None  # loaded in the first account worker, see `_scorer`
        if self.demo:
            self._tmp = tempfile.TemporaryDirectory(prefix="spamguard-demo-")
            work = Path(self._tmp.name)
            root = prepare_demo_mailbox(work)
            self._demo_runtime = self._make_runtime(parse_config(""), work / "demo.sqlite3")
            self.store = self._demo_runtime.store
            accounts = [demo_settings(root, self._saved_thresholds(DEMO_ACCOUNT))]
            self.window.show_banner(
                self.window.banner.text()
                + (" " if self.window.banner.text() else "")
                + self.tr(
                    "This is the demo mailbox: a copy of 36 example messages in a temporary "
                    "folder. Nothing here touches your real mail."
                )
            )
        else:
            # First run: no config file yet is an empty config, not an error.
            exists = self.config_path.exists()
            config = load_config(self.config_path) if exists else parse_config("")
            self.models_page.set_llm(config.llm, self.config_path)
            self._llm = config.llm
            self.runtime = self._make_runtime(config)
            self.store = self.runtime.store
            self.models_page.set_registry(self.runtime.registry)
            accounts = list(config.accounts.values())
            if not accounts:
                self.window.show_first_run(True)
        for account in accounts:
            self._start_account(account, scorer)

    def _start_account(self, account: AccountSettings, scorer: object) -> None:
        """Start the account's worker, or hold it until the encrypted file is unlocked (a
        worker would only fail to sign in)."""
        from spamguard.mail.credentials import file_store_locked

        if (
            account.auth == "password"
            and account.password_store == "file"
            and not account.password_command
            and file_store_locked()
        ):
            self._locked[account.name] = (account, scorer)
            self.window.show_unlock_banner(list(self._locked))
            return
        self._add_runner(account, scorer)

    def unlock_secrets(self, error: str = "") -> None:
        """Ask for the encrypted file's passphrase; start the accounts that waited for it."""
        from PySide6.QtWidgets import QInputDialog, QLineEdit

        if self.unlock_dialog is not None and self.unlock_dialog.isVisible():
            self.unlock_dialog.raise_()
            return
        dialog = QInputDialog(self.window)
        dialog.setWindowTitle(self.tr("Unlock the password file"))
        dialog.setTextEchoMode(QLineEdit.EchoMode.Password)
        text = self.tr(
            "The passwords of %1 are in SpamGuard's encrypted file. Enter its passphrase:"
        ).replace("%1", ", ".join(self._locked))
        dialog.setLabelText(f"{error}\n{text}" if error else text)
        dialog.textValueSelected.connect(self._unlock_with)
        self.unlock_dialog = dialog
        dialog.open()

    def _unlock_with(self, passphrase: str) -> None:
        """Check the passphrase in a thread: the file's key derivation (Argon2) takes about a
        second, and the window must not freeze for it."""
        if self.unlocker is not None and self.unlocker.isRunning():
            return  # a second press while the first is checked
        self.window.show_banner(self.tr("Unlocking the password file…"))
        unlocker = _Unlocker(passphrase)
        unlocker.done.connect(self._unlocked)
        self.unlocker = unlocker
        unlocker.start()

    def _unlocked(self, error: str) -> None:
        if self.unlocker is not None:
            self.unlocker.wait()
            self.unlocker = None
        if self._quitting:
            return
        if error:
            self.window.show_unlock_banner(list(self._locked))
            self.unlock_dialog = None
            self.unlock_secrets(error[:1].upper() + error[1:] + ".")
            return
        self.window.show_banner("")
        waiting, self._locked = self._locked, {}
        for account, scorer in waiting.values():
            self._add_runner(account, scorer)

    def start_demo(self) -> None:
        """First run: the bundled demo mailbox beside (never inside) the user's own store."""
        if DEMO_ACCOUNT in self.runners:
            return
        self.window.show_first_run(False)
        self._tmp = tempfile.TemporaryDirectory(prefix="spamguard-demo-")
        work = Path(self._tmp.name)
        root = prepare_demo_mailbox(work)
        self._demo_runtime = self._make_runtime(parse_config(""), work / "demo.sqlite3")
        self._demo_store = self._demo_runtime.store
        self.window.show_banner(
            self.tr(
                "This is the demo mailbox: a copy of 36 example messages in a temporary "
                "folder. Nothing here touches your real mail. Add your own account with "
                "File → Add account…"
            )
        )
        account = demo_settings(root, self._saved_thresholds(DEMO_ACCOUNT))
        self._add_runner(account, None, self._demo_store)
        self.open_window()

    def _add_runner(
        self, account: AccountSettings, scorer: object, store: Store | None = None
    ) -> None:
        store = store or self.store
        assert store is not None
        lock = self._scorer_lock
        runtime = self.runtime if store is getattr(self.runtime, "store", None) else None
        learner = runtime.learner if runtime is not None else None

        def make_session() -> AccountSession:
            model = scorer if scorer is not None else self._scorer()
            return AccountSession(
                account,
                scorer=model,  # type: ignore[arg-type]
                store=store,
                scorer_lock=lock,
                learner=learner,
            )

        runner = AccountRunner(
            account.name,
            make_session,
            watch=account.name != DEMO_ACCOUNT,
            poll_interval=account.poll_interval,
            review_first=self.review_first_scan and account.name != DEMO_ACCOUNT,
        )
        self.accounts[account.name] = account
        runner.updated.connect(self._updated)
        runner.rowsLoaded.connect(self._rows_loaded)
        runner.rowChanged.connect(self._row_changed)
        runner.stateChanged.connect(
            lambda state, detail, n=account.name: self._state(n, state, detail)
        )
        runner.failed.connect(lambda what, text, n=account.name: self._failed(n, what, text))
        runner.signInNeeded.connect(
            lambda text, n=account.name: self.window.show_sign_in_banner(n, text)
        )
        runner.scanFinished.connect(lambda count, n=account.name: self._scan_finished(n, count))
        runner.explained.connect(self._explained)
        runner.reviewReady.connect(lambda review, n=account.name: self._review_ready(n, review))
        runner.rationalePiece.connect(self.window.detail.append_rationale)
        runner.rationaleDone.connect(self.window.detail.rationale_done)
        runner.rationaleKept.connect(self.window.detail.show_kept_rationale)
        self.runners[account.name] = runner
        self.states[account.name] = "idle"
        self._first_scan_pending.add(account.name)
        junk = account.junk_folder if account.junk_folder != "auto" else "Junk"
        self.window.add_account(account.name, [*account.watch_folders, junk])
        self.window.thresholds.set_account(account.name, account.thresholds)
        if self.settings.value("paused", False, type=bool):
            runner.set_paused(True)
        runner.start()

    def _make_runtime(self, config: Any, store: Path | None = None) -> Runtime:
        """The composition root (`spamguard.engine.runtime`): store, registry, scorer, learner.
        ``store`` given: the demo mailbox's own database, and no learning from it."""
        return Runtime(
            config,
            model_dir=self.model_dir,
            learn=store is None,
            learn_options=self._learn_options,
            store=store,
            on_learning_event=self.learned.emit,
        )

    def _close_runtimes(self) -> None:
        for runtime in (self.runtime, self._demo_runtime):
            if runtime is not None:
                runtime.close(wait=1.0)

    def _learned(self, event: object) -> None:
        """A retrain finished or a version was promoted: the Models page shows it at once."""
        from spamguard.learn.loop import RetrainOutcome

        if self._quitting or self.runtime is None or not isinstance(event, RetrainOutcome):
            return
        self.models_page.show_model(self.runtime.active_model_dir())
        self.modelChanged.emit(event.version)

    def _saved_thresholds(self, account: str) -> Thresholds:
        s = self.settings
        flag = s.value(f"thresholds/{account}/flag", None)
        move = s.value(f"thresholds/{account}/move", None)
        if flag is None or move is None:
            return Thresholds()
        return Thresholds(move=float(move), flag=float(flag))  # type: ignore[arg-type]

    # -- engine → UI -----------------------------------------------------------------------

    def _updated(self, update: ScanUpdate) -> None:
        progress = update.progress
        if update.rows:
            self.window.model.upsert(update.rows)
            self._refresh_scores(progress.account)
            if not self.window.isVisible() and any(r.verdict != "ham" for r in update.rows):
                self._attention = True
        for event in update.events:
            applied = isinstance(event, ActionApplied) and event.state == "applied"
            if applied and event.action == "move_junk":  # type: ignore[union-attr]
                self.tray.note_moved(
                    event.account,
                    event.journal_id,  # type: ignore[union-attr]
                    event.subject,  # type: ignore[union-attr]
                    event.message_id,  # type: ignore[union-attr]
                )
        fraction = progress.done / progress.total if progress.total else 1.0
        self.window.show_progress(
            progress.done,
            progress.total,
            self.tr("%1: checked %2 of %3 in %4")
            .replace("%1", progress.account)
            .replace("%2", str(progress.done))
            .replace("%3", str(progress.total))
            .replace("%4", progress.folder),
        )
        if self.states.get(progress.account) == "scanning":
            self.tray.set_state("scanning", progress.account, fraction)

    def _rows_loaded(self, rows: list[MessageRow]) -> None:
        for row in rows:
            if not row.moved:
                self.tray.forget(row.account, row.message_id)
        present, accounts = {r.key for r in rows}, {r.account for r in rows}
        self._in_flight = {k for k in self._in_flight if k[0] not in accounts or k in present}
        self.window.model.upsert(rows)
        for account in {r.account for r in rows}:
            self._refresh_scores(account)
        self.window._reselect()

    def _row_changed(self, row: MessageRow) -> None:
        self._in_flight.discard(row.key)
        if not row.moved:
            self.tray.forget(row.account, row.message_id)
        self.window.model.upsert([row])
        self.window.row_updated(row)

    def _explained(self, key: object, score: object) -> None:
        current = self.window.detail.row
        if current is not None and current.key == key:
            self.window.detail.show_neighbours(getattr(score, "neighbours", ()))

    def _refresh_scores(self, account: str) -> None:
        rows = [r for r in self.window.model.rows() if r.account == account]
        self.window.thresholds.set_scores(account, [r.p_spam for r in rows])

    def _state(self, account: str, state: str, detail: str) -> None:
        if state == "stopped":
            return
        self.states[account] = state
        if state == "scanning":
            self._scan_started[account] = time.monotonic()
        self._update_tray(detail)

    def _update_tray(self, detail: str = "") -> None:
        self.tray.watching = bool(self.runners or self._locked)
        states = set(self.states.values())
        if self._attention:
            states.add("attention")
        state = next((s for s in _STATE_ORDER if s in states), "idle")
        if self.reviews and state in ("idle", "attention"):
            # Nothing moved yet: the first scan of a new account waits for the user's choice.
            tip = self.tr("SpamGuard: the first scan of %1 waits for your review").replace(
                "%1", ", ".join(self.reviews)
            )
            self.tray.set_state("attention", detail, tip=tip)
            return
        if state != "scanning" or self.tray.state != "scanning":
            self.tray.set_state(state, detail)

    def _failed(self, account: str, what: str, text: str) -> None:
        if what in ("mark", "undo"):
            self._in_flight = {k for k in self._in_flight if k[0] != account}
        if what in ("mark", "undo", "explain", "rationale"):
            self.window.detail.show_error(text)
        elif what == "start":  # e.g. the model could not be loaded
            self.window.status_text.setText(f"{account}: {text}")
            self.window.show_banner(self.tr("SpamGuard cannot start: %1").replace("%1", text))
        else:
            self.window.status_text.setText(f"{account}: {text}")
            self._trouble[account] = text
            self.window.show_banner(text)

    def _review_ready(self, account: str, review: Review) -> None:
        """The first scan's dry run is done: show what it would do, and wait for a choice."""
        if account in self._chosen:
            return  # made before the user's choice reached the worker (e.g. Scan now)
        self.reviews[account] = review
        self._update_tray()
        self.window.show_progress(
            0,
            0,
            self.tr("%1: first scan ready for your review; nothing changed yet").replace(
                "%1", account
            ),
        )
        dialog = self.review_dialog
        if dialog is not None and dialog.account == account and dialog.isVisible():
            dialog.set_review(review)  # looked again (after learning, or Scan now)
        else:
            self.open_review(account)

    def open_review(self, account: str) -> Any:
        """The review of ``account``'s first scan (also the banner's "Review…" link)."""
        from .first_scan import FirstScanDialog

        review = self.reviews.get(account)
        if review is None:
            return None
        if self.review_dialog is not None and self.review_dialog.isVisible():
            self.review_dialog.close()
        settings = self.accounts.get(account)
        thresholds = settings.thresholds if settings is not None else Thresholds()
        dialog = FirstScanDialog(review, thresholds, self.window)
        dialog.chosen.connect(lambda choice: self._review_chosen(account, choice))
        dialog.learnRequested.connect(lambda: self._learn_for_review(account))
        dialog.rejected.connect(lambda: self._review_postponed(account))
        self.review_dialog = dialog
        self.open_window()
        dialog.show()
        dialog.raise_()
        return dialog

    def _review_postponed(self, account: str) -> None:
        if account in self.reviews:
            self.window.show_review_banner(account)

    def _review_chosen(self, account: str, choice: Any) -> None:
        runner = self.runners.get(account)
        if runner is None or self.reviews.pop(account, None) is None:
            return
        self._chosen.add(account)
        self.window.show_banner("")
        self._update_tray()
        runner.apply_review(choice)

    def _learn_for_review(self, account: str) -> None:
        dialog = self.learn_existing(account)
        if dialog is None and self.review_dialog is not None:
            self.review_dialog.set_busy("")
            return
        # Cancelled or failed: the review shown still holds.
        for signal in (dialog.runner.cancelled, dialog.runner.failed):
            signal.connect(lambda *_: self.review_dialog and self.review_dialog.set_busy(""))

    def _after_learning(self, account: str, result: Any) -> None:
        """First-sync learning finished: before the first moves, look again with what it
        learned (after them this is an ordinary scan)."""
        runner = self.runners.get(account)
        if runner is None:
            return
        if result.state != "learned":
            if self.review_dialog is not None and self.review_dialog.account == account:
                self.review_dialog.set_busy("")
            return
        if self.review_dialog is not None and self.review_dialog.account == account:
            self.review_dialog.set_busy(self.tr("Looking again with what SpamGuard learned…"))
        runner.review_again()

    def _scan_finished(self, account: str, count: int) -> None:
        self._chosen.discard(account)
        dialog = self.review_dialog
        if dialog is not None and dialog.account == account and account not in self.reviews:
            dialog.close()  # looked again and found nothing to decide: the scan went ahead
        started = self._scan_started.pop(account, None)
        self._scored += count
        if started is not None and count:
            self._scan_seconds += time.monotonic() - started
        rate = self._scored / self._scan_seconds if self._scan_seconds else None
        self.models_page.set_session_stats(self._scored, rate)
        recorder = getattr(self._loaded_scorer, "recorder", None)
        if recorder is not None:
            self.models_page.set_counters(recorder.snapshot())
        self.window.show_progress(
            0, 0, self.tr("%1: up to date").replace("%1", account) if not self._quitting else ""
        )
        self._trouble_cleared(account)
        self.tray.flush_now()
        self._update_tray()
        self.scanDone.emit(account, count)
        if account in self._first_scan_pending:
            self._first_scan_pending.discard(account)
            if not self._first_scan_pending:
                self.scansFinished.emit()

    def _trouble_cleared(self, account: str) -> None:
        """A scan of ``account`` went through: its connection banner is no longer true."""
        text = self._trouble.pop(account, None)
        if text is None or self.window.banner.text() != text:
            return  # another banner replaced it since; that one has causes of its own
        others = list(self._trouble.values())
        self.window.show_banner(others[-1] if others else "")

    # -- UI → engine -----------------------------------------------------------------------

    def scan_now(self) -> None:
        for runner in self.runners.values():
            runner.scan_now()

    def set_paused(self, paused: bool) -> None:
        self.settings.setValue("paused", paused)
        for name, runner in self.runners.items():
            runner.set_paused(paused)
            if not paused and self.states.get(name) == "paused":
                self.states[name] = "idle"
        self._update_tray()

    def mark(self, key: tuple[str, str, str], label: str) -> None:
        runner = self.runners.get(key[0])
        if runner is not None and key not in self._in_flight:
            # One action per message at a time: a double-click must not act twice.
            self._in_flight.add(key)
            runner.mark(key, label)

    def explain(self, key: tuple[str, str, str]) -> None:
        """Score the shown message with the full head, for its nearest known messages, and
        show the language model's explanation if one was kept for it (read from the store in
        the account's worker, before the slower scoring)."""
        runner = self.runners.get(key[0])
        if runner is not None:
            runner.kept_rationale(key, self._llm)
            runner.explain(key)

    def rationale(self, key: tuple[str, str, str]) -> None:
        """The language model explains the shown message (the [llm] settings of the config)."""
        runner = self.runners.get(key[0])
        if runner is not None:
            runner.rationale(key, self._llm)

    def undo(self, key: tuple[str, str, str]) -> None:
        runner = self.runners.get(key[0])
        if runner is not None and key not in self._in_flight:
            # Undo pressed twice is one undo: the second press would undo an older action.
            self._in_flight.add(key)
            runner.undo(key)

    def undo_batch(self, batch: list[tuple[str, int]]) -> None:
        by_account: dict[str, list[int]] = {}
        for account, journal_id in batch:
            by_account.setdefault(account, []).append(journal_id)
        for account, ids in by_account.items():
            runner = self.runners.get(account)
            if runner is not None:
                runner.undo_journal(ids)
        self.window.undo_batch.hide()

    def _set_llm(self, llm: LLMConfig) -> None:
        """The [llm] section after a change in Settings (already saved): the next explanation
        loads the model with it."""
        self._llm = llm

    def apply_thresholds(self, account: str, thresholds: Thresholds) -> None:
        self.settings.setValue(f"thresholds/{account}/flag", thresholds.flag)
        self.settings.setValue(f"thresholds/{account}/move", thresholds.move)
        self.settings.sync()
        if account != DEMO_ACCOUNT and self.config_path.exists():
            try:
                save_account_thresholds(self.config_path, account, thresholds)
            except SpamGuardError as exc:
                self.window.show_banner(str(exc))
        runner = self.runners.get(account)
        if runner is not None:
            runner.set_thresholds(thresholds)
        self.window.status_text.setText(
            self.tr("%1: flag at %2 %, move at %3 %")
            .replace("%1", account)
            .replace("%2", f"{thresholds.flag * 100:.0f}")
            .replace("%3", f"{thresholds.move * 100:.0f}")
        )

    def add_account(self) -> None:
        from .account_dialog import AccountDialog

        dialog = AccountDialog(self.config_path, self.window)
        if dialog.exec():
            added = self.watch_new_accounts()
            QMessageBox.information(
                self.window,
                self.tr("Account added"),
                self.tr("SpamGuard is now watching %1.").replace("%1", ", ".join(added))
                if added
                else self.tr("The account was saved."),
            )
            if dialog.learn_existing.isChecked() and self.store is not None:
                self.learn_existing(dialog.settings().name)

    def ask_remove_account(self) -> None:
        """File > Remove account…: which one (when there are several), then a confirmation."""
        self._pick_account(self.confirm_remove_account)

    def _pick_account(self, then: Callable[[str], object]) -> None:
        from PySide6.QtWidgets import QInputDialog

        names = [n for n in self.accounts if n != DEMO_ACCOUNT] + list(self._locked)
        if not names:
            QMessageBox.information(
                self.window, self.tr("Accounts"), self.tr("There is no account set up yet.")
            )
            return
        name = names[0]
        if len(names) > 1:
            name, ok = QInputDialog.getItem(
                self.window,
                self.tr("Accounts"),
                self.tr("Which account?"),
                names,
                0,
                False,
            )
            if not ok:
                return
        then(name)

    def edit_account(self, name: str) -> Any:
        """The account dialog on the account's settings; on Save its worker restarts on them."""
        from .account_dialog import AccountDialog

        try:
            account = load_config(self.config_path).accounts[name]
        except (SpamGuardError, KeyError) as exc:
            self.window.show_banner(str(exc))
            return None
        dialog = AccountDialog(self.config_path, self.window, account=account)
        dialog.accepted.connect(lambda: self._account_edited(name))
        self.edit_dialog = dialog
        dialog.open()
        return dialog

    def _account_edited(self, name: str) -> None:
        self._stop_account(name)  # a new worker looks again on the saved settings
        self.window.remove_account_place(name)
        self.watch_new_accounts()  # starts it again on the saved settings

    def _stop_account(self, name: str) -> None:
        """Stop the account's worker and forget what the app held of it (an edit or a removal)."""
        self.reviews.pop(name, None)
        self._chosen.discard(name)
        runner = self.runners.pop(name, None)
        if runner is not None:
            runner.stop()
            runner.wait(QUIT_TIMEOUT_MS)
        self._locked.pop(name, None)
        self.accounts.pop(name, None)
        self.states.pop(name, None)

    def confirm_remove_account(self, name: str) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            self.tr("Remove %1?").replace("%1", name),
            self.tr(
                "SpamGuard stops watching %1, removes it from the config file and forgets its "
                "stored password or sign-in. Your mail on the server is not touched, and what "
                "SpamGuard already moved stays where it is."
            ).replace("%1", name),
            QMessageBox.StandardButton.Cancel,
            self.window,
        )
        remove = box.addButton(self.tr("&Remove account"), QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(
            lambda button: self.remove_account(name) if button is remove else None
        )
        self.remove_dialog = box
        box.open()

    def remove_account(self, name: str) -> None:
        """Stop the account's worker, then remove its config section and its secret."""
        from spamguard.engine.accounts import remove_account

        self._trouble.pop(name, None)
        self._stop_account(name)
        try:
            remove_account(self.config_path, name)
        except SpamGuardError as exc:
            self.window.show_banner(str(exc))
            return
        self.window.remove_account_place(name)
        self.window.status_text.setText(self.tr("Removed %1.").replace("%1", name))
        self._update_tray()

    def learn_existing(self, account: str, *, start: bool = True) -> Any:
        """Learn from ``account``'s existing mail, in a dialog with progress and Cancel."""
        from .first_sync import dialog_for

        assert self.store is not None
        try:
            dialog = dialog_for(self.config_path, account, self.store, self.window)
        except SpamGuardError as exc:
            self.window.show_banner(str(exc))
            return None
        self.first_sync_dialog = dialog
        dialog.runner.finishedWith.connect(lambda result: self._after_learning(account, result))
        dialog.open()
        if start:
            dialog.start()
        return dialog

    def sign_in_again(self, account: str) -> None:
        """Browser sign-in for an OAuth2 account whose tokens expired or were withdrawn."""
        from .account_dialog import SignInDialog

        settings = self.accounts.get(account)
        if settings is None:
            return
        if self.sign_in_dialog is not None and self.sign_in_dialog.isVisible():
            self.sign_in_dialog.raise_()  # one sign-in at a time: the link was pressed twice
            return
        dialog = SignInDialog(settings, self.window)
        self.sign_in_dialog = dialog
        dialog.accepted.connect(lambda: self._signed_in_again(account))
        dialog.open()

    def _signed_in_again(self, account: str) -> None:
        self.window.show_banner("")
        runner = self.runners.get(account)
        if runner is not None:
            runner.scan_now()

    def watch_new_accounts(self) -> list[str]:
        """Start a worker for every account in the config that has none yet (no restart)."""
        if self.demo or self._quitting:
            return []
        try:
            config = load_config(self.config_path)
        except SpamGuardError as exc:
            self.window.show_banner(str(exc))
            return []
        if self.runtime is None:
            self.runtime = self._make_runtime(config)
            self.store = self.runtime.store
            self.models_page.set_registry(self.runtime.registry)
        added = [
            a
            for name, a in config.accounts.items()
            if name not in self.runners and name not in self._locked
        ]
        for account in added:
            self._start_account(account, None)
        if added:
            self.window.show_first_run(False)
            if DEMO_ACCOUNT not in self.runners:
                self.window.show_banner("")
        return [a.name for a in added]

    # -- window and quitting ---------------------------------------------------------------

    def open_window(self) -> None:
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()
        self._clear_attention()

    def _clear_attention(self) -> None:
        if self._attention:
            self._attention = False
            self._update_tray()

    def open_settings(self, page: str = "thresholds") -> None:
        """The tray's Settings entries: a settings tab, or the accounts (edit, add)."""
        self.open_window()
        if page == "accounts":
            if self.accounts.keys() - {DEMO_ACCOUNT}:
                self._pick_account(self.edit_account)
            else:
                self.add_account()
            return
        pages = {
            "models": self.models_page,
            "thunderbird": self.thunderbird_panel,
        }
        self.window.tabs.setCurrentWidget(pages.get(page, self.window.thresholds))

    def stop_workers(self, timeout_ms: int = QUIT_TIMEOUT_MS) -> bool:
        """Ask every worker to stop and wait for all of them within ``timeout_ms`` in total."""
        deadline = time.monotonic() + timeout_ms / 1000
        for runner in self.runners.values():
            runner.stop()
        ok = True
        for runner in self.runners.values():
            left = max(0, int((deadline - time.monotonic()) * 1000))
            ok = runner.wait(left) and ok
        return ok

    def shutdown(self) -> bool:
        """Stop the workers (2 s at most), hide the tray, close the store. True when clean."""
        if self._quitting:
            return True
        self._quitting = True
        self.quitting.emit()
        self.window.save()
        if self.unlocker is not None:
            self.unlocker.wait(QUIT_TIMEOUT_MS)  # a passphrase being checked: a second or so
        clean = self.stop_workers()
        if not clean:
            log.warning("a worker did not stop within %d ms", QUIT_TIMEOUT_MS)
        self.tray.hide()
        self.window.hide()
        if clean:
            self._close_runtimes()
        if clean and self._tmp is not None:
            self._tmp.cleanup()
        return clean

    def quit(self) -> None:
        if self._quitting:
            return
        if not self.shutdown():
            # The window and tray are gone already; a worker mid-batch finishes that batch
            # (so its journal stays settled) before the process may end.
            for runner in self.runners.values():
                runner.wait()
            self._close_runtimes()
        app = QApplication.instance()
        if app is not None:
            app.quit()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spamguard-tray", description="SpamGuard tray app")
    parser.add_argument("--demo", action="store_true", help="start with the bundled demo mailbox")
    parser.add_argument(
        "--screenshot",
        metavar="PATH",
        help="with --demo: save the main window after the scan, exit",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default: the platform's)")
    parser.add_argument("--model", metavar="DIR", help="model directory (default: the shipped one)")
    parser.add_argument("--hidden", action="store_true", help="start in the tray, window closed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.screenshot and not args.demo:
        print("spamguard-tray: --screenshot needs --demo", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName("SpamGuard")
    app.setApplicationName("SpamGuard")
    app.setApplicationDisplayName("SpamGuard")
    app.setDesktopFileName("spamguard-tray")
    app.setQuitOnLastWindowClosed(False)  # closing the window leaves the tray running
    from .crash import install_excepthook

    # Logging and the crash dialog first, so nothing that fails from here on is silent.
    crash = install_excepthook(app)
    controller = SpamGuardApp(
        demo=args.demo,
        config_path=Path(args.config) if args.config else None,
        model_dir=Path(args.model) if args.model else None,
    )
    if args.screenshot:
        target = Path(args.screenshot)

        def shoot() -> None:
            window = controller.window
            window.table.setFocus()
            model = window.proxy
            # Show the most telling message: the highest-scored one still in the Inbox.
            rows = [model.index(r, 0).data(ROW_ROLE) for r in range(model.rowCount())]
            inbox = [r for r, row in enumerate(rows) if row.location == row.folder]
            best = max(inbox, key=lambda r: rows[r].p_spam, default=None)
            if best is not None:
                window.table.selectRow(best)
            QTimer.singleShot(300, finish)

        def finish() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            ok = controller.window.grab().save(str(target))
            print(f"screenshot {'saved to' if ok else 'FAILED:'} {target}")
            controller.quit()

        controller.scansFinished.connect(lambda: QTimer.singleShot(200, shoot))
        QTimer.singleShot(120_000, controller.quit)  # never hang a build step
    crash.on_quit = controller.quit  # the dialog's Quit is the normal clean shutdown
    controller.start(show_window=False if args.hidden else None)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
