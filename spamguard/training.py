"""Fit a head model from labelled messages: features, cross-validated calibration, neighbours.

Training is a generator of `Progress` so the CLI draws a bar and the app a ring from the
same code, and either can stop it between steps.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spamguard.corpus import LabelledMessage, data_hash
from spamguard.errors import CorpusError
from spamguard.message import Message, parse_message
from spamguard.scoring.features import FeatureConfig, headerless_bytes
from spamguard.scoring.head import Featurizer, LogisticHead, platt_fit

__all__ = ["DEFAULT_BLOCKS", "Progress", "TrainOptions", "train", "train_steps"]

# Block weights of the default head, chosen by 5-fold cross-validation on the train half.
DEFAULT_BLOCKS: dict[str, float] = {
    "words": 1.0,
    "headers": 1.0,
    "chars": 1.0,
    "hand": 1.0,
    "embedding": 0.0,
}


@dataclass(frozen=True, slots=True)
class Progress:
    step: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class TrainOptions:
    blocks: tuple[tuple[str, float], ...] = tuple(DEFAULT_BLOCKS.items())
    C: float = 100.0
    folds: int = 5
    # Also train on each message reduced to Subject + text, so that missing headers
    # (forwarded or exported mail) are not learnt as a sign of spam.
    augment_headerless: bool = True
    keep_neighbours: bool = True
    seed: int = 0
    version: str = ""
    encoder_kind: str = "int8"
    # Log-odds for hand-made signals the training data cannot teach. The 2001-2002 corpus
    # predates SPF/DKIM/DMARC, so its messages never carry authentication results; without
    # a prior those signals would weigh nothing. Kept only while the data stays silent:
    # once a user's own labelled mail carries them, the fitted weight replaces the prior.
    priors: tuple[tuple[str, float], ...] = (("auth_pass", -1.0), ("auth_fail", 1.5))


def _headerless(messages: Sequence[Message]) -> list[Message]:
    return [parse_message(headerless_bytes(m)) for m in messages]


def train_steps(
    items: Sequence[LabelledMessage],
    options: TrainOptions = TrainOptions(),
    *,
    encoder: Any = None,
    sample_weight: np.ndarray | None = None,
    source: str = "",
) -> Generator[Progress, None, Any]:
    """Yield progress while training; the generator's return value is the `HeadModel`."""
    from sklearn.model_selection import StratifiedKFold

    from spamguard.evaluate import metrics as compute_metrics
    from spamguard.scoring.model import HeadModel

    y = np.asarray([it.is_spam for it in items], dtype=bool)
    if y.all() or not y.any():
        raise CorpusError("training needs both spam and ham messages")
    if min(int(y.sum()), int((~y).sum())) < options.folds:
        raise CorpusError(f"training needs at least {options.folds} messages of each class")
    weights = dict(options.blocks)
    featurizer = Featurizer(config=FeatureConfig(), weights={k: v for k, v in weights.items()})
    messages = [it.message for it in items]
    n = len(messages)
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    yield Progress("reading", 0, n)
    stripped = _headerless(messages) if options.augment_headerless else []
    embeddings: np.ndarray | None = None
    needs_vectors = featurizer.uses_embedding or options.keep_neighbours
    if needs_vectors:
        if encoder is None:
            from spamguard.scoring.encoder import load_encoder

            encoder = load_encoder(options.encoder_kind)  # type: ignore[arg-type]
        from spamguard.scoring.encoder import encoder_text

        chunks: list[np.ndarray] = []
        batch = 64
        for start in range(0, n, batch):
            texts = [encoder_text(m.subject, m.text) for m in messages[start : start + batch]]
            chunks.append(np.asarray(encoder.encode(texts), dtype=np.float32))
            yield Progress("embedding", min(start + batch, n), n)
        embeddings = np.vstack(chunks)
    feature_emb = embeddings if featurizer.uses_embedding else None
    yield Progress("features", 0, 1)
    X = featurizer.transform(messages, feature_emb)
    XH = featurizer.transform(stripped, feature_emb) if stripped else None
    yield Progress("features", 1, 1)

    def fit(rows: np.ndarray) -> LogisticHead:
        from scipy import sparse

        Xa, ya, wa = X[rows], y[rows], sw[rows]
        if XH is not None:
            Xa = sparse.vstack([Xa, XH[rows]], format="csr")
            ya = np.concatenate([ya, ya])
            wa = np.concatenate([wa, wa])
        return LogisticHead(C=options.C).fit(Xa, ya, sample_weight=wa)

    oof = np.zeros(n)
    oof_h = np.zeros(n)
    folds = StratifiedKFold(options.folds, shuffle=True, random_state=options.seed)
    for k, (train_idx, held_idx) in enumerate(folds.split(np.zeros(n), y)):
        head = fit(train_idx)
        oof[held_idx] = head.decision_function(X[held_idx])
        if XH is not None:
            oof_h[held_idx] = head.decision_function(XH[held_idx])
        yield Progress("cross-validation", k + 1, options.folds)
    calib_scores = np.concatenate([oof, oof_h]) if XH is not None else oof
    calib_labels = np.concatenate([y, y]) if XH is not None else y
    yield Progress("final fit", 0, 1)
    final = fit(np.arange(n))
    final.platt_ = platt_fit(calib_scores, calib_labels)
    priors_used = _apply_priors(final, featurizer, X, dict(options.priors), final.platt_[0])
    yield Progress("final fit", 1, 1)

    groups = [it.group for it in items]
    cv_metrics = compute_metrics(y, final.calibrate(oof), groups)
    if XH is not None:
        cv_metrics["headerless"] = compute_metrics(y, final.calibrate(oof_h), groups)
    digest = data_hash(items)
    version = options.version or (f"head-{_dt.date.today().isoformat()}-{digest[:8]}")
    model = HeadModel(
        featurizer=featurizer,
        head=final,
        version=version,
        encoder=(
            {"id": "sentence-transformers/all-MiniLM-L6-v2", "quantization": options.encoder_kind}
            if needs_vectors
            else None
        ),
        training={
            "data_hash": digest,
            "source": source,
            "n_spam": int(y.sum()),
            "n_ham": int((~y).sum()),
            "augment_headerless": options.augment_headerless,
            "C": options.C,
            "folds": options.folds,
            "seed": options.seed,
            "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "priors": priors_used,
        },
        metrics={"train_cv": cv_metrics},
    )
    if options.keep_neighbours and embeddings is not None:
        model.neighbour_vectors = embeddings
        model.neighbour_labels = y.astype(np.int8)
        model.neighbour_subjects = [m.subject[:120] for m in messages]
        model.neighbour_refs = [it.ref for it in items]
    return model


def _apply_priors(
    head: LogisticHead,
    featurizer: Featurizer,
    X: Any,
    priors: dict[str, float],
    platt_a: float,
) -> dict[str, float]:
    """Give hand-made signals absent from the training data their prior log-odds.

    The prior is expressed on the calibrated scale, so it is divided by the Platt slope
    and by the hand block's weight to land on the raw weight.
    """
    from spamguard.scoring.features import HAND_FEATURES

    offsets = featurizer.offsets()
    if "hand" not in offsets or not priors or platt_a <= 0:
        return {}
    start, _ = offsets["hand"]
    block_weight = featurizer.weights["hand"]
    names = [name for name, _ in HAND_FEATURES]
    used: dict[str, float] = {}
    for name, log_odds in priors.items():
        col = start + names.index(name)
        if X[:, col].count_nonzero() == 0:
            head.coef_[col] = log_odds / platt_a / block_weight
            used[name] = log_odds
    return used


def train(
    items: Sequence[LabelledMessage],
    options: TrainOptions = TrainOptions(),
    *,
    on_progress: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> Any:
    """Run `train_steps` to the end and return the model."""
    gen = train_steps(items, options, **kwargs)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(progress)
