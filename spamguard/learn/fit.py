"""Fit a head model from labelled messages: features, cross-validated calibration, neighbours.

Training is a generator of `Progress` so the CLI draws a bar and the app a ring from the
same code, and either can stop it between steps.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spamguard.errors import CorpusError
from spamguard.learn.corpus import LabelledMessage, data_hash
from spamguard.message import Message, parse_message
from spamguard.scoring.features import (
    HAND_FEATURES,
    SENDER_FEATURES,
    FeatureConfig,
    headerless_bytes,
    select_names,
)
from spamguard.scoring.head import Featurizer, LogisticHead, platt_fit

__all__ = [
    "DEFAULT_BLOCKS",
    "Progress",
    "TrainOptions",
    "train",
    "train_steps",
]

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
    # The hand and sender signals to train with, by name (None: the defaults of this
    # version). A signal that turns out to mark a corpus source rather than spam can be
    # left out; the model's config.json records the list it was trained with.
    hand_names: tuple[str, ...] | None = None
    sender_names: tuple[str, ...] | None = None


def _headerless(messages: Sequence[Message]) -> list[Message]:
    return [parse_message(headerless_bytes(m)) for m in messages]


def train_steps(
    items: Sequence[LabelledMessage],
    options: TrainOptions = TrainOptions(),
    *,
    encoder: Any = None,
    sample_weight: np.ndarray | None = None,
    source: str = "",
    embeddings: np.ndarray | None = None,
    cv_groups: Sequence[str] | None = None,
    calibration_weight: np.ndarray | None = None,
) -> Generator[Progress, None, Any]:
    """Yield progress while training; the generator's return value is the `HeadModel`.

    ``embeddings`` (one row per item) stands in for the encoder when already computed.
    ``cv_groups`` (one key per item) keeps items of one key in the same cross-validation
    fold: an augmented copy must be held out with its original, or the out-of-fold scores
    (and the calibration fitted on them) see the held-out message through its copy.
    ``calibration_weight`` (one per item; default ``sample_weight``) weighs the items in the
    calibration (the stacker or Platt scaling) fitted on out-of-fold scores: 0 keeps an
    augmented copy out of it, so that copies teach the head and naive Bayes only and the
    probabilities stay those of real mail.
    """

    from spamguard.evaluate import metrics as compute_metrics

    y = np.asarray([it.is_spam for it in items], dtype=bool)
    if y.all() or not y.any():
        raise CorpusError("training needs both spam and ham messages")
    if min(int(y.sum()), int((~y).sum())) < options.folds:
        raise CorpusError(f"training needs at least {options.folds} messages of each class")
    weights = dict(options.blocks)
    featurizer = Featurizer(config=FeatureConfig(), weights={k: v for k, v in weights.items()})
    try:
        if options.hand_names is not None:
            names = select_names(HAND_FEATURES, options.hand_names, "hand")
            featurizer = dataclasses.replace(featurizer, hand_names=names)
        if options.sender_names is not None:
            names = select_names(SENDER_FEATURES, options.sender_names, "sender")
            featurizer = dataclasses.replace(featurizer, sender_names=names)
    except ValueError as exc:
        raise CorpusError(f"cannot train with these signals: {exc}") from exc
    messages = [it.message for it in items]
    n = len(messages)
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    yield Progress("reading", 0, n)
    stripped = _headerless(messages) if options.augment_headerless else []
    needs_vectors = featurizer.uses_embedding or options.keep_neighbours
    if needs_vectors and embeddings is None:
        if encoder is None:
            from spamguard.scoring.encoder import load_encoder

            encoder = load_encoder(options.encoder_kind)  # type: ignore[arg-type]
        chunks: list[np.ndarray] = []
        batch = 64
        for start in range(0, n, batch):
            texts = [featurizer.encoder_input(m) for m in messages[start : start + batch]]
            chunks.append(np.asarray(encoder.encode(texts), dtype=np.float32))
            yield Progress("embedding", min(start + batch, n), n)
        embeddings = np.vstack(chunks)
    feature_emb = embeddings if featurizer.uses_embedding else None
    yield Progress("features", 0, 1)
    X = featurizer.transform(messages, feature_emb)
    XH = featurizer.transform(stripped, feature_emb) if stripped else None
    yield Progress("features", 1, 1)
    fitting = _fit_stacked if featurizer.stacked else _fit_plain
    splits = _cv_splits(options, y, cv_groups)
    cw = sw if calibration_weight is None else np.asarray(calibration_weight, dtype=np.float64)
    fitted = yield from fitting(options, featurizer, X, XH, y, sw, splits, cw)

    from spamguard.scoring.model import HeadModel

    groups = [it.group for it in items]
    cv_metrics = compute_metrics(y, fitted.oof_p, groups)
    if fitted.oof_p_headerless is not None:
        cv_metrics["headerless"] = compute_metrics(y, fitted.oof_p_headerless, groups)
    digest = data_hash(items)
    version = options.version or (f"head-{_dt.date.today().isoformat()}-{digest[:8]}")
    training: dict[str, Any] = {
        "data_hash": digest,
        "source": source,
        "n_spam": int(y.sum()),
        "n_ham": int((~y).sum()),
        "augment_headerless": options.augment_headerless,
        "C": options.C,
        "folds": options.folds,
        "seed": options.seed,
        "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "priors": fitted.priors,
    }
    if fitted.stacker is not None:
        training["stacker"] = fitted.stacker
    model = HeadModel(
        featurizer=featurizer,
        head=fitted.head,
        version=version,
        encoder=(
            {"id": "sentence-transformers/all-MiniLM-L6-v2", "quantization": options.encoder_kind}
            if needs_vectors
            else None
        ),
        training=training,
        metrics={"train_cv": cv_metrics},
        oof_p=fitted.oof_p,
    )
    if options.keep_neighbours and embeddings is not None:
        model.neighbour_vectors = embeddings
        model.neighbour_labels = y.astype(np.int8)
        model.neighbour_subjects = [m.subject[:120] for m in messages]
        model.neighbour_refs = [it.ref for it in items]
    return model


@dataclass
class _Fit:
    """A fitted head and its out-of-fold calibrated probabilities (full and header-less)."""

    head: LogisticHead
    priors: dict[str, float]
    oof_p: np.ndarray
    oof_p_headerless: np.ndarray | None
    stacker: dict[str, Any] | None = None


Splits = list[tuple[np.ndarray, np.ndarray]]


def _cv_splits(options: TrainOptions, y: np.ndarray, groups: Sequence[str] | None) -> Splits:
    """The cross-validation folds: stratified, and grouped when ``groups`` is given."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n = len(y)
    if groups is None:
        folds = StratifiedKFold(options.folds, shuffle=True, random_state=options.seed)
        return list(folds.split(np.zeros(n), y))
    if len(groups) != n:
        raise CorpusError("cv_groups needs one key per training message")
    grouped = StratifiedGroupKFold(options.folds, shuffle=True, random_state=options.seed)
    return list(grouped.split(np.zeros(n), y, np.asarray(groups)))


