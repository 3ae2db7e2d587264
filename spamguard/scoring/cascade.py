"""The inference cascade: a cheap stage decides clear cases, later stages only the uncertain band.

Stage 0 is the head without the sentence encoder (hashed words, headers, characters, hand
signals); stage 1 the full head (encoder + neighbours); stage 2, optional, the LLM. A
message goes on to the next stage only while its score lies strictly inside the current
stage's band. Band edges are chosen on cross-validated train-split scores (`choose_band`)
so that the cascade ranks mail as well as always running the full head; a message that looks
padded is not decided as ham before a stage that reads padding-proof views unless the cheap
stage finds the views that stage would read clearly legitimate too (`Cascade._deferred`,
`Band.padded_ham_at_or_below`). Every
`Score` says which stage decided it, and a failing later stage (missing model, dead server)
falls back to the last good score instead of blocking mail handling.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from spamguard.errors import SpamGuardError
from spamguard.message import Message
from spamguard.metrics import Recorder
from spamguard.scoring.base import Score, Scorer
from spamguard.scoring.cache import ScoreCache
from spamguard.scoring.model import HeadScorer, SharedEmbedding
from spamguard.scoring.views import ViewConfig, flatten, message_views

__all__ = [
    "Band",
    "Cascade",
    "Stacker",
    "choose_band",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Band:
    """A stage decides a message when its score is at or below ``ham_at_or_below`` or at or
    above ``spam_at_or_above``; anything strictly between goes on to the next stage.

    A message the next stage would read a padding-proof view of (`Cascade._deferred`) is
    decided as ham only when each such view, scored by this stage, is at or below
    ``padded_ham_at_or_below`` as well; None: never (it always goes on)."""

    ham_at_or_below: float
    spam_at_or_above: float
    padded_ham_at_or_below: float | None = None

    def decides(self, p: float) -> bool:
        return p <= self.ham_at_or_below or p >= self.spam_at_or_above

    def to_json(self) -> dict[str, float]:
        out = {"ham_at_or_below": self.ham_at_or_below, "spam_at_or_above": self.spam_at_or_above}
        if self.padded_ham_at_or_below is not None:
            out["padded_ham_at_or_below"] = self.padded_ham_at_or_below
        return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Stacker:
    """p = sigmoid(w_head * logit(p_head) + w_llm * llm_logodds + bias), fitted on train CV.

    Used for the LLM stage only when it beat the head alone in cross-validation.
    """

    w_head: float
    w_llm: float
    bias: float

    def __call__(self, p_head: float, llm_logodds: float) -> float:
        z = self.w_head * float(_logit(np.asarray([p_head]))[0]) + self.w_llm * llm_logodds
        z += self.bias
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))

    @classmethod
    def fit(cls, p_head: np.ndarray, llm_logodds: np.ndarray, y: np.ndarray) -> Stacker:
        from sklearn.linear_model import LogisticRegression

        X = np.column_stack([_logit(p_head), llm_logodds])
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(X, y.astype(int))
        return cls(float(lr.coef_[0, 0]), float(lr.coef_[0, 1]), float(lr.intercept_[0]))


@dataclass
class _Pending:
    """A batch on its way through the cascade: scores so far, the next stage's messages."""

    messages: Sequence[Message]
    version: str
    out: list[Score | None]
    previous: dict[int, Score]
    pending: list[int] = field(default_factory=list)
    # The second stage's sentence vectors, being computed in another thread (`begin`); the
    # caller's thread helps with what is left when it asks for them.
    vectors: SharedEmbedding | None = None


