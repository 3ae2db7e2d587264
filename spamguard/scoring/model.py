"""A model directory (config.json + plain arrays) and the `HeadScorer` that runs it.

Over 600 lines on purpose: the directory's format (`save_model`, `load_model`, and the legacy
layouts it still reads) and the scorer that reads it are one contract about one `HeadModel`;
split, every change of the format would have to be made twice in step.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spamguard.digest import file_sha256
from spamguard.errors import ModelError
from spamguard.message import Message
from spamguard.metrics import Recorder
from spamguard.scoring.base import Evidence, Neighbour, Score
from spamguard.scoring.features import (
    HAND_FEATURES,
    LEGACY_HAND_FEATURES,
    LEGACY_SENDER_FEATURES,
    SENDER_FEATURES,
    FeatureConfig,
    feature_description,
    select_names,
)
from spamguard.scoring.head import BLOCKS, CompactWeights, Featurizer, LogisticHead
from spamguard.scoring.rules import gtube_score
from spamguard.scoring.termhash import HashedTerms
from spamguard.scoring.views import ViewConfig, flatten, message_views
from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD

__all__ = [
    "FORMAT",
    "HeadModel",
    "HeadScorer",
    "check_model_target",
    "default_model_dir",
    "load_model",
    "load_scorer",
    "save_model",
]

FORMAT = 1
# A design-matrix row and what names its columns: (message or view, matrix, its named terms,
# row index in that matrix).
_Row = tuple[Message, Any, dict[str, HashedTerms], int]
CONFIG = "config.json"
HEAD = "head.npz"
NEIGHBOURS = "neighbours.npz"
NEIGHBOUR_INFO = "neighbours.json"


def default_model_dir() -> Path:
    """The shipped default head (inside the installed `spamguard_models` package)."""
    from spamguard_models import DEFAULT_MODEL_DIR

    return Path(DEFAULT_MODEL_DIR)


@dataclass
class HeadModel:
    """Everything a model directory holds, in memory."""

    featurizer: Featurizer
    head: LogisticHead
    version: str
    encoder: dict[str, str] | None = None
    thresholds: dict[str, float] = field(
        default_factory=lambda: {"move": DEFAULT_MOVE_THRESHOLD, "flag": DEFAULT_FLAG_THRESHOLD}
    )
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # Labelled training messages for "looks like these" explanations.
    neighbour_vectors: np.ndarray | None = None
    neighbour_labels: np.ndarray | None = None
    neighbour_subjects: list[str] = field(default_factory=list)
    neighbour_refs: list[str] = field(default_factory=list)
    # Calibrated out-of-fold probabilities of the training messages (set by training, not
    # saved): what `spamguard cascade fit` chooses band edges on.
    oof_p: np.ndarray | None = None
    # How scoring also reads the message's most spam-like part (padding-proof scoring).
    views: ViewConfig = field(default_factory=ViewConfig)

    @property
    def needs_encoder(self) -> bool:
        return self.featurizer.uses_embedding or self.neighbour_vectors is not None


def _is_model_dir(path: Path) -> bool:
    """Whether ``path`` holds a SpamGuard model (its config.json names a format and a head)."""
    try:
        config = json.loads((path / CONFIG).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "format" in config and "head" in config


def check_model_target(out_dir: Path) -> None:
    """Refuse a destination that holds anything but a SpamGuard model.

    `save_model` replaces the whole folder, so writing a model into ``~`` or a folder of
    documents would delete them. Empty or missing folders and older models are fine.
    """
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():
        raise ModelError(f"{out_dir} is a file, not a model folder; choose a new folder for --out")
    if out_dir.is_symlink():
        raise ModelError(
            f"{out_dir} is a symbolic link; give the folder it points to, or a new one"
        )
    try:
        empty = not any(out_dir.iterdir())
    except OSError as exc:
        raise ModelError(f"cannot read {out_dir} ({exc.strerror}); choose another --out") from None
    if not empty and not _is_model_dir(out_dir):
        raise ModelError(
            f"{out_dir} is not empty and is not a SpamGuard model; writing a model replaces "
            "the whole folder, so give a new or empty folder for --out"
        )


def save_model(model: HeadModel, out_dir: Path) -> Path:
    """Write ``model`` to ``out_dir`` atomically (a temp dir renamed into place).

    ``out_dir`` must be missing, empty or an older model (`check_model_target`): the folder
    is replaced as a whole, and nothing that is not a model is ever deleted.
    """
    out_dir = Path(out_dir)
    check_model_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-model-", dir=out_dir.parent))
    coef = model.head.coef_
    nz = np.flatnonzero(np.abs(coef) > 1e-6)
    np.savez_compressed(
        tmp / HEAD,
        coef_index=nz.astype(np.int32),
        coef_value=coef[nz].astype(np.float32),
        n_columns=np.asarray([coef.shape[0]], dtype=np.int64),
    )
    files = [HEAD]
    if model.neighbour_vectors is not None and model.neighbour_labels is not None:
        np.savez_compressed(
            tmp / NEIGHBOURS,
            vectors=model.neighbour_vectors.astype(np.float16),
            labels=model.neighbour_labels.astype(np.int8),
        )
        (tmp / NEIGHBOUR_INFO).write_text(
            json.dumps({"subjects": model.neighbour_subjects, "refs": model.neighbour_refs}),
            encoding="utf-8",
        )
        files += [NEIGHBOURS, NEIGHBOUR_INFO]
    config = {
        "format": FORMAT,
        "version": model.version,
        "encoder": model.encoder,
        "features": model.featurizer.config.to_json(),
        "blocks": model.featurizer.weights,
        "hand_features": list(model.featurizer.hand_names),
        "sender_features": list(model.featurizer.sender_names),
        "head": {
            "kind": "logistic",
            "C": model.head.C,
            "intercept": model.head.intercept_,
            "calibration": {
                "method": "platt",
                "a": model.head.platt_[0],
                "b": model.head.platt_[1],
            },
        },
        "thresholds": model.thresholds,
        "views": model.views.to_json(),
        "training": model.training,
        "metrics": model.metrics,
        "files": {name: file_sha256(tmp / name) for name in files},
    }
    (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n", "utf-8")
    if out_dir.exists():
        # A fresh name: whatever else sits next to the model (a folder "DIR.old" of the
        # user's own, say) is never touched.
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        _rmtree(old)
    else:
        os.replace(tmp, out_dir)
    return out_dir


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def load_model(model_dir: Path | str, *, compact: bool = False) -> HeadModel:
    """Read a model directory, checking every file's sha256 against config.json.

    ``compact``: keep the head's weights as their non-zero entries (`CompactWeights`; what
    a scorer needs, ~50 MB less for the shipped cascade) rather than the dense vector that
    training and warm starts work on."""
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG
    if not config_path.is_file():
        raise ModelError(
            f"no model at {model_dir}: {CONFIG} is missing. Train one with "
            "`spamguard train`, or leave out --model to use the shipped default."
        )
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{config_path} is not valid JSON ({exc}); retrain or reinstall") from exc
    if config.get("format") != FORMAT:
        raise ModelError(
            f"{model_dir} is model format {config.get('format')!r}; this SpamGuard reads "
            f"format {FORMAT}. Retrain it with `spamguard train`."
        )
    for name, digest in (config.get("files") or {}).items():
        path = model_dir / name
        if not path.is_file() or file_sha256(path) != digest:
            raise ModelError(
                f"model file {path} is missing or corrupt (sha256 mismatch); reinstall "
                "SpamGuard or retrain this model"
            )
    try:
        featurizer = Featurizer(
            config=FeatureConfig.from_json(config["features"]),
            weights={k: float(v) for k, v in config["blocks"].items() if k in BLOCKS},
            # By the names the model was trained with: newer signals stay out of older models.
            hand_names=select_names(
                HAND_FEATURES, config.get("hand_features", LEGACY_HAND_FEATURES), "hand"
            ),
            sender_names=select_names(
                SENDER_FEATURES, config.get("sender_features", LEGACY_SENDER_FEATURES), "sender"
            ),
        )
        head_cfg = config["head"]
        with np.load(model_dir / HEAD) as arrays:
            size = int(arrays["n_columns"][0])
            coef: np.ndarray | CompactWeights
            if compact:
                coef = CompactWeights(arrays["coef_index"], arrays["coef_value"], size)
            else:
                coef = np.zeros(size, dtype=np.float64)
                coef[arrays["coef_index"]] = arrays["coef_value"]
        if coef.shape[0] != featurizer.n_columns:
            raise ModelError(f"{model_dir}: weights do not match the feature blocks; retrain")
        calib = head_cfg["calibration"]
        head = LogisticHead(
            C=float(head_cfg.get("C", 1.0)),
            coef_=coef,
            intercept_=float(head_cfg["intercept"]),
            platt_=(float(calib["a"]), float(calib["b"])),
        )
        model = HeadModel(
            featurizer=featurizer,
            head=head,
            version=str(config["version"]),
            encoder=config.get("encoder"),
            thresholds={k: float(v) for k, v in config.get("thresholds", {}).items()},
            training=config.get("training", {}),
            metrics=config.get("metrics", {}),
            # Models saved before views existed read them as the shipped default does.
            views=ViewConfig.from_json(config.get("views")),
        )
        if (model_dir / NEIGHBOURS).is_file():
            with np.load(model_dir / NEIGHBOURS) as arrays:
                model.neighbour_vectors = arrays["vectors"].astype(np.float32)
                model.neighbour_labels = arrays["labels"].astype(np.int8)
            info = json.loads((model_dir / NEIGHBOUR_INFO).read_text("utf-8"))
            model.neighbour_subjects = list(info["subjects"])
            model.neighbour_refs = list(info["refs"])
    except ModelError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise ModelError(f"{model_dir} is not a valid SpamGuard model ({exc}); retrain") from exc
    return model


class _Unset:
    """The type of `UNSET`: no sentence vectors were given to `HeadScorer.score`."""


UNSET = _Unset()


class SharedEmbedding:
    """A batch's sentence vectors (`HeadScorer.embedding`), computed one message at a time by
    whichever threads call `work`.

    The first sync hands `work` to the encoder's thread and goes on parsing the next batch;
    when it needs the vectors, `result` takes the messages nobody has started yet itself
    instead of waiting (onnxruntime leaves the GIL and its session may be run from several
    threads at once), so the encoder gets both cores whenever the caller has nothing else
    to do. The int8 encoder reads one text per call anyway (`HeadScorer.embed`: a vector
    depends on its message alone), so which thread encodes a message changes nothing; other
    encoders batch texts together, and there the batch stays one piece of work.
    """

    def __init__(self, scorer: HeadScorer, messages: Sequence[Message]) -> None:
        self._scorer = scorer
        self._rest = [m for m in messages if gtube_score(m, scorer.version, scorer.stage) is None]
        model = scorer.model
        wants_neighbours = scorer.n_neighbours > 0 and model.neighbour_vectors is not None
        self._needed = bool(self._rest) and (model.featurizer.uses_embedding or wants_neighbours)
        if not self._needed:
            self._pieces: list[Sequence[Message]] = []
        elif scorer._encoder_kind == "int8":
            self._pieces = [[m] for m in self._rest]
        else:
            self._pieces = [self._rest]
        self._vectors: list[np.ndarray | None] = [None] * len(self._pieces)
        self._done = threading.Condition()
        self._claimed = 0  # pieces some thread has taken
        self._finished = 0  # pieces done (or failed)
        self._error: BaseException | None = None

    def work(self) -> None:
        """Encode pieces nobody has taken until none is left (or one failed)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        worked = False
        while True:
            with self._done:
                if self._error is not None or self._claimed == len(self._pieces):
                    break
                k = self._claimed
                self._claimed += 1
            worked = True
            try:
                vectors = self._scorer.embed(self._pieces[k])
            except BaseException as exc:
                with self._done:
                    self._error = self._error or exc
                    self._finished += 1
                    self._done.notify_all()
                break
            with self._done:
                self._vectors[k] = vectors
                self._finished += 1
                if self._finished == len(self._pieces):
                    self._done.notify_all()
        if worked:
            # What a thread spent here, counted once, by the thread that spent it.
            self._scorer.recorder.record(
                self._scorer.stage,
                self._scorer.version,
                messages=0,
                wall_seconds=time.perf_counter() - t0,
                cpu_seconds=time.thread_time() - c0,
            )

    def result(self) -> np.ndarray | None:
        """The vectors, once every piece is done: this thread encodes what nobody has taken
        yet, then waits for the pieces other threads are still on. Raises what encoding
        raised, in whichever thread it failed."""
        self.work()
        with self._done:
            while self._finished < self._claimed:
                self._done.wait()
            if self._error is not None:
                raise self._error
        if not self._needed:
            return None
        parts = [v for v in self._vectors if v is not None]
        assert len(parts) == len(self._pieces)
        return np.asarray(np.concatenate(parts), dtype=np.float32)


