"""Qt-free calls the desktop app needs: account sessions, rows, labels, explanations, the demo.

Over 600 lines on purpose: `AccountSession` is everything one account is to the app (its rows,
scans, labels, explanations, undo), and the row helpers below it only serve it. Account setup
is in `engine.accounts`, config writes in `config.edit`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from spamguard.config import (
    AccountSettings,
    LLMConfig,
)
from spamguard.demo import demo_mailbox_path
from spamguard.engine.events import Event, EventBus, MessageScored, Progress
from spamguard.engine.first_scan import needs_review
from spamguard.engine.service import AccountWorker
from spamguard.errors import (
    MailStoreError,
    ModelError,
    NotMailError,
)
from spamguard.learn.labels import apply_label
from spamguard.learn.own_neighbours import OwnNeighbours
from spamguard.learn.registry import ModelRegistry, VersionInfo, active_model_dir
from spamguard.llm.prompts import Outcome
from spamguard.mail.base import MailStore
from spamguard.mail.maildir import MaildirStore
from spamguard.message import Message, parse_message
from spamguard.scoring.base import Evidence, Neighbour, Score, Scorer
from spamguard.store import JournalEntry, ScoredMessage, Store, StoredExplanation
from spamguard.verdict import Thresholds, Verdict

if TYPE_CHECKING:
    from spamguard.engine.first_scan import Choice, ReviewRecorder
    from spamguard.learn.loop import Learner
    from spamguard.llm.prompts import Outcome

__all__ = [
    "DEMO_ACCOUNT",
    "AccountSession",
    "ConnectionReport",
    "MessageRow",
    "ModelInfo",
    "ScanUpdate",
    "demo_settings",
    "gpu_offload_supported",
    "histogram",
    "model_info",
    "prepare_demo_mailbox",
    "threshold_counts",
]

DEMO_ACCOUNT = "demo"
Label = Literal["spam", "ham"]
_MOVES = ("move_junk", "move", "undo")
_USER_ACTIONS = ("move_junk", "move", "flag", "keyword")


# -- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One scored message as the app shows it: score, what was done, where it is now."""

    account: str
    message_id: str
    content_hash: str
    folder: str  # where it was scored
    location: str  # where the journal says it is now
    uid: int
    date: float | None  # the Date header as epoch seconds, when it parses
    from_addr: str
    subject: str
    p_spam: float
    verdict: str
    stage: str
    model_version: str
    action: str  # "moved to Junk", "flagged", "moved back", "" ...
    action_at: float | None
    label: str  # the user's label: "spam", "ham" or ""
    plan: str = ""
    evidence: tuple[Evidence, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    protected: str = ""  # why it is never moved to Junk (a rescue, the allow list, a known sender)
    # Who put it where it is, from the journal and the labels: "you" (Spam button or
    # `spamguard label`), "SpamGuard" (a threshold or rule), "another client" (a move to Junk
    # seen on the server), "" when nothing moved it.
    moved_by: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.account, self.message_id, self.content_hash)

    @property
    def moved(self) -> bool:
        return self.action == "moved to Junk"