def _fit_plain(
    options: TrainOptions,
    featurizer: Featurizer,
    X: Any,
    XH: Any,
    y: np.ndarray,
    sw: np.ndarray,
    splits: Splits,
    cw: np.ndarray,
) -> Generator[Progress, None, _Fit]:
    """The logistic head, Platt-calibrated on out-of-fold scores of both copies."""
    n = len(y)

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
    for k, (train_idx, held_idx) in enumerate(splits):
        head = fit(train_idx)
        oof[held_idx] = head.decision_function(X[held_idx])
        if XH is not None:
            oof_h[held_idx] = head.decision_function(XH[held_idx])
        yield Progress("cross-validation", k + 1, options.folds)
    keep = cw > 0
    calib_scores = np.concatenate([oof[keep], oof_h[keep]]) if XH is not None else oof[keep]
    calib_labels = np.concatenate([y[keep], y[keep]]) if XH is not None else y[keep]
    yield Progress("final fit", 0, 1)
    final = fit(np.arange(n))
    final.platt_ = platt_fit(calib_scores, calib_labels)
    priors_used = _apply_priors(final, featurizer, X, dict(options.priors), final.platt_[0])
    yield Progress("final fit", 1, 1)
    return _Fit(
        final,
        priors_used,
        final.calibrate(oof),
        final.calibrate(oof_h) if XH is not None else None,
    )