class HeadScorer:
    """Scores messages with a head model (and the sentence encoder when it needs one).

    The encoder is loaded on first use and can be injected (tests, benchmarks).
    """

    def __init__(
        self,
        model: HeadModel,
        *,
        encoder: Any = None,
        encoder_kind: Literal["int8", "fp32", "torch"] | None = None,
        top_evidence: int = 6,
        neighbours: int = 3,
        stage: str = "head",
    ) -> None:
        self.model = model
        self._encoder = encoder
        self._encoder_kind = encoder_kind or _encoder_kind(model.encoder)
        self.top_evidence = top_evidence
        self.n_neighbours = neighbours
        self.stage = stage
        self.encoder_threads: int | None = None  # None: the encoder's default (all cores)
        # The encoder may be asked for from a pipeline's thread and the caller's at once.
        self._encoder_lock = threading.Lock()

        self.recorder = Recorder()  # what scoring cost, for the app's counters

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def encoder(self) -> Any:
        with self._encoder_lock:
            if self._encoder is None:
                from spamguard.scoring.encoder import load_encoder

                self._encoder = load_encoder(self._encoder_kind, threads=self.encoder_threads)
            return self._encoder

    def embed(self, messages: Sequence[Message]) -> np.ndarray | None:
        wants_neighbours = self.n_neighbours > 0 and self.model.neighbour_vectors is not None
        if not messages or not (self.model.featurizer.uses_embedding or wants_neighbours):
            return None
        texts = [self.model.featurizer.encoder_input(m) for m in messages]
        # int8 dynamic quantisation scales activations per batch, so a message's vector
        # would depend on its batch-mates; one text per call makes a score a function of
        # the message alone (streaming = backlog, and the score cache stays valid).
        batch = 1 if self._encoder_kind == "int8" else 32
        return np.asarray(self.encoder.encode(texts, batch_size=batch), dtype=np.float32)

    def decision(self, messages: Sequence[Message], embeddings: np.ndarray | None = None) -> Any:
        return self.model.head.decision_function(
            self.model.featurizer.transform(messages, embeddings)
        )

    def embedding(self, messages: Sequence[Message]) -> SharedEmbedding:
        """The sentence vectors `score` computes for ``messages`` (of those no rule decides),
        as work any number of threads can share: hand its `work` to another thread while
        this one does something else, and pass its `result` to `score` as ``embeddings``.
        Each message's vector depends on it alone (`embed`), so wherever it is computed it
        is the same."""
        return SharedEmbedding(self, messages)

    def score(
        self, messages: Sequence[Message], *, embeddings: np.ndarray | _Unset | None = UNSET
    ) -> list[Score]:
        """One score per message. ``embeddings``: what `embedding(messages).result()` gave
        (computed ahead, elsewhere); left out, they are computed here."""
        if not messages:
            return []
        with self.recorder.timed(self.stage, self.version, len(messages)):
            # Deterministic rules first (the GTUBE test line): the model never sees those.
            ruled = [gtube_score(m, self.version, self.stage) for m in messages]
            rest = [m for m, r in zip(messages, ruled, strict=True) if r is None]
            if isinstance(embeddings, _Unset):
                embeddings = self.embed(rest)
            modelled = iter(self._score(rest, embeddings) if rest else [])
            scores = [r if r is not None else next(modelled) for r in ruled]
        self.recorder.add_decided(self.stage, self.version, len(scores))
        return scores

    def _score(self, messages: Sequence[Message], embeddings: np.ndarray | None) -> list[Score]:
        X, named = self.model.featurizer.transform_named(messages, embeddings)
        # The weights at every entry of the batch's matrix come with the decision, from one
        # look-up (a message's evidence reads its slice; a view's rows are looked up anew).
        decision, weights = self.model.head.decision_and_weights(X)
        # What each message's evidence is read from: itself, or the view that decided.
        rows: list[_Row] = [(m, X, named, i) for i, m in enumerate(messages)]
        lifted = self._views(messages, embeddings, decision, rows)
        probs = self.model.head.calibrate(decision)
        scores: list[Score] = []
        offsets = self.model.featurizer.offsets()
        for i in range(len(messages)):
            msg, M, names, r = rows[i]
            lo, hi = M.indptr[r], M.indptr[r + 1]
            at = weights[lo:hi] if M is X else None
            evidence = (
                self._evidence(msg, M.indices[lo:hi], M.data[lo:hi], names, r, offsets, at)
                if self.top_evidence
                else ()
            )
            if i in lifted:
                evidence = _with_view(evidence, *lifted[i], self.top_evidence)
            neighbours = (
                self._neighbours(embeddings[i])
                if embeddings is not None and self.n_neighbours
                else ()
            )
            scores.append(
                Score(
                    p_spam=float(probs[i]),
                    stage=self.stage,
                    model_version=self.version,
                    evidence=evidence,
                    neighbours=neighbours,
                )
            )
        return scores

    def _views(
        self,
        messages: Sequence[Message],
        embeddings: np.ndarray | None,
        decision: np.ndarray,
        rows: list[_Row],
    ) -> dict[int, tuple[str, float]]:
        """Lift each message's log-odds towards its most spam-like view's (`views`), in place.

        Returns, for each message a view lifted, the view's name and how much it added;
        ``rows`` then holds the view and its features (what the evidence is read from).
        """
        cfg = self.model.views
        if not cfg.enabled:
            return {}
        per = [message_views(m, cfg) for m in messages]
        flat, owner = flatten(per)
        if not flat:
            return {}
        names = [name for views in per for name, _ in views]
        featurizer, head = self.model.featurizer, self.model.head
        # Every view first reads the whole message's sentence vector (no encoder call) ...
        emb = embeddings[np.asarray(owner)] if embeddings is not None else None
        Xv, named_v = featurizer.transform_named(flat, emb)
        margins = np.asarray([cfg.margin(name) for name in names])
        dv = head.decision_function(Xv) - margins
        best: dict[int, int] = {}
        for j, i in enumerate(owner):
            if dv[j] > decision[i] and (i not in best or dv[j] > dv[best[i]]):
                best[i] = j
        own_rows: dict[int, _Row] = {}
        if embeddings is not None and featurizer.uses_embedding and cfg.own_embedding and best:
            # ... then the most spam-like one is scored with its own: padding and an innocent
            # subject colour the whole message's vector too. Unless the encoder reads the same
            # of both (what it leaves out lies past the tokens it reads: a quote at the end of
            # a long reply), when the message's vector is the view's own. One text a call
            # (int8): a vector is then a function of the tokens alone.
            same = getattr(self.encoder, "reads_same", None)
            if self._encoder_kind != "int8" or not callable(same):
                same = str.__eq__
            redo = [
                j
                for i, j in best.items()
                if not same(
                    featurizer.encoder_input(flat[j]), featurizer.encoder_input(messages[i])
                )
            ]
            if redo:
                own = self.embed([flat[j] for j in redo])
                Xr, named_r = featurizer.transform_named([flat[j] for j in redo], own)
                dr = head.decision_function(Xr) - margins[redo]
                for k, j in enumerate(redo):
                    own_rows[j] = (flat[j], Xr, named_r, k)
                    dv[j] = dr[k]
        lifted: dict[int, tuple[str, float]] = {}
        for i, j in best.items():
            if dv[j] > decision[i] and cfg.lift_weight > 0:
                gain = cfg.lift_weight * float(dv[j] - decision[i])
                lifted[i] = (names[j], gain)
                decision[i] += gain
                rows[i] = own_rows.get(j, (flat[j], Xv, named_v, j))
        return lifted

    def _evidence(
        self,
        msg: Message,
        cols: np.ndarray,
        data: np.ndarray,
        named: dict[str, HashedTerms],
        row: int,
        offsets: dict[str, tuple[int, int]],
        weights: np.ndarray | None = None,
    ) -> tuple[Evidence, ...]:
        """The strongest pushes of one row of the design matrix (its columns and values),
        named from the terms the featurizer kept for row ``row`` of the batch. ``weights``:
        the head's weights at ``cols``, when the caller has them."""
        featurizer = self.model.featurizer
        pushed = data * (self.model.head.coef_[cols] if weights is None else weights)
        if "tokens" in offsets:
            cols, pushed = _fold_tokens(cols, pushed, offsets, featurizer.config.n_features)
        # Blocks of many tiny pushes (the embedding's dimensions, character n-grams) mean
        # nothing one by one to a person: each is shown as one total. Naming them term by
        # term would also cost more than scoring the message did.
        totals: dict[str, float] = {}
        for block in _SUMMED_BLOCKS:
            if block in offsets:
                lo, hi = offsets[block]
                inside = (cols >= lo) & (cols < hi)
                totals[block] = float(pushed[inside].sum())
                cols, pushed = cols[~inside], pushed[~inside]
        # The strongest few, with room for terms the explanation leaves out.
        k = min(self.top_evidence * 3, len(pushed))
        order = np.argpartition(-np.abs(pushed), k - 1)[:k] if k else np.zeros(0, int)
        order = order[np.argsort(-np.abs(pushed[order]), kind="stable")]
        top = list(zip(cols[order].tolist(), pushed[order].tolist(), strict=True))
        wanted = [c for c, _ in top]
        names = featurizer.column_names(msg, wanted, named, row, offsets) if top else {}
        hand = offsets.get("hand")
        sender = offsets.get("sender")
        out: list[Evidence] = []
        seen: set[str] = set()
        for col, weight in top:
            if hand and hand[0] <= col < hand[1]:
                key = featurizer.hand_names[col - hand[0]]
                feature, detail = f"signal:{key}", feature_description(key)
            elif sender and sender[0] <= col < sender[1]:
                key = featurizer.sender_names[col - sender[0]]
                feature, detail = f"sender:{key}", feature_description(key)
            elif col in names:
                block, term = names[col]
                if term in _UNINFORMATIVE_TERMS:
                    continue
                feature, detail = _describe_term(block, term)
            else:
                continue
            if feature in seen:
                continue
            seen.add(feature)
            out.append(Evidence(feature=feature, weight=weight, detail=detail))
            if len(out) >= self.top_evidence:
                break
        for block, total in totals.items():
            if abs(total) > 0.05:
                out.append(Evidence(feature=block, weight=total, detail=_SUMMED_BLOCKS[block]))
        out.sort(key=lambda e: -abs(e.weight))
        return tuple(out[: self.top_evidence])

    def _neighbours(self, vector: np.ndarray) -> tuple[Neighbour, ...]:
        vectors = self.model.neighbour_vectors
        labels = self.model.neighbour_labels
        if vectors is None or labels is None or not len(vectors):
            return ()
        sims = vectors @ vector.astype(np.float32)
        k = min(self.n_neighbours, len(sims))
        idx = np.argpartition(-sims, k - 1)[:k]
        idx = idx[np.argsort(-sims[idx])]
        return tuple(
            Neighbour(
                label="spam" if labels[i] else "ham",
                similarity=float(sims[i]),
                subject=self.model.neighbour_subjects[i],
                ref=self.model.neighbour_refs[i],
            )
            for i in idx
        )