@dataclass(frozen=True, slots=True)
class ScanUpdate:
    """What one step of a scan produced: progress, the rows scored, and the engine's events."""

    progress: Progress
    rows: tuple[MessageRow, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """The outcome of "Test connection", worded for the person at the keyboard."""

    ok: bool
    message: str
    kind: str = ""  # "auth", "tls", "unreachable", "folder", "config", "" when ok
    fingerprint: str | None = None
    folders: tuple[str, ...] = ()
    junk_folder: str | None = None
    # An unverified certificate's subject, issuer, not_before, not_after (to decide on trust).
    certificate: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a model directory's config.json says about itself."""

    path: Path
    version: str
    trained_at: str
    n_spam: int
    n_ham: int
    source: str
    encoder: str
    metrics: dict[str, float] = field(default_factory=dict)


# -- remembering explanations ----------------------------------------------------------------------


class _RememberingScorer:
    """Passes scoring through and keeps the last scores' nearest neighbours, which the store
    does not keep, so the detail pane can show them without scoring again."""

    def __init__(
        self,
        scorer: Scorer,
        keep: int = 5000,
        neighbours: OrderedDict[str, tuple[Neighbour, ...]] | None = None,
    ) -> None:
        self.inner = scorer
        self.keep = keep
        self.neighbours: OrderedDict[str, tuple[Neighbour, ...]] = (
            neighbours if neighbours is not None else OrderedDict()
        )

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def model(self) -> object:
        """The head model, for the learner's "is the active version loaded?" check."""
        return getattr(self.inner, "model", None)

    def score(self, messages: Sequence[Message]) -> list[Score]:
        scores = self.inner.score(messages)
        for msg, score in zip(messages, scores, strict=False):
            if score.neighbours:
                self.neighbours[msg.content_hash] = score.neighbours
                self.neighbours.move_to_end(msg.content_hash)
        while len(self.neighbours) > self.keep:
            self.neighbours.popitem(last=False)
        return scores


# -- one account -----------------------------------------------------------------------------------


class AccountSession:
    """One account for the app: scan, wait for mail, label and undo. Not thread-safe: it owns
    the account's `MailStore`, so one thread (the app's account worker) makes every call."""

    def __init__(
        self,
        settings: AccountSettings,
        *,
        scorer: Scorer,
        store: Store,
        mail: MailStore | None = None,
        scorer_lock: threading.Lock | None = None,
        learner: Learner | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._scorer_lock = scorer_lock or threading.Lock()
        self._neighbours: OrderedDict[str, tuple[Neighbour, ...]] = OrderedDict()
        # One model shared by every account: pass the same lock to each session.
        # The learner (from `runtime.Runtime`) turns labels into retrained versions.
        self.worker = AccountWorker(
            settings,
            scorer=_RememberingScorer(scorer, neighbours=self._neighbours),
            store=store,
            mail=mail,
            events=EventBus(),
            scorer_lock=self._scorer_lock,
            learner=learner,
        )
        self._open = False

        self._own_neighbours = OwnNeighbours(store, settings.name)

    @property
    def _scorer(self) -> _RememberingScorer:
        """The worker's scorer, wrapped again after the learner swapped in a new version."""
        current = self.worker.scorer
        if not isinstance(current, _RememberingScorer):
            current = _RememberingScorer(current, neighbours=self._neighbours)
            self.worker.scorer = current
        return current

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def junk_folder(self) -> str | None:
        return self.worker.junk_folder

    def open(self) -> None:
        if not self._open:
            self.worker.open()
            self._open = True

    def close(self) -> None:
        self._open = False
        self.worker.close()

    def set_thresholds(self, thresholds: Thresholds) -> None:
        """New thresholds apply to messages scored from now on (not retroactively)."""
        from dataclasses import replace

        self.settings = replace(self.settings, thresholds=thresholds)
        self.worker.settings = self.settings
        if self.worker.executor is not None:
            self.worker.executor.settings = self.settings

    def needs_review(self) -> bool:
        """Never scanned yet: its first scan is a review (`first_scan`) before anything moves."""

        return needs_review(self.store, self.settings)

    def review(self, recorder: ReviewRecorder) -> Iterator[ScanUpdate]:
        """The first scan as a dry run: ``recorder`` keeps every plan; nothing on the server
        changes and nothing is journalled or remembered as scanned (scores are cached)."""
        self.close()  # a dry run opens without settling the journal; the next open does
        learner = self.worker.learner
        if learner is not None and learner.options.manage_scorer:
            # A version the first-sync learning promoted since: review with it.
            learner._swap_scorer(self.worker)
            self.worker.scorer = self._scorer  # wrapped again, to keep its neighbours
        self.worker.dry_run = True
        self.worker.plan_hook = recorder
        scorer = self.worker.scorer
        model = getattr(scorer, "model", None)  # a cascade's head names the version
        recorder.model_version = str(getattr(model, "version", None) or scorer.version)
        try:
            yield from self.scan()
        finally:
            self.worker.dry_run = False
            self.worker.plan_hook = None
            self.close()

    def scan(self, choice: Choice | None = None) -> Iterator[ScanUpdate]:
        """Catch up every watched folder, one update per batch. Closing the generator cancels
        after the batch in hand (the engine finishes a batch so its journal stays settled).
        ``choice``: the user's decision after the first-scan review, for this scan only."""
        self.open()
        events: list[Event] = []
        unsubscribe = self.worker.events.subscribe(events.append)
        if choice is not None:
            self.worker.plan_hook = choice.hook(self.settings)
        try:
            for progress in self.worker.sync():
                self.worker.scorer = self._scorer  # re-wrapped if the learner swapped it
                batch, events[:] = list(events), []
                scored = [e for e in batch if isinstance(e, MessageScored)]
                yield ScanUpdate(progress, tuple(self._rows_for(scored)), tuple(batch))
        finally:
            unsubscribe()
            if choice is not None:
                self.worker.plan_hook = None

    def wait_for_mail(self, timeout: float, should_stop: Callable[[], bool]) -> bool:
        """Block (IDLE or polling) until new mail may be there, ``timeout`` or ``should_stop()``."""
        self.open()
        return self.worker.wait_for_mail(timeout, should_stop)

    # -- rows --------------------------------------------------------------------------------

    def rows(self, limit: int = 2000) -> list[MessageRow]:
        """Every scored message of this account the store remembers, newest first."""
        scored = self.store.scored_messages(self.name, limit=limit)
        journal: dict[tuple[str, str], list[JournalEntry]] = {}
        for entry in self.store.journal(account=self.name):
            journal.setdefault((entry.message_id, entry.content_hash), []).append(entry)
        labels = _labels(self.store, self.name)
        return [
            self._row(s, journal.get((s.message_id, s.content_hash), []), labels) for s in scored
        ]

    def row(self, key: tuple[str, str, str]) -> MessageRow | None:
        _, message_id, content = key
        scored = self.store.scored_message(self.name, message_id, content)
        if scored is None:
            return None
        entries = self.store.journal(account=self.name, message=(message_id, content))
        return self._row(scored, entries, _labels(self.store, self.name, (message_id, content)))

    def _rows_for(self, events: Sequence[MessageScored]) -> list[MessageRow]:
        if not events or self.worker.dry_run:
            return []
        # The newest rows of this account are the ones this batch wrote (one worker each).
        recent = self.store.scored_messages(self.name, limit=len(events) + 64)
        by_place = {(s.folder, s.uid): s for s in recent}
        rows = []
        for event in events:
            scored = by_place.get((event.folder, event.uid))
            if scored is None:
                continue
            entries = self.store.journal(
                account=self.name, message=(scored.message_id, scored.content_hash)
            )
            rows.append(self._row(scored, entries, {}))
        return rows

    def _row(
        self,
        s: ScoredMessage,
        entries: Sequence[JournalEntry],
        labels: dict[tuple[str, str], tuple[str, str]],
    ) -> MessageRow:
        location, action, action_at = _whereabouts(s.folder, entries)
        label, source = labels.get((s.message_id, s.content_hash), ("", ""))
        moved_by = _moved_by(entries, source)
        if moved_by == "another client":  # the journal never saw that move; the label did
            location = source.removeprefix("moved to ")
        return MessageRow(
            account=s.account,
            message_id=s.message_id,
            content_hash=s.content_hash,
            folder=s.folder,
            location=location,
            uid=s.uid,
            date=_epoch(s.date),
            from_addr=s.from_addr,
            subject=s.subject,
            p_spam=s.p_spam,
            verdict=s.verdict,
            stage=s.stage,
            model_version=s.model_version,
            action=action,
            action_at=action_at,
            label=label,
            plan=s.plan,
            evidence=s.evidence,
            neighbours=self._scorer.neighbours.get(s.content_hash, ()),
            protected=s.protected,
            moved_by=moved_by,
        )

    def explain(self, key: tuple[str, str, str]) -> Score | None:
        """Score the message again with the full head (the cascade's cheap stage and the
        store keep no neighbours); None if the message is gone."""
        row = self.row(key)
        msg = self._fetch(row) if row else None
        if msg is None:
            return None
        stages = getattr(self._scorer.inner, "stages", None)
        full: Scorer = stages[-1] if stages else self._scorer
        with self._scorer_lock:
            score = full.score([msg])[0]
            embed = getattr(full, "embed", None)
            # The user's own labelled mail first: closer to what they get than the corpus.
            own = self._own_neighbours.find(msg, embed) if embed is not None else ()
        if not own:
            return score
        from dataclasses import replace

        return replace(score, neighbours=own + score.neighbours)

    def kept_rationale(self, key: tuple[str, str, str], llm: LLMConfig) -> str | None:
        """The checked explanation kept for a message by an earlier `rationale` (this run or
        an earlier one), if it was written for the message's present action, this scoring
        model and these [llm] settings; None otherwise. Reads the store only: no mail, no
        model, so the app can show it as soon as the message is selected."""
        from spamguard.llm.engine import LLMSettings
        from spamguard.llm.explain import explanation_context

        row = self.row(key)
        if row is None:
            return None
        context = explanation_context(
            LLMSettings.from_config(llm), row.model_version, outcome_of(row)
        )
        kept = self.store.explanation(self.name, row.message_id, row.content_hash, context)
        return kept.text if kept is not None else None

    def rationale(self, key: tuple[str, str, str], llm: LLMConfig) -> Iterator[str]:
        """The LLM's short rationale for a message's score and what was done with it.

        It reads the score and evidence SpamGuard already has; it changes neither. It is told
        what was actually done (this account's thresholds, allow list and rules, from the
        journal) and checked against the verdict, the action and the evidence before it is
        shown (`llm.explain`). What is shown is kept for the message and shown again
        until the message's action or the model changes. A missing or damaged model is a
        `ModelError` naming what to install.
        """
        from spamguard.llm.engine import LLMSettings
        from spamguard.llm.explain import (
            checked_explanation,
            explanation_context,
            outcome_facts,
        )

        row = self.row(key)
        if row is None:
            raise MailStoreError("SpamGuard has no record of that message; scan again")
        kept = self.kept_rationale(key, llm)
        if kept is not None:
            yield kept
            return
        settings = LLMSettings.from_config(llm)
        outcome = outcome_of(row)
        context = explanation_context(settings, row.model_version, outcome)
        fetched = self._fetch_raw(row)
        if fetched is None:
            raise MailStoreError(
                f"SpamGuard cannot find the message in {row.location or row.folder} any more"
            )
        msg, raw = fetched
        with self._scorer_lock:
            score = self._scorer.score([msg])[0]
        known = self.store.is_correspondent(self.name, msg.from_addr)
        facts = outcome_facts(msg, outcome, raw=raw, known_sender=known)
        result = checked_explanation(msg, score, outcome, settings=settings, facts=facts)
        self.store.save_explanation(
            self.name,
            row.message_id,
            row.content_hash,
            context,
            StoredExplanation(result.text, result.from_llm, result.problems, time.time()),
        )
        yield result.text

    def _fetch(self, row: MessageRow) -> Message | None:
        fetched = self._fetch_raw(row)
        return fetched[0] if fetched else None

    def _fetch_raw(self, row: MessageRow) -> tuple[Message, bytes] | None:
        self.open()
        assert self.worker.executor is not None
        found = self.worker.executor.locate(
            row.location, row.message_id, row.content_hash, row.subject
        )
        if not found:
            return None
        fetched = self.worker.mail.fetch(
            row.location, [found[0].uid], self.settings.max_fetch_bytes
        )
        try:
            if not fetched:
                return None
            # Read as the worker reads it: the account's own server's A-R only.
            raw = fetched[0].raw
            return parse_message(raw, authserv_id=self.worker.authserv_id), raw
        except NotMailError:
            return None

    # -- the user's verdict ------------------------------------------------------------------

    def mark(self, key: tuple[str, str, str], label: Label) -> MessageRow:
        """Spam: move it to Junk. Not spam: undo our move or flag and never touch it again.
        Either way the label is recorded for training, through the same `apply_label` as
        `spamguard label` (the bytes, sender and folder are kept with it)."""

        self.open()
        executor = self.worker.executor
        assert executor is not None
        _, message_id, content = key
        scored = self.store.scored_message(self.name, message_id, content)
        if scored is None:
            raise MailStoreError("SpamGuard has no record of that message; scan again")
        apply_label(self.worker, executor, scored, label, source="app button")
        row = self.row(key)
        assert row is not None
        return row

    def undo(self, key: tuple[str, str, str]) -> MessageRow | None:
        """Undo the newest action on this message (ours or a button's)."""
        self.open()
        executor = self.worker.executor
        assert executor is not None
        _, message_id, content = key
        latest = [
            e
            for e in self.store.journal(
                account=self.name, states=["applied"], message=(message_id, content)
            )
            if e.action in _USER_ACTIONS
        ][:1]
        for result in executor.undo(latest):
            if result.outcome == "not found":
                raise MailStoreError(result.detail or "the message could not be found")
            if result.outcome == "undone" and latest and _by_you(latest[0]):
                # Undo of the user's own Spam / Not spam: the label goes with the move, so
                # the list stops saying "Spam (you)" and no retrain learns from it.
                label: Label = "spam" if latest[0].action == "move_junk" else "ham"
                self.store.withdraw_label(self.name, message_id, content, label)
        return self.row(key)

    def undo_journal(self, ids: Iterable[int]) -> int:
        """Undo journal entries by id (a notification's Undo); returns how many were undone."""
        self.open()
        executor = self.worker.executor
        assert executor is not None
        entries = [e for e in (self.store.journal_entry(i) for i in ids) if e is not None]
        entries.sort(key=lambda e: -e.id)
        return sum(r.outcome == "undone" for r in executor.undo(entries))


def outcome_of(row: MessageRow) -> Outcome:
    """What SpamGuard did with a row's message, in the words the LLM is given and checked
    against: the journal's last action, else the plan's reason for leaving it alone."""

    verdict = cast(Verdict, row.verdict if row.verdict in ("spam", "flag", "ham") else "ham")
    action = row.action
    if action == "moved to Junk":
        return Outcome(verdict, "moved it to Junk", moved_to_junk=True)
    if action == "flagged":
        return Outcome(verdict, "flagged it and left it where it was", flagged=True)
    if action == "moved back":
        return Outcome(verdict, "moved it to Junk, then it was moved back out (by you or Undo)")
    if action == "unflagged":
        return Outcome(verdict, "flagged it, then the flag was undone")
    if action.startswith("moved to "):
        return Outcome(verdict, f"{action} (one of your rules)")
    if action.startswith("failed") or action == "pending":
        return Outcome(verdict, f"nothing yet: the planned action is {action}")
    where = f"left it in {row.location}" if row.location else "left it alone"
    return Outcome(verdict, f"{where}, because {_why_left(row.plan)}")


def _why_left(plan: str) -> str:
    """The policy's reason for leaving a message alone, as a clause (`policy.plan_for`)."""
    plan = plan.strip()
    reason = plan[len("leave (") : -1] if plan.startswith("leave (") and plan.endswith(")") else ""
    if ", but " in reason:
        return reason.split(", but ", 1)[1]  # "... ≥ move threshold, but X is on your allow list"
    if reason.startswith("rule "):
        return f"of your {reason}"
    if "<" in reason and "threshold" in reason:
        return "its score is below the flag threshold"
    return reason or "no rule or threshold asked for anything else"


def _whereabouts(folder: str, entries: Sequence[JournalEntry]) -> tuple[str, str, float | None]:
    """(current folder, what was done last, when) from a message's journal rows."""
    location = folder
    for e in sorted(entries, key=lambda e: e.id):
        if e.action in _MOVES and e.state in ("applied", "undone") and e.dst:
            location = e.dst
    for e in sorted(entries, key=lambda e: -e.id):
        if e.action == "undo":
            continue
        if e.state == "undone":
            return location, ("moved back" if e.dst else "unflagged"), e.undone_at
        if e.state == "failed":
            return location, f"failed: {e.error or 'refused'}", e.created_at
        if e.state == "planned":
            return location, "pending", e.created_at
        if e.action == "move_junk":
            return location, "moved to Junk", e.applied_at
        if e.action == "move":
            return location, f"moved to {e.dst}", e.applied_at
        return location, "flagged", e.applied_at
    return location, "", None


def _labels(
    store: Store, account: str, message: tuple[str, str] | None = None
) -> dict[tuple[str, str], tuple[str, str]]:
    """(Message-ID, content hash) -> the newest (label, source): a user may change their mind."""
    return {
        (r.message_id, r.content_hash): (r.label, r.source)
        for r in store.feedback_rows(account, message=message)
    }


def _by_you(entry: JournalEntry) -> bool:
    """A move `feedback.apply_label` made for the user's Spam / Not spam."""
    return entry.reason.startswith("you labelled")


def _moved_by(entries: Sequence[JournalEntry], label_source: str) -> str:
    """Who made the move the row shows: the newest move still in effect in the journal, else
    a move to Junk another mail client made (the label it taught says so)."""
    for e in sorted(entries, key=lambda e: -e.id):
        if e.action in ("move_junk", "move") and e.state == "applied":
            return "you" if _by_you(e) else "SpamGuard"
    if label_source.startswith("moved to "):
        return "another client"
    return ""


def _epoch(header: str) -> float | None:
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


# -- the demo mailbox ------------------------------------------------------------------------------


def prepare_demo_mailbox(workdir: Path) -> Path:
    """Copy the bundled demo Maildir into ``workdir`` (the app moves mail around in it)
    with an empty Junk folder, and return the copy's root."""

    root = Path(workdir) / "demo-mailbox"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(demo_mailbox_path(), root)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(exist_ok=True)  # wheels drop empty folders
    MaildirStore(root).create_folder("Junk")
    return root


def demo_settings(root: Path, thresholds: Thresholds | None = None) -> AccountSettings:
    """Settings for the demo account over a prepared copy of the demo Maildir."""
    return AccountSettings(
        name=DEMO_ACCOUNT,
        host="localhost",
        port=143,
        security="plain",
        username="demo",
        maildir=Path(root),
        junk_folder="Junk",
        thresholds=thresholds or Thresholds(),
        backlog_days=0,  # the demo mail is dated 2025: scan all of it
        backlog_messages=1000,
        batch_size=12,
    )


# -- thresholds ------------------------------------------------------------------------------------


def threshold_counts(scores: Iterable[float], flag: float, move: float) -> tuple[int, int]:
    """(flagged, moved) among ``scores`` under these thresholds; moved wins over flagged."""
    flagged = moved = 0
    for p in scores:
        if p >= move:
            moved += 1
        elif p >= flag:
            flagged += 1
    return flagged, moved


def histogram(scores: Iterable[float], bins: int = 20) -> list[int]:
    counts = [0] * bins
    for p in scores:
        counts[min(bins - 1, max(0, int(p * bins)))] += 1
    return counts


def gpu_offload_supported() -> bool | None:
    """Whether the installed llama.cpp reports GPU offload; None when it is not installed."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return None
    try:
        import llama_cpp
    except (ImportError, OSError):
        return None
    return bool(llama_cpp.llama_supports_gpu_offload())


# -- models ----------------------------------------------------------------------------------------


def model_info(model_dir: Path | None = None) -> ModelInfo:
    """The active head's version, training data and headline metrics, from its config.json."""

    path = Path(model_dir) if model_dir else active_model_dir()
    try:
        config = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"no readable model at {path} ({exc})") from None
    training = config.get("training") or {}
    metrics_raw = config.get("metrics") or {}
    # Prefer held-out figures; fall back to cross-validation on the training half.
    chosen = metrics_raw.get("test") or metrics_raw.get("train_cv") or metrics_raw
    flat: dict[str, float] = {}
    for key in ("roc_auc", "recall_at_0.1pct_fpr", "recall_at_1pct_fpr", "ece", "n"):
        if isinstance(chosen.get(key), int | float):
            flat[key] = float(chosen[key])
    for name in ("at_move", "at_flag"):
        block = chosen.get(name) or {}
        for key in ("precision", "recall", "fpr"):
            if isinstance(block.get(key), int | float):
                flat[f"{name}.{key}"] = float(block[key])
    flat["held_out"] = 1.0 if "test" in metrics_raw else 0.0
    encoder = config.get("encoder") or {}
    return ModelInfo(
        path=path,
        version=str(config.get("version", "unknown")),
        trained_at=str(training.get("trained_at", "")),
        n_spam=int(training.get("n_spam", 0)),
        n_ham=int(training.get("n_ham", 0)),
        source=str(training.get("source", "")),
        encoder=(
            f"{str(encoder.get('id', '')).rsplit('/', 1)[-1]} ({encoder.get('quantization', '?')})"
            if isinstance(encoder, dict) and encoder.get("id")
            else ""
        ),
        metrics=flat,
    )


def model_versions(registry: ModelRegistry | None = None) -> list[VersionInfo]:
    """The user's model versions, newest first (empty until the first retraining)."""
    registry = registry if registry is not None else ModelRegistry()
    return sorted(registry.versions(), key=lambda v: v.created_at, reverse=True)


def today_start(now: float | None = None) -> float:
    """Local midnight today, for "moved today"."""
    moment = datetime.fromtimestamp(now if now is not None else time.time())
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