# -- the stacked head: logistic regression + token naive Bayes + sender signals ------------------
#
# Cross-validation on the train half (benchmarks/cv_search.py, three seeds) found a
# multinomial naive Bayes over the binary word and header terms complementary to the
# logistic head, and six sender/link signals useful next to the two scores. The naive Bayes
# score is the MEAN log-ratio of the message's distinct terms, not their sum: summed, a long
# message of ordinary words reaches log-odds of -20 and outvotes everything else (that sank
# the first stacked candidate on held-out mail); averaged, it is bounded by the strongest
# single term. A logistic stacker over [head log-odds, mean NB log-ratio, sender signals],
# fitted on out-of-fold scores, combines them and is the calibration. Every part is linear in
# the design matrix (the tokens block holds presence / number of terms), so the stacked model
# is again one weight vector: the head's weights times the stacker's head weight, the NB
# log-ratios (tokens block) times its NB weight, the sender weights. Scoring, explanations
# and warm-start retraining treat it like any head.

NB_ALPHA = 0.01
STACKER_C = 1.0


def _nb_fit(T: Any, y: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
    """Per-column log-ratio log P(term|spam) - log P(term|ham), from term presence."""
    from sklearn.naive_bayes import MultinomialNB

    present = T.copy()
    present.data[:] = 1.0
    nb = MultinomialNB(alpha=NB_ALPHA).fit(present, y.astype(int), sample_weight=sample_weight)
    return np.asarray(nb.feature_log_prob_[1] - nb.feature_log_prob_[0], dtype=np.float64)


def _fit_stacked(
    options: TrainOptions,
    featurizer: Featurizer,
    X: Any,
    XH: Any,
    y: np.ndarray,
    sw: np.ndarray,
    splits: Splits,
    cw: np.ndarray,
) -> Generator[Progress, None, _Fit]:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    offsets = featurizer.offsets()
    t_lo, t_hi = offsets["tokens"]
    s_lo, s_hi = offsets.get("sender", (t_hi, t_hi))
    stacked_cols = np.r_[t_lo:t_hi, s_lo:s_hi]
    base_cols = np.setdiff1d(np.arange(featurizer.n_columns), stacked_cols)
    tok_cols = np.arange(t_lo, t_hi)

    def parts(M: Any) -> tuple[Any, Any, np.ndarray]:
        M = M.tocsc()
        base = M[:, base_cols].tocsr()
        tokens = M[:, tok_cols].tocsr()
        sender = M[:, s_lo:s_hi].toarray() / featurizer.weights.get("sender", 1.0)
        return base, tokens, sender

    B, T, S = parts(X)
    BH: Any = None
    TH: Any = None
    SH: Any = None
    if XH is not None:
        BH, TH, SH = parts(XH)

    def stack(rows: np.ndarray) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        if BH is None:
            return B[rows], T[rows], y[rows], sw[rows]
        return (
            sparse.vstack([B[rows], BH[rows]], format="csr"),
            sparse.vstack([T[rows], TH[rows]], format="csr"),
            np.concatenate([y[rows], y[rows]]),
            np.concatenate([sw[rows], sw[rows]]),
        )

    def fit(rows: np.ndarray) -> tuple[LogisticHead, np.ndarray]:
        Ba, Ta, ya, wa = stack(rows)
        head = LogisticHead(C=options.C).fit(Ba, ya, sample_weight=wa)
        return head, _nb_fit(Ta, ya, wa)

    t_weight = featurizer.weights["tokens"]

    def nb_score(Tm: Any, lr: np.ndarray) -> np.ndarray:
        # The tokens block is presence / number of terms (times its weight): a mean.
        return np.asarray(Tm @ lr, dtype=np.float64) / t_weight

    oof = np.zeros((n, 2))
    oof_h = np.zeros((n, 2))
    for k, (train_idx, held_idx) in enumerate(splits):
        head, lr = fit(train_idx)
        oof[held_idx, 0] = head.decision_function(B[held_idx])
        oof[held_idx, 1] = nb_score(T[held_idx], lr)
        if BH is not None:
            oof_h[held_idx, 0] = head.decision_function(BH[held_idx])
            oof_h[held_idx, 1] = nb_score(TH[held_idx], lr)
        yield Progress("cross-validation", k + 1, options.folds)

    Z = np.column_stack([oof, S])
    ZH = np.column_stack([oof_h, SH]) if SH is not None else None
    Zs = np.vstack([Z, ZH]) if ZH is not None else Z
    ys = np.concatenate([y, y]) if ZH is not None else y
    ws = np.concatenate([cw, cw]) if ZH is not None else cw
    stacker = LogisticRegression(C=STACKER_C, max_iter=1000).fit(
        Zs, ys.astype(int), sample_weight=ws
    )
    w = stacker.coef_[0]
    w_head, w_nb, w_sender = float(w[0]), float(w[1]), w[2:]
    b = float(stacker.intercept_[0])

    yield Progress("final fit", 0, 1)
    head, lr = fit(np.arange(n))
    # Terms no training message had share one log-ratio u. Since the presences of a message
    # sum to one, mean(lr) = sum(presence * (lr - u)) + u: unseen columns keep weight exactly
    # 0 (sparse on disk, untouched by warm starts) and u joins the intercept.
    seen = np.asarray(abs(T).sum(axis=0)).ravel() > 0
    if BH is not None:
        seen |= np.asarray(abs(TH).sum(axis=0)).ravel() > 0
    unseen_lr = float(lr[~seen][0]) if (~seen).any() else 0.0
    coef = np.zeros(featurizer.n_columns)
    coef[base_cols] = w_head * np.asarray(head.coef_)
    coef[tok_cols] = np.where(seen, w_nb / t_weight * (lr - unseen_lr), 0.0)
    coef[s_lo:s_hi] = w_sender / featurizer.weights.get("sender", 1.0)
    final = LogisticHead(
        C=options.C,
        coef_=coef,
        intercept_=w_head * head.intercept_ + w_nb * unseen_lr + b,
        platt_=(1.0, 0.0),  # the stacker's output is the calibrated probability
    )
    priors_used = _apply_priors(final, featurizer, X, dict(options.priors), 1.0)
    yield Progress("final fit", 1, 1)

    def calibrated(Zm: np.ndarray) -> np.ndarray:
        return np.asarray(stacker.predict_proba(Zm)[:, 1], dtype=np.float64)

    stack_info = {
        "method": "logistic stacker over out-of-fold scores",
        "C": STACKER_C,
        "nb_alpha": NB_ALPHA,
        "nb_score": "mean log-ratio of the message's distinct word and header terms",
        "weights": {
            "head": w_head,
            "nb": w_nb,
            **{name: float(v) for name, v in zip(featurizer.sender_names, w_sender, strict=True)},
        },
        "intercept": b,
    }
    return _Fit(
        final,
        priors_used,
        calibrated(Z),
        calibrated(ZH) if ZH is not None else None,
        stack_info,
    )


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
    offsets = featurizer.offsets()
    if "hand" not in offsets or not priors or platt_a <= 0:
        return {}
    start, _ = offsets["hand"]
    block_weight = featurizer.weights["hand"]
    names = list(featurizer.hand_names)
    used: dict[str, float] = {}
    for name, log_odds in priors.items():
        if name not in names:
            continue
        col = start + names.index(name)
        if X[:, col].count_nonzero() == 0:
            assert isinstance(head.coef_, np.ndarray)  # a head being trained is dense
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