class Cascade:
    """A `Scorer` running ``stages`` in order, each deciding what falls outside its band.

    ``bands[i]`` belongs to ``stages[i]``; the last stage decides everything that reaches it
    (so ``len(bands) == len(stages) - 1``). ``names`` label the stages in scores and counters.
    ``stacker`` (optional) combines the last head score with an LLM last stage's log-odds;
    without one, an LLM stage adds evidence but leaves the head's probability as it is.
    """

    def __init__(
        self,
        stages: Sequence[Scorer],
        bands: Sequence[Band],
        *,
        names: Sequence[str] | None = None,
        stacker: Stacker | None = None,
        cache: ScoreCache | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        if len(bands) != len(stages) - 1:
            raise ValueError("give one band per stage except the last")
        self.stages = list(stages)
        self.bands = list(bands)
        self.names = list(names or [f"stage{i}" for i in range(len(stages))])
        self.stacker = stacker
        self.cache = cache
        self.recorder = recorder or Recorder()
        self.errors: list[str] = []

    @property
    def version(self) -> str:
        bands = ";".join(
            f"{b.ham_at_or_below:.6g},{b.spam_at_or_above:.6g}"
            + ("" if b.padded_ham_at_or_below is None else f",{b.padded_ham_at_or_below:.6g}")
            for b in self.bands
        )
        inner = "+".join(s.version for s in self.stages)
        return f"cascade({inner}|{bands}{'|stacked' if self.stacker else ''})"

    @property
    def model(self) -> Any:
        """The model of the last head stage: its thresholds are the cascade's."""
        for stage in reversed(self.stages):
            if hasattr(stage, "model"):
                return stage.model
        raise AttributeError("no stage of this cascade has a model")

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "stages": [
                {"name": n, "model_version": s.version}
                for n, s in zip(self.names, self.stages, strict=True)
            ],
            "bands": [b.to_json() for b in self.bands],
            "stacked": self.stacker is not None,
        }

    def score(self, messages: Sequence[Message]) -> list[Score]:
        if not messages:
            return []
        return self._finish(self._start(messages))

    def score_batches(self, batches: Iterable[Sequence[Message]]) -> Iterator[list[Score]]:
        """`score` of each batch, in order, with one batch's sentence encoder overlapping
        the next batch's first stage.

        Each batch is started with `begin`: its stage-1 messages' vectors are computed in a
        second thread (the encoder leaves the GIL) while this thread reads the next batch
        (whatever the caller does to make it, such as parsing) and runs stage 0 on it; then
        the batch is finished here. Scores are those `score` gives.
        """
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="cascade-encoder") as encoder:
            waiting: Callable[[], list[Score]] | None = None
            for messages in batches:
                started = self.begin(messages, encoder)
                if waiting is not None:
                    yield waiting()
                waiting = started
            if waiting is not None:
                yield waiting()

    def begin(
        self, messages: Sequence[Message], background: Executor | None = None
    ) -> Callable[[], list[Score]]:
        """`score` in two halves: the cache and the first stage now, the later stages when
        the returned function is called (by the caller's thread: a stage's Python parts stay
        on it, so nothing but the encoder runs beside it).

        With ``background``, the sentence vectors the second stage reads are computed there
        in between, so the caller can parse the next batch and run the first stage on it
        while the encoder (which leaves the GIL) works on this one: the engine's first sync
        does (`AccountWorker._pipeline`). Each message's vector depends on that message
        alone, so the scores are `score`'s. When the returned function is called before the
        encoder is done, the caller's thread encodes the batch's remaining messages itself
        beside the encoder's thread (`SharedEmbedding`) instead of waiting for it.
        """
        if not messages:
            return list
        work = self._start(messages)
        second = self.stages[1] if len(self.stages) > 1 else None
        if background is not None and work.pending and isinstance(second, HeadScorer):
            batch = [messages[i] for i in work.pending]
            work.vectors = second.embedding(batch)
            background.submit(work.vectors.work)
        return functools.partial(self._finish, work)

    def _start(self, messages: Sequence[Message]) -> _Pending:
        """The cache and the first stage: what the later stages (`_finish`) take over."""
        work = _Pending(messages, self.version, [None] * len(messages), {})
        pending = list(range(len(messages)))
        if self.cache is not None:
            hits = 0
            for i, m in enumerate(messages):
                cached = self.cache.get(m.content_hash, work.version)
                if cached is not None:
                    work.out[i] = cached
                    hits += 1
            pending = [i for i in pending if work.out[i] is None]
            if hits:
                self.recorder.record(
                    "cache",
                    work.version,
                    messages=0,
                    wall_seconds=0.0,
                    cpu_seconds=0.0,
                    cache_hits=hits,
                )
        work.pending = self._run_stage(0, work, pending)
        return work

    def _finish(self, work: _Pending) -> list[Score]:
        """The later stages on what the first left undecided, then the cache."""
        pending = work.pending
        for k in range(1, len(self.stages)):
            if not pending:
                break
            pending = self._run_stage(k, work, pending)
        final = [s for s in work.out if s is not None]
        assert len(final) == len(work.messages)
        if self.cache is not None:
            for m, s in zip(work.messages, final, strict=True):
                self.cache.put(m.content_hash, work.version, s)
        return final

    def _run_stage(self, k: int, work: _Pending, pending: list[int]) -> list[int]:
        """Stage ``k`` on the ``pending`` messages; returns those it left to the next stage."""
        if not pending:
            return []
        stage, name = self.stages[k], self.names[k]
        previous = work.previous
        batch = [work.messages[i] for i in pending]
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if k == 1 and work.vectors is not None and isinstance(stage, HeadScorer):
                scores = stage.score(batch, embeddings=work.vectors.result())
            else:
                scores = stage.score(batch)
        except (SpamGuardError, OSError, TimeoutError, RuntimeError) as exc:
            # A later stage failing (missing model, dead server) must never stop mail
            # handling: the previous stage's score stands.
            if k == 0:
                raise
            self.errors.append(f"{name}: {exc}")
            log.warning("cascade stage %s failed, keeping earlier scores: %s", name, exc)
            self.recorder.record(
                name,
                stage.version,
                messages=0,
                wall_seconds=time.perf_counter() - t0,
                cpu_seconds=time.process_time() - c0,
                fallbacks=len(pending),
            )
            for i in pending:
                work.out[i] = previous[i]
            return []
        last = k == len(self.stages) - 1
        merged = [
            self._merge(k, previous.get(i), s, name) for i, s in zip(pending, scores, strict=True)
        ]
        deferred = (
            set()
            if last
            else self._deferred(
                k,
                [
                    (i, work.messages[i])
                    for i, s in zip(pending, merged, strict=True)
                    if s.p_spam <= self.bands[k].ham_at_or_below
                ],
            )
        )
        next_pending: list[int] = []
        decided = 0
        for i, s in zip(pending, merged, strict=True):
            if last or (self.bands[k].decides(s.p_spam) and i not in deferred):
                work.out[i] = s
                decided += 1
            else:
                previous[i] = s
                next_pending.append(i)
        self.recorder.record(
            name,
            stage.version,
            messages=len(pending),
            wall_seconds=time.perf_counter() - t0,
            cpu_seconds=time.process_time() - c0,
            decided=decided,
        )
        return next_pending

    def _deferred(self, k: int, hams: list[tuple[int, Message]]) -> set[int]:
        """Which of the messages stage ``k`` would call legitimate (index, message) it leaves
        to the next stage instead, because that one reads padding-proof views
        (`spamguard.scoring.views`, gated) and would read one of theirs: 50 links or a quoted
        newsletter appended to a spam must not be decided as ham by a stage that reads only
        the whole message.

        Stage ``k`` scores those views itself (about what scoring a message costs it, no
        encoder): a message is left to the next stage unless every one of its views, less
        the view's margin, is at or below the band's `Band.padded_ham_at_or_below` (without
        one, always). A list reply whose view without the quote is clearly legitimate too is
        decided here; a spam with padding appended, whose view without it reads as the spam,
        goes on. Mail with no view the next stage would read is decided here as before (it
        scores there as without views)."""
        model = getattr(self.stages[k + 1], "model", None)
        cfg = getattr(model, "views", None)
        if not hams or not isinstance(cfg, ViewConfig) or not (cfg.enabled and cfg.gated):
            return set()
        per = [message_views(m, cfg) for _, m in hams]
        flat, owner = flatten(per)
        padded = {hams[j][0] for j in owner}
        edge = self.bands[k].padded_ham_at_or_below
        if not flat or edge is None:
            return padded
        names = [view for views in per for view, _ in views]
        try:
            scores = self.stages[k].score(flat)
        except (SpamGuardError, OSError, TimeoutError, RuntimeError) as exc:
            # Views this stage cannot score are left to the stage that reads them.
            log.warning("cascade stage %s could not score views, deferring: %s", k, exc)
            return padded
        z_edge = float(_logit(np.asarray([edge]))[0])
        odds = _logit(np.asarray([s.p_spam for s in scores])) - [cfg.margin(n) for n in names]
        return {hams[j][0] for j, z in zip(owner, odds, strict=True) if z > z_edge}

    def _merge(self, k: int, before: Score | None, now: Score, name: str) -> Score:
        """The stage's score, labelled with the deciding stage; an LLM stage keeps the head's
        evidence (and is stacked with the head's probability when a stacker was fitted)."""
        if before is None or now.stage != "llm":
            return replace(now, stage=name)
        # Without a stacker fitted (and found useful) on train-split CV, the LLM only adds
        # its reading as evidence: an unproven model must not move a message.
        p = before.p_spam
        if self.stacker is not None and now.evidence:
            p = self.stacker(before.p_spam, now.evidence[0].weight)
        return Score(
            p_spam=p,
            stage=name,
            model_version=f"{before.model_version}+{now.model_version}",
            evidence=before.evidence + now.evidence,
            neighbours=before.neighbours,
        )

    def stage_shares(self) -> dict[str, float]:
        """Share of scored messages each stage decided (from the recorder)."""
        snap = self.recorder.snapshot()
        total = sum(r["decided"] for r in snap if r["stage"] in self.names)
        return {
            n: sum(r["decided"] for r in snap if r["stage"] == n) / total if total else 0.0
            for n in self.names
        }