_VIEW_DETAIL = {
    "opening": "its opening alone reads as spam; what follows it looks like padding",
    "trimmed": "without its last paragraphs it reads as spam; they look like padding",
    "body": "without its subject it reads as spam; the subject looks chosen to mislead",
    "body-foreign": "without its subject it reads as spam; the long subject has nothing to do "
    "with the text",
    "unpadded": "without its runs of links it reads as spam; they look like padding",
    "inner": "without its longest paragraph it reads as spam; that paragraph looks like padding",
}


def _with_view(
    evidence: tuple[Evidence, ...], view: str, gain: float, limit: int
) -> tuple[Evidence, ...]:
    """The evidence of the view that decided, and the view itself as one more item."""
    kind = view if view in _VIEW_DETAIL else view.split("-", 1)[0]
    item = Evidence(feature=f"view:{view}", weight=gain, detail=_VIEW_DETAIL[kind])
    out = sorted((*evidence, item), key=lambda e: -abs(e.weight))
    return tuple(out[: max(limit, 1)])


def _fold_tokens(
    cols: np.ndarray, pushed: np.ndarray, offsets: dict[str, tuple[int, int]], n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add each term's naive-Bayes push (tokens block) to the same term's column in the
    words or headers block, so a term is explained once with its whole weight."""
    t0, _ = offsets["tokens"]
    targets = cols.copy()
    for i, block in enumerate(("words", "headers")):
        if block not in offsets:
            continue
        lo = t0 + i * n_features
        inside = (cols >= lo) & (cols < lo + n_features)
        targets[inside] = offsets[block][0] + (cols[inside] - lo)
    merged, where = np.unique(targets, return_inverse=True)
    sums = np.zeros(len(merged))
    np.add.at(sums, where, pushed)
    return merged, sums


_SUMMED_BLOCKS = {
    # Short: the app shows these beside a bar in a narrow pane.
    "embedding": "overall meaning of the opening",
    "chars": "letter patterns, all together",
}

# Presence of a header nearly every message has: it carries weight (much like the
# intercept) but tells a person nothing, so explanations leave it out. The score keeps it.
_UNINFORMATIVE_TERMS = frozenset(
    f"hn:{name}" for name in ("subject", "from", "to", "mime-version", "content-type")
)


def _describe_term(block: str, term: str) -> tuple[str, str]:
    if block == "words":
        kind, _, text = term.partition(":")
        where = "subject" if kind == "s" else "text"
        return f"{where}:{text}", f"'{text}' in the {where}"
    kind, _, rest = term.partition(":")
    if kind == "hn":
        return term, f"has a {rest.title()} header"
    if kind == "h":
        name, _, token = rest.partition(":")
        return term, f"'{token}' in the {name.title()} header"
    labels = {
        "fromdom": "sender domain",
        "fromtld": "sender top-level domain",
        "url": "link to",
        "urlbase": "link to",
        "urltld": "link top-level domain",
        "att": "attachment type",
        "attext": "attachment file type",
    }
    return term, f"{labels.get(kind, kind)} {rest}"


def _encoder_kind(encoder: dict[str, str] | None) -> Literal["int8", "fp32", "torch"]:
    quant = (encoder or {}).get("quantization", "int8")
    if quant == "fp32":
        return "fp32"
    if quant == "torch":
        return "torch"
    return "int8"


def load_scorer(
    model_dir: Path | str | None = None,
    *,
    encoder: Any = None,
    encoder_kind: Literal["int8", "fp32", "torch"] | None = None,
) -> HeadScorer:
    """A scorer over ``model_dir`` (default: the shipped default model; the user's promoted
    personal version is the registry's to name, see `spamguard.engine.runtime`)."""
    if model_dir is None:
        model_dir = default_model_dir()
    return HeadScorer(
        load_model(model_dir, compact=True), encoder=encoder, encoder_kind=encoder_kind
    )
