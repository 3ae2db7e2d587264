"""The learning loop: labels from sync -> warm-started head -> checks -> shadow -> promotion.

Over 600 lines on purpose: `Learner` is one loop (record, decide, retrain, check, shadow,
promote) whose steps share its state and its thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from spamguard.errors import ConnectionLostError, MailStoreError, SpamGuardError
from spamguard.learn.corpus import labels_hash, load_split
from spamguard.learn.fit import Progress
from spamguard.learn.labels import FeedbackWatcher, LabelRecorded, MailContext, latest_labels
from spamguard.learn.registry import ModelRegistry, VersionInfo
from spamguard.learn.warm import (
    Cancelled,
    WarmStart,
    WarmStartOptions,
    design_for,
    fit_labels_steps,
    recency_weights,
)
from spamguard.message import Message, parse_message
from spamguard.scoring.assemble import CASCADE_FILE, STAGE0_DIR, cascade_parts, load_default_scorer
from spamguard.scoring.rules import GTUBE, is_gtube
from spamguard.store import Store
from spamguard.verdict import model_thresholds, verdict_for

__all__ = [
    "ImplicitLabels",
    "LearnOptions",
    "Learner",
    "RetrainOutcome",
    "compare_on_labels",
    "labelled_rows",
    "retrain_steps",
    "training_labels",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LearnOptions:
    retrain_after: int = 20  # K: new labels that start a retrain
    shadow_messages: int = 50  # N: messages a candidate is scored on beside the active one
    # Share of shadow messages on which the two may land on different sides of a threshold.
    max_disagreement: float = 0.2
    # Held-back labels: mean log-loss may rise by this much, errors may not rise at all.
    logloss_tolerance: float = 0.05
    auc_tolerance: float = 0.001  # on the public test half, when it is on this machine
    background: bool = True  # retrain in a thread so the mail loop never waits for it
    manage_scorer: bool = False  # swap the worker's scorer to the active version after sync
    warm: WarmStartOptions = field(default_factory=WarmStartOptions)
    public_eval: tuple[Path, Path] | None = None  # (split TSV, corpus dir)


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    version: str
    state: str  # "shadow", "active" or "rejected"
    reason: str
    metrics: dict[str, Any]
    seconds: float


@dataclass(frozen=True, slots=True)
class _Labelled:
    ids: list[int]
    times: list[float]
    spam: list[bool]
    hashes: list[str]

    @property
    def digest(self) -> str:
        # The same recipe as corpus.data_hash, without parsing the messages.
        return labels_hash(zip(self.hashes, self.spam, strict=True))


@dataclass(frozen=True, slots=True)
class ImplicitLabels:
    """Labels the user did not give but their mail implies (first-sync learning: Junk as spam,
    mail they read and kept as ham). Each has its own weight, below an explicit label's 1.0;
    the active model never saw any of them, so all count as held-back in the checks."""

    hashes: list[str]
    spam: list[bool]
    weights: list[float]
    source: str
    summary: dict[str, Any] = field(default_factory=dict)


def _with_implicit(labelled: _Labelled, implicit: ImplicitLabels) -> tuple[_Labelled, np.ndarray]:
    """Explicit labels, then the implicit ones whose message has no explicit label; the
    weight of each (explicit 1.0) before recency."""
    known = set(labelled.hashes)
    out = _Labelled(
        list(labelled.ids), list(labelled.times), list(labelled.spam), list(labelled.hashes)
    )
    weights = [1.0] * len(labelled.ids)
    now = time.time()
    for h, spam, w in zip(implicit.hashes, implicit.spam, implicit.weights, strict=True):
        if h in known:
            continue
        known.add(h)
        out.ids.append(0)  # 0: not a feedback row, so new to every version
        out.times.append(now)
        out.spam.append(spam)
        out.hashes.append(h)
        weights.append(w)
    return out, np.asarray(weights, dtype=np.float64)


def training_labels(
    store: Store, implicit: ImplicitLabels | None = None
) -> tuple[_Labelled, np.ndarray, int]:
    """What a retrain learns from: the user's labels, then the implied ones, each message's
    weight before recency, and how many are the user's. Test messages (GTUBE) are left out
    however their bytes were kept (a label, a backfill, a first sync)."""
    labelled = labelled_rows(store)
    n_explicit = len(labelled.ids)
    kind = np.ones(n_explicit)
    if implicit is not None:
        labelled, kind = _with_implicit(labelled, implicit)
    keep = [i for i, h in enumerate(labelled.hashes) if not _is_test_message(store, h)]
    out = _Labelled(
        [labelled.ids[i] for i in keep],
        [labelled.times[i] for i in keep],
        [labelled.spam[i] for i in keep],
        [labelled.hashes[i] for i in keep],
    )
    return out, kind[keep], sum(1 for i in keep if i < n_explicit)


def _is_test_message(store: Store, content_hash: str) -> bool:
    """Whether the kept bytes carry the GTUBE line, as written or inside an encoded body
    (parsed only when an encoding may hide it)."""

    raw = store.label_raw(content_hash) or b""
    if GTUBE.encode() in raw:
        return True
    lowered = raw[:65536].lower()
    if b"base64" not in lowered and b"quoted-printable" not in lowered:
        return False
    try:
        return is_gtube(parse_message(raw))
    except SpamGuardError:
        return False


def labelled_rows(store: Store, account: str | None = None) -> _Labelled:
    """The newest label of every message whose bytes we kept (a user may change their mind)."""
    out = _Labelled([], [], [], [])
    for row in sorted(latest_labels(store, account).values(), key=lambda r: r.id):
        if not store.has_label_raw(row.content_hash):
            continue
        out.ids.append(row.id)
        out.times.append(row.created_at)
        out.spam.append(row.label == "spam")
        out.hashes.append(row.content_hash)
    return out


class _StoredMessages(Sequence[Message]):
    """Labelled messages parsed from the store on access (only feature-cache misses are)."""

    def __init__(self, store: Store, hashes: Sequence[str]) -> None:
        self.store = store
        self.hashes = hashes

    def __len__(self) -> int:
        return len(self.hashes)

    @overload
    def __getitem__(self, i: int) -> Message: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Message]: ...
    def __getitem__(self, i: int | slice) -> Message | Sequence[Message]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        h = self.hashes[i]
        raw = self.store.label_raw(h)
        if raw is None:
            raise SpamGuardError("a labelled message's bytes vanished from the store")
        # Its account's own server's Authentication-Results, as when it was scored.
        return parse_message(raw, authserv_id=self.store.label_authserv_id(h))


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


def compare_on_labels(
    y: np.ndarray, p_candidate: np.ndarray, p_active: np.ndarray, *, flag: float = 0.5
) -> dict[str, Any]:
    return {
        "n": len(y),
        "logloss_candidate": _logloss(y, p_candidate) if len(y) else 0.0,
        "logloss_active": _logloss(y, p_active) if len(y) else 0.0,
        "errors_candidate": int(((p_candidate >= flag) != y).sum()),
        "errors_active": int(((p_active >= flag) != y).sum()),
    }


def retrain_steps(
    store: Store,
    registry: ModelRegistry,
    options: LearnOptions = LearnOptions(),
    *,
    cancel: threading.Event | None = None,
    encoder: Any = None,
    implicit: ImplicitLabels | None = None,
) -> Generator[Progress, None, RetrainOutcome]:
    """Warm-start a new version from the active one on every kept label, check it, store it.

    Checks: on held-back labels (those the active version never saw; the candidate's score
    for each comes from a fold model that did not see it either) log-loss may not rise
    beyond the tolerance and errors may not rise; with the public corpus present, its test
    half's AUC may not drop beyond ``auc_tolerance``. Passing versions go to shadow (or
    straight to active when ``shadow_messages`` is 0); failing ones are kept as rejected,
    with the reason, for the lineage.
    """
    from spamguard.scoring.model import load_model

    started = time.perf_counter()
    parent_dir = registry.active_dir()
    parent = load_model(parent_dir)
    active = registry.active
    watermark = registry.get(active).label_watermark if active else 0
    labelled, kind, n_explicit = training_labels(store, implicit)
    n = len(labelled.ids)
    if not n:
        raise SpamGuardError("no labelled messages to learn from yet")
    ids = labelled.ids
    weights = kind * recency_weights(
        np.asarray(labelled.times),
        half_life_days=options.warm.half_life_days,
        min_share=options.warm.min_share,
    )
    source = f"{n} user labels"
    if implicit is not None:
        source = f"{n_explicit} user labels and {n - n_explicit} {implicit.source}"
    yield Progress("features", 0, n)
    design = _label_design(parent.featurizer, store, labelled, options, encoder=encoder)
    yield Progress("features", n, n)
    if cancel is not None and cancel.is_set():
        raise Cancelled("retraining was cancelled")
    result: WarmStart = yield from fit_labels_steps(
        parent,
        np.asarray(labelled.spam, dtype=bool),
        design,
        options.warm,
        sample_weight=weights,
        digest=labelled.digest,
        source=source,
        cancel=cancel,
    )
    model = result.model
    y = result.y
    cheap = yield from _cheap_candidate(
        parent_dir, parent.version, store, labelled, y, weights, options, cancel
    )
    p_active = parent.head.calibrate(parent.head.decision_function(design[0]))
    new = (np.asarray(ids) > watermark) | (np.asarray(ids) == 0)
    basis = "labels the active model has not seen"
    if not new.any():
        new = np.ones(len(ids), dtype=bool)
        basis = "all labels (none is new to the active model, which favours it)"
    flag = model_thresholds(parent.thresholds).flag
    held = compare_on_labels(y[new], result.oof_p[new], p_active[new], flag=flag)
    held["basis"] = basis
    metrics: dict[str, Any] = {"held_back": held, "user_cv": model.metrics.get("user_cv", {})}
    if implicit is not None:
        metrics["implicit"] = dict(implicit.summary, n=int(n - n_explicit))
    problems: list[str] = []
    if held["logloss_candidate"] > held["logloss_active"] + options.logloss_tolerance:
        problems.append(
            f"held-back log-loss {held['logloss_candidate']:.3f} > active "
            f"{held['logloss_active']:.3f} + {options.logloss_tolerance}"
        )
    if held["errors_candidate"] > held["errors_active"]:
        problems.append(
            f"{held['errors_candidate']} errors on {held['n']} held-back labels "
            f"(active: {held['errors_active']})"
        )
    if options.public_eval is not None:
        yield Progress("public test half", 0, 1)
        public = _public_auc(options.public_eval, parent, model)
        metrics["public_test"] = public
        if public["auc_candidate"] < public["auc_active"] - options.auc_tolerance:
            problems.append(
                f"public test AUC {public['auc_candidate']:.5f} < active "
                f"{public['auc_active']:.5f} - {options.auc_tolerance}"
            )
        yield Progress("public test half", 1, 1)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    if problems:
        state, reason = "rejected", "; ".join(problems)
    elif options.shadow_messages > 0:
        state = "shadow"
        reason = (
            f"passed held-back checks ({held['errors_candidate']} vs "
            f"{held['errors_active']} errors on {held['n']}); in shadow for "
            f"{options.shadow_messages} messages"
        )
    else:
        state, reason = "active", "passed held-back checks; shadow testing is off"
    cascade_note = None
    if cheap is not None:
        cascade_note = _cascade_check(cheap, result.oof_p, y, flag)
        metrics["cascade"] = cascade_note
    model.metrics.update(metrics)
    info = registry.add(
        model,
        state="candidate",
        label_watermark=max(max(ids), watermark),
        metrics=metrics,
        reason=reason,
    )
    if cheap is not None and cascade_note is not None and cascade_note["kept"]:
        _save_cascade(registry.version_dir(info.version), cheap, model.version, cascade_note)
    if state == "active":
        registry.promote(info.version, reason)
    else:
        registry.update(info.version, state=state, reason=reason)
    return RetrainOutcome(info.version, state, reason, metrics, time.perf_counter() - started)


# -- the cascade of a personal version -------------------------------------------------------------
#
# The shipped cascade's bands fit the shipped heads only. So that a personal version keeps the
# cheap stage (several times less CPU per message), its stage 0 is warm-started from the parent's
# on the same labels and kept beside it with the parent's band edges, but only if, on the
# user's labels (out-of-fold for both stages), the cascade errs no more often than the full head.


@dataclass
class _CheapFit:
    result: WarmStart
    spec: dict[str, Any]


def _label_design(
    featurizer: Any, store: Store, labelled: _Labelled, options: LearnOptions, encoder: Any = None
) -> tuple[Any, Any]:
    """The labelled messages' design rows for ``featurizer``, from the store's row cache."""
    return design_for(
        featurizer,
        _StoredMessages(store, labelled.hashes),
        hashes=labelled.hashes,
        headerless=options.warm.augment_headerless,
        encoder=encoder,
        cache=store,
    )


def _cheap_candidate(
    parent_dir: Path,
    parent_version: str,
    store: Store,
    labelled: _Labelled,
    y: np.ndarray,
    weights: np.ndarray,
    options: LearnOptions,
    cancel: threading.Event | None,
) -> Generator[Progress, None, _CheapFit | None]:
    from spamguard.scoring.model import load_model

    parts = cascade_parts(parent_dir, parent_version)
    if parts is None:
        return None
    cheap_dir, spec = parts
    cheap_parent = load_model(cheap_dir)
    design = _label_design(cheap_parent.featurizer, store, labelled, options)
    result: WarmStart = yield from fit_labels_steps(
        cheap_parent,
        y,
        design,
        options.warm,
        sample_weight=weights,
        digest=labelled.digest,
        source=f"{len(y)} user labels (stage 0)",
        cancel=cancel,
    )
    return _CheapFit(result, spec)


def _cascade_check(
    cheap: _CheapFit, oof_full: np.ndarray, y: np.ndarray, flag: float
) -> dict[str, Any]:
    from spamguard.scoring.cascade import Band, cascade_probs

    band = Band(**cheap.spec["bands"][0])
    p, decided = cascade_probs(cheap.result.oof_p, oof_full, band)
    errors_cascade = int(((p >= flag) != y).sum())
    errors_full = int(((oof_full >= flag) != y).sum())
    return {
        "kept": errors_cascade <= errors_full,
        "errors_cascade": errors_cascade,
        "errors_full": errors_full,
        "decided_by_stage0": float(decided.mean()) if len(decided) else 0.0,
        "n": len(y),
        "band": band.to_json(),
    }


def _save_cascade(
    version_dir: Path, cheap: _CheapFit, full_version: str, note: dict[str, Any]
) -> None:
    from spamguard.scoring.model import save_model

    model = cheap.result.model
    model.version = f"{full_version}-stage0"
    save_model(model, version_dir / STAGE0_DIR)
    spec = {
        "for_models": {"cheap": model.version, "full": full_version},
        "bands": [note["band"]],
        "stacker": None,
        "chosen_on": {
            "inherited_from": cheap.spec.get("for_models"),
            "checked_on_user_labels": {k: v for k, v in note.items() if k != "band"},
        },
    }
    tmp = version_dir / f".{CASCADE_FILE}.tmp"
    tmp.write_text(json.dumps(spec, indent=2) + "\n", "utf-8")
    os.replace(tmp, version_dir / CASCADE_FILE)


def _public_auc(public: tuple[Path, Path], active: Any, candidate: Any) -> dict[str, float]:
    from spamguard.evaluate import auc

    split, corpus = public
    items = load_split(split, corpus, "test")
    y = np.asarray([it.is_spam for it in items])
    X = active.featurizer.transform([it.message for it in items])
    return {
        "n": len(items),
        "auc_active": auc(y, active.head.decision_function(X)),
        "auc_candidate": auc(y, candidate.head.decision_function(X)),
    }


class Learner:
    """Plugs learning into the account workers (`AccountWorker(learner=...)`).

    ``before_sync`` turns what other clients did into labels (before the engine meets the
    messages again, so rescues are protected); ``after_sync`` retrains once ``retrain_after``
    labels are new; ``observe`` runs a shadow candidate beside the active head and promotes
    or rejects it after ``shadow_messages`` messages. Thread-safe: several workers share one.
    """

    def __init__(
        self,
        store: Store,
        *,
        registry: ModelRegistry | None = None,
        options: LearnOptions = LearnOptions(),
        watcher: FeedbackWatcher | None = None,
        encoder: Any = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry if registry is not None else ModelRegistry()
        self.options = options
        self.watcher = watcher if watcher is not None else FeedbackWatcher()
        self.encoder = encoder
        self.on_event = on_event
        self.outcomes: list[RetrainOutcome] = []
        self.labels: list[LabelRecorded] = []
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._scorers: dict[str, Any] = {}

    def _emit(self, event: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("learning event subscriber failed")

    # -- hooks the service calls ---------------------------------------------------------------

    def before_sync(self, ctx: MailContext) -> list[LabelRecorded]:
        if self.options.manage_scorer:
            self._swap_scorer(ctx)
        try:
            found = self.watcher.detect(ctx)
        except ConnectionLostError:
            raise
        except MailStoreError as exc:
            # Learning is a bonus: a refused FETCH must never stop the mail loop.
            log.warning("feedback detection on %s failed: %s", ctx.name, exc)
            return []
        self._labelled(found)
        return found

    def after_sync(self, ctx: MailContext) -> None:
        try:
            self._labelled(self.watcher.refresh_junk(ctx))
            self.watcher.backfill(ctx)
        except ConnectionLostError:
            raise
        except MailStoreError as exc:
            log.warning("feedback refresh of Junk on %s failed: %s", ctx.name, exc)
        self.prepare_features()
        self.maybe_retrain()

    def prepare_features(self, limit: int = 50) -> int:
        """Featurize a few new labels per sync, so the retrain finds every row cached."""
        from spamguard.learn.warm import featurizer_key

        labelled = labelled_rows(self.store)
        if not labelled.hashes:
            # Nothing to prepare (every first sync): no second copy of the model for it.
            return 0
        try:
            featurizer = self._scorer(self.registry.active or "").model.featurizer
        except SpamGuardError:
            return 0
        if featurizer.uses_embedding and self.encoder is None:
            return 0  # loading the encoder here would stall the mail loop; the retrain does it
        key = featurizer_key(featurizer)
        have = self.store.cached_feature_hashes(key + ":headerless", labelled.hashes)
        todo = [h for h in labelled.hashes if h not in have][:limit]
        if todo:
            design_for(featurizer, _StoredMessages(self.store, todo), hashes=todo, cache=self.store)
        return len(todo)

    def observe(self, ctx: MailContext, messages: Sequence[Message]) -> None:
        """Score ``messages`` with the shadow candidate and the active head; count disagreements."""
        if not messages:
            return
        with self._lock:
            info = self.registry.in_shadow()
            if info is None:
                return
            try:
                candidate = self._scorer(info.version)
                active = self._scorer(self.registry.active or "")
            except SpamGuardError as exc:
                self.registry.reject(info.version, f"could not be loaded for shadow: {exc}")
                return
            th = ctx.settings.thresholds
            p_c = [s.p_spam for s in candidate.score(messages)]
            p_a = [s.p_spam for s in active.score(messages)]
            shadow = dict(info.shadow) or {"seen": 0, "disagreements": 0, "examples": []}
            for msg, pc, pa in zip(messages, p_c, p_a, strict=True):
                shadow["seen"] += 1
                if verdict_for(pc, th.move, th.flag) != verdict_for(pa, th.move, th.flag):
                    shadow["disagreements"] += 1
                    if len(shadow["examples"]) < 20:
                        shadow["examples"].append(
                            {
                                "account": ctx.name,
                                "message_id": msg.message_id,
                                "subject": msg.subject[:120],
                                "p_active": round(pa, 4),
                                "p_candidate": round(pc, 4),
                            }
                        )
            self.registry.update(info.version, shadow=shadow)
            if shadow["seen"] >= self.options.shadow_messages:
                self._decide(info, shadow)

    # -- retraining ----------------------------------------------------------------------------

    def pending_labels(self) -> int:
        """Labels newer than any version trained so far."""
        trained = max((v.label_watermark for v in self.registry.versions()), default=0)
        return len(self.store.feedback_rows(after_id=trained))

    def maybe_retrain(self) -> bool:
        """Start a retrain when enough labels are new and no candidate is still in shadow."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            if self.registry.in_shadow() is not None:
                return False
            if self.pending_labels() < self.options.retrain_after:
                return False
            if not self.options.background:
                self.retrain()
                return True
            self._cancel.clear()
            self._thread = threading.Thread(
                target=self._retrain_quietly, name="spamguard-retrain", daemon=True
            )
            self._thread.start()
            return True

    def retrain(self, on_progress: Callable[[Progress], None] | None = None) -> RetrainOutcome:
        """Retrain now, in this thread (`spamguard models retrain`, the app's button)."""
        gen = retrain_steps(
            self.store, self.registry, self.options, cancel=self._cancel, encoder=self.encoder
        )
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                outcome: RetrainOutcome = stop.value
                break
            if on_progress is not None:
                on_progress(progress)
        self.outcomes.append(outcome)
        self._emit(outcome)
        return outcome

    def _retrain_quietly(self) -> None:
        try:
            self.retrain()
        except Cancelled:
            log.info("retraining cancelled")
        except SpamGuardError as exc:
            log.warning("retraining failed: %s", exc)

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background retrain; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- helpers -------------------------------------------------------------------------------

    def _labelled(self, found: Sequence[LabelRecorded]) -> None:
        for rec in found:
            self.labels.append(rec)
            self._emit(rec)

    def _decide(self, info: VersionInfo, shadow: dict[str, Any]) -> None:
        seen, bad = shadow["seen"], shadow["disagreements"]
        if bad > self.options.max_disagreement * seen:
            reason = (
                f"shadow: disagreed with the active model on {bad} of {seen} messages "
                f"(more than {self.options.max_disagreement:.0%}); promote it by hand if right"
            )
            self.registry.reject(info.version, reason)
            self._emit(RetrainOutcome(info.version, "rejected", reason, {}, 0.0))
            return
        reason = f"shadow: disagreed on {bad} of {seen} messages; {info.reason}"
        self.registry.promote(info.version, reason)
        self._emit(RetrainOutcome(info.version, "active", reason, {}, 0.0))

    def _scorer(self, version: str) -> Any:
        from spamguard.scoring.model import HeadScorer, load_model

        if version not in self._scorers:
            path = self.registry.version_dir(version) if version else self.registry.active_dir()
            self._scorers[version] = HeadScorer(
                load_model(path), encoder=self.encoder, top_evidence=0, neighbours=0
            )
        return self._scorers[version]

    def _swap_scorer(self, ctx: Any) -> None:
        active = self.registry.active
        scorer = getattr(ctx, "scorer", None)
        # A cascade's version names its stages; the head model's version is what counts.
        model = getattr(scorer, "model", None)
        current = getattr(model, "version", None) or getattr(scorer, "version", None)
        if active is not None and current != active:
            ctx.scorer = load_default_scorer(self.registry.active_dir(), encoder=self.encoder)