# --------------------------------------------------------------------------- choosing bands


def cascade_probs(
    p_cheap: np.ndarray, p_full: np.ndarray, band: Band
) -> tuple[np.ndarray, np.ndarray]:
    """(cascade probabilities, mask of messages the cheap stage decided)."""
    decided = (p_cheap <= band.ham_at_or_below) | (p_cheap >= band.spam_at_or_above)
    return np.where(decided, p_cheap, p_full), decided


def choose_band(
    p_cheap: np.ndarray,
    p_full: np.ndarray,
    y: np.ndarray,
    *,
    auc_slack: float = 0.0002,
    grid: int = 60,
    groups: np.ndarray | None = None,
    move: float = 0.9,
    flag: float = 0.5,
) -> tuple[Band, dict[str, Any]]:
    """The widest decided share for the cheap stage whose cascade keeps, on these
    (cross-validated, train-split) scores, AUC within ``auc_slack`` of always running the
    full stage and recall at 0.1% and 1% FPR no lower.

    With ``groups`` (one label per message, e.g. the corpus it comes from) every group must
    keep those figures on its own, and no group may have more legitimate messages at or
    above ``flag`` or ``move`` than the full stage alone gives it: a cheap stage trained on
    one corpus must not buy its decided share on another corpus's mistakes.

    The slack is tighter than the acceptance test's 0.0005 to leave room for the train/test
    difference.
    """
    from spamguard.evaluate import auc, recall_at_fpr

    y = np.asarray(y, dtype=bool)
    if groups is None:
        names: list[Any] = [None]
        masks = [np.ones(len(y), dtype=bool)]
    else:
        g = np.asarray(groups)
        names = sorted(set(g.tolist()))
        masks = [g == name for name in names]

    def figures(p: np.ndarray, m: np.ndarray) -> tuple[float, float, float, int, int]:
        ym, pm = y[m], p[m]
        r01, _ = recall_at_fpr(ym, pm, 0.001)
        r1, _ = recall_at_fpr(ym, pm, 0.01)
        ham = pm[~ym]
        return auc(ym, pm), r01, r1, int((ham >= flag).sum()), int((ham >= move).sum())

    refs = [figures(p_full, m) for m in masks]
    ham_p = np.sort(p_cheap[~y])
    spam_p = np.sort(p_cheap[y])
    # Candidate edges: quantiles of the cheap scores of the class each edge decides.
    lows = np.unique(np.concatenate([[-1.0], np.quantile(ham_p, np.linspace(0, 1, grid))]))
    highs = np.unique(np.concatenate([[2.0], np.quantile(spam_p, np.linspace(0, 1, grid))]))
    best: tuple[float, Band, dict[str, Any]] | None = None
    for lo in lows:
        for hi in highs:
            if hi <= lo:
                continue
            band = Band(float(lo), float(hi))
            p, decided = cascade_probs(p_cheap, p_full, band)
            share = float(decided.mean())
            if best is not None and share <= best[0]:
                continue
            got = []
            for m, ref in zip(masks, refs, strict=True):
                f = figures(p, m)
                if not (
                    f[0] >= ref[0] - auc_slack
                    and f[1] >= ref[1]
                    and f[2] >= ref[2]
                    and (groups is None or (f[3] <= ref[3] and f[4] <= ref[4]))
                ):
                    break
                got.append(f)
            else:
                info: dict[str, Any] = {
                    "decided_share": share,
                    "auc": got[0][0],
                    "recall_at_0.1pct_fpr": got[0][1],
                    "recall_at_1pct_fpr": got[0][2],
                    "reference_auc": refs[0][0],
                    "reference_recall_at_0.1pct_fpr": refs[0][1],
                    "reference_recall_at_1pct_fpr": refs[0][2],
                }
                if groups is not None:
                    info["groups"] = {
                        str(name): {
                            "n": int(m.sum()),
                            "decided_share": float(decided[m].mean()),
                            "auc": f[0],
                            "recall_at_0.1pct_fpr": f[1],
                            "recall_at_1pct_fpr": f[2],
                            "ham_flagged": f[3],
                            "ham_moved": f[4],
                            "reference": {
                                "auc": r[0],
                                "recall_at_0.1pct_fpr": r[1],
                                "recall_at_1pct_fpr": r[2],
                                "ham_flagged": r[3],
                                "ham_moved": r[4],
                            },
                        }
                        for name, m, f, r in zip(names, masks, got, refs, strict=True)
                    }
                best = (share, band, info)
    if best is None:
        return Band(-1.0, 2.0), {"decided_share": 0.0}
    return best[1], best[2]


def save_bands(path: Any, bands: Sequence[Band], info: dict[str, Any]) -> None:
    from pathlib import Path

    Path(path).write_text(
        json.dumps({"bands": [b.to_json() for b in bands], "chosen_on": info}, indent=2) + "\n",
        "utf-8",
    )
