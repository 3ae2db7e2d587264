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
    LEGACY_HAND_FEATURES,
    LEGACY_SENDER_FEATURES,
    SENDER_FEATURES,
    FeatureConfig,
    headerless_bytes,
    select_names,
)
from spamguard.scoring.head import Featurizer, LogisticHead, platt_fit

__all__ = [
    "DEFAULT_BLOCKS",
    "Cancelled",
    "Progress",
    "TrainOptions",
    "WarmStart",
    "WarmStartOptions",
    "design_for",
    "featurizer_key",
    "fit_dual",
    "fit_labels_steps",
    "fit_warm",
    "gram_matrix",
    "platt_shrunk",
    "recency_weights",
    "train",
    "train_from",
    "train_steps",
    "warm_start_steps",
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
) -> Generator[Progress, None, Any]:
    """Yield progress while training; the generator's return value is the `HeadModel`.

    ``embeddings`` (one row per item) stands in for the encoder when already computed.
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
    fitted = yield from fitting(options, featurizer, X, XH, y, sw)

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


def _fit_plain(
    options: TrainOptions, featurizer: Featurizer, X: Any, XH: Any, y: np.ndarray, sw: np.ndarray
) -> Generator[Progress, None, _Fit]:
    """The logistic head, Platt-calibrated on out-of-fold scores of both copies."""
    from sklearn.model_selection import StratifiedKFold

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
    options: TrainOptions, featurizer: Featurizer, X: Any, XH: Any, y: np.ndarray, sw: np.ndarray
) -> Generator[Progress, None, _Fit]:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

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
    folds = StratifiedKFold(options.folds, shuffle=True, random_state=options.seed)
    for k, (train_idx, held_idx) in enumerate(folds.split(np.zeros(n), y)):
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
    ws = np.concatenate([sw, sw]) if ZH is not None else sw
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
    coef[base_cols] = w_head * head.coef_
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
            head.coef_[col] = log_odds / platt_a / block_weight
            used[name] = log_odds
    return used


# -- warm start: the user's labels on top of a parent model -----------------------------------
#
# The user's machine does not have the base corpus, so "base data + user labels" is done
# through the parent's weights: minimise the weighted log-loss on the user's labels plus
# l2/2 * ||w - w0||^2. The pull towards w0 stands in for the base data (a diagonal, isotropic
# stand-in for its Hessian), so a handful of corrections moves the head only where the
# corrected messages have features, and by an amount that grows with the evidence.


class Cancelled(Exception):
    """Raised inside a training generator when its cancel event was set."""


@dataclass(frozen=True, slots=True)
class WarmStartOptions:
    # Strength of the pull towards the parent. Only user_weight / l2 matters for the weights.
    # Tuned on the train half of a shift (`benchmarks/adaptation_shift.py`: base without
    # hard-ham-1/spam-2, K labels from them, scored on the rest of them): 0.03 adapts most,
    # 0.1 nearly as much while costing the unshifted test mail less AUC (-0.0002 at K=100)
    # and it is safer against mis-clicked labels, which corpus labels do not have.
    l2: float = 0.1
    user_weight: float = 1.0
    # The intercept moves with the share of spam in the labels, which corrections bias
    # heavily; pull it back harder than the weights.
    intercept_l2: float = 20.0
    # Recent labels count more: weight halves every half_life_days, never below min_share.
    half_life_days: float = 60.0
    min_share: float = 0.25
    augment_headerless: bool = True
    folds: int = 5
    # "keep": the parent's Platt; "refit": Platt on out-of-fold scores, shrunk towards the
    # parent's; "auto": keep below min_calibration_labels, refit above.
    calibration: str = "auto"
    min_calibration_labels: int = 40
    calibration_prior: float = 50.0
    max_iter: int = 300
    seed: int = 0
    version: str = ""


@dataclass
class WarmStart:
    """A warm-started model and the evidence for promoting it."""

    model: Any  # HeadModel
    oof_p: np.ndarray  # calibrated out-of-fold probability for each label
    y: np.ndarray
    seconds: float = 0.0


def featurizer_key(featurizer: Featurizer) -> str:
    """Identity of a featurizer: cached feature rows are valid for any head sharing it."""
    import hashlib
    import json

    spec: dict[str, Any] = {"features": featurizer.config.to_json(), "blocks": featurizer.weights}
    if featurizer.hand_names != LEGACY_HAND_FEATURES:
        spec["hand"] = list(featurizer.hand_names)
    if featurizer.sender_names != LEGACY_SENDER_FEATURES:
        spec["sender"] = list(featurizer.sender_names)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def recency_weights(
    created_at: np.ndarray, *, now: float | None = None, half_life_days: float, min_share: float
) -> np.ndarray:
    import time

    now = time.time() if now is None else now
    age_days = np.maximum(0.0, (now - np.asarray(created_at, dtype=np.float64)) / 86400.0)
    return np.asarray(np.maximum(min_share, 0.5 ** (age_days / half_life_days)), np.float64)


def design_for(
    featurizer: Featurizer,
    messages: Sequence[Message],
    *,
    headerless: bool = True,
    encoder: Any = None,
    cache: Any = None,
    hashes: Sequence[str] | None = None,
) -> tuple[Any, Any]:
    """(X, X of the headerless copies or None), reusing rows ``cache`` holds.

    With ``hashes`` (the messages' content hashes) given, ``messages`` is indexed only for
    rows the cache lacks, so a lazy sequence that parses on access parses nothing cached.

    ``cache`` is anything with ``feature_rows(key, hashes) -> {hash: bytes}`` and
    ``save_feature_rows(key, [(hash, bytes)])`` (the `Store` is one); rows are keyed by the
    featurizer, so every head version sharing it reuses them and a retrain takes seconds.
    """
    from scipy import sparse

    key = featurizer_key(featurizer)
    n_cols = featurizer.n_columns
    if hashes is None:
        hashes = [m.content_hash for m in messages]
    keys = [key, key + ":headerless"] if headerless else [key]
    cached = [cache.feature_rows(k, hashes) if cache is not None else {} for k in keys]
    missing = [i for i, h in enumerate(hashes) if any(h not in c for c in cached)]
    if missing:
        todo = [messages[i] for i in missing]
        emb = None
        if featurizer.uses_embedding:
            if encoder is None:
                from spamguard.scoring.encoder import load_encoder

                encoder = load_encoder("int8")
            emb = np.asarray(
                encoder.encode([featurizer.encoder_input(m) for m in todo]), np.float32
            )
        fresh = [featurizer.transform(todo, emb)]
        if headerless:
            emb_h = emb  # the embedding reads subject + text, which stripping keeps
            fresh.append(featurizer.transform(_headerless(todo), emb_h))
        for c, k, mat in zip(cached, keys, fresh, strict=True):
            rows = [(hashes[i], _row_bytes(mat, j)) for j, i in enumerate(missing)]
            c.update(rows)
            if cache is not None:
                cache.save_feature_rows(k, rows)
    mats = [
        sparse.vstack([_row_from_bytes(c[h], n_cols) for h in hashes], format="csr")
        if hashes
        else sparse.csr_matrix((0, n_cols))
        for c in cached
    ]
    return mats[0], (mats[1] if headerless else None)


def _row_bytes(mat: Any, j: int) -> bytes:
    row = mat.getrow(j)
    return bytes(row.indices.astype("<i4").tobytes() + row.data.astype("<f4").tobytes())


def _row_from_bytes(data: bytes, n_cols: int) -> Any:
    from scipy import sparse

    nnz = len(data) // 8
    idx = np.frombuffer(data[: 4 * nnz], dtype="<i4")
    val = np.frombuffer(data[4 * nnz :], dtype="<f4").astype(np.float64)
    return sparse.csr_matrix((val, idx, np.asarray([0, nnz])), shape=(1, n_cols))


def fit_warm(
    coef0: np.ndarray,
    intercept0: float,
    X: Any,
    y: np.ndarray,
    sample_weight: np.ndarray,
    *,
    l2: float,
    intercept_l2: float,
    max_iter: int = 300,
) -> tuple[np.ndarray, float]:
    """argmin sum_i s_i logloss(y_i, x_i.w + b) + l2/2 ||w - w0||^2 + l2_b/2 (b - b0)^2.

    At the optimum l2 (w - w0) = -X^T r, so w = w0 + X^T alpha with one alpha per row:
    the fit runs over n labels instead of millions of columns (see `fit_dual`), and the
    columns no label touches keep w0 exactly.
    """
    coef = np.asarray(coef0, dtype=np.float64).copy()
    if X.shape[0] == 0:
        return coef, float(intercept0)
    gram = np.asarray((X @ X.T).toarray(), dtype=np.float64)
    alpha, b = fit_dual(
        gram,
        np.asarray(X @ coef0, dtype=np.float64),
        y,
        sample_weight,
        intercept0=intercept0,
        l2=l2,
        intercept_l2=intercept_l2,
        max_iter=max_iter,
    )
    coef += np.asarray(X.T @ alpha, dtype=np.float64).ravel()
    return coef, b


def fit_dual(
    gram: np.ndarray,
    z0: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    *,
    intercept0: float,
    l2: float,
    intercept_l2: float,
    max_iter: int = 300,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """`fit_warm` in the row space: ``gram`` = X X^T, ``z0`` = X w0; returns (alpha, b).

    Solved in whitened coordinates beta = L^T alpha (gram = L L^T): there the problem is
    as well conditioned as the primal one (about 50 L-BFGS steps), while in alpha itself
    it took hundreds and still stopped short. Folds reuse sub-blocks of one Gram matrix.
    """
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    ya = np.asarray(y, dtype=np.float64)
    sw = np.asarray(sample_weight, dtype=np.float64)
    n = len(ya)
    # One BLAS thread: the matrices are small, and on a busy 2-core machine threaded BLAS
    # spins and took 10x longer (12 s against 1.3 s for 100 labels); it also leaves the
    # other core to the mail loop and the UI while a retrain runs in the background.
    with threadpool_limits(limits=1):
        # A tiny jitter: identical messages make the Gram matrix singular.
        jitter = 1e-9 * max(float(np.trace(gram)) / max(n, 1), 1e-12)
        L = cholesky(gram + jitter * np.eye(n), lower=True)

        def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
            beta, b = v[:-1], v[-1]
            z = z0 + L @ beta + b
            # log(1 + e^z) - y z, computed without overflow
            loss = float(np.sum(sw * (np.logaddexp(0.0, z) - ya * z)))
            r = sw * (_sigmoid(z) - ya)
            db = b - intercept0
            f = loss + 0.5 * l2 * float(beta @ beta) + 0.5 * intercept_l2 * db * db
            grad = np.empty_like(v)
            grad[:-1] = L.T @ r + l2 * beta
            grad[-1] = float(r.sum()) + intercept_l2 * db
            return f, grad

        v0 = np.zeros(n + 1)
        if start is not None:
            v0[:-1] = L.T @ start
        v0[-1] = intercept0
        result = minimize(objective, v0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        alpha = solve_triangular(L.T, result.x[:-1], lower=False)
    return np.asarray(alpha), float(result.x[-1])


def gram_matrix(X: Any, *, chunk: int = 1024) -> np.ndarray:
    """X X^T, dense. Frequent columns (hand signals, common words) go through BLAS in
    chunks; the long tail of rare ones through a sparse product, which is cheap for them:
    2 s instead of 8 s for 2,000 rows, with at most ``chunk`` dense columns in memory."""
    from threadpoolctl import threadpool_limits

    n = X.shape[0]
    Xc = X.tocsc()
    nnz = np.diff(Xc.indptr)
    threshold = max(20, n // 10)
    frequent = np.flatnonzero(nnz > threshold)
    rare = np.flatnonzero((nnz > 0) & (nnz <= threshold))
    R = Xc[:, rare].tocsr()
    gram = np.asarray((R @ R.T).toarray(), dtype=np.float64)
    with threadpool_limits(limits=1):
        for i in range(0, len(frequent), chunk):
            D = Xc[:, frequent[i : i + chunk]].toarray()
            gram += D @ D.T
    return gram


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))), dtype=np.float64)


def platt_shrunk(
    scores: np.ndarray, labels: np.ndarray, prior: tuple[float, float], strength: float
) -> tuple[float, float]:
    """Platt (a, b) by maximum a posteriori with a Gaussian prior centred on ``prior``.

    User labels are few and biased towards the filter's mistakes (people correct errors,
    not successes), so a plain refit would learn "the model is usually wrong". The prior,
    worth about ``strength`` messages, keeps the parent's calibration until the labels
    clearly say otherwise.
    """
    from scipy.optimize import minimize

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    a0, b0 = prior

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = v
        z = a * s + b
        r = _sigmoid(z) - y
        f = float(np.sum(np.logaddexp(0.0, z) - y * z))
        f += 0.5 * strength * ((a - a0) ** 2 + (b - b0) ** 2)
        grad = np.asarray(
            [float(r @ s) + strength * (a - a0), float(r.sum()) + strength * (b - b0)]
        )
        return f, grad

    result = minimize(objective, np.asarray([a0, b0]), jac=True, method="L-BFGS-B")
    a, b = (float(x) for x in result.x)
    # A non-positive slope would invert the ranking: refuse it and keep the parent's.
    return (a, b) if a > 0 else (a0, b0)


def warm_start_steps(
    parent: Any,
    items: Sequence[LabelledMessage],
    options: WarmStartOptions = WarmStartOptions(),
    *,
    sample_weight: np.ndarray | None = None,
    design: tuple[Any, Any] | None = None,
    encoder: Any = None,
    cache: Any = None,
    source: str = "",
    cancel: Any = None,
) -> Generator[Progress, None, WarmStart]:
    """Yield progress while fitting the parent ``HeadModel`` to ``items``; return `WarmStart`.

    ``cancel`` (a `threading.Event`) is checked between steps; when set, `Cancelled` is
    raised, and closing the generator stops it the same way.
    """
    import time

    started = time.perf_counter()

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("retraining was cancelled")

    n = len(items)
    if n == 0:
        raise CorpusError("warm start needs at least one labelled message")
    yield Progress("features", 0, n)
    if design is None:
        design = design_for(
            parent.featurizer,
            [it.message for it in items],
            headerless=options.augment_headerless,
            encoder=encoder,
            cache=cache,
        )
    yield Progress("features", n, n)
    check()
    y = np.asarray([it.is_spam for it in items], dtype=bool)
    result: WarmStart = yield from fit_labels_steps(
        parent,
        y,
        design,
        options,
        sample_weight=sample_weight,
        digest=data_hash(items),
        source=source,
        cancel=cancel,
    )
    result.seconds = time.perf_counter() - started
    return result


def fit_labels_steps(
    parent: Any,
    y: np.ndarray,
    design: tuple[Any, Any],
    options: WarmStartOptions = WarmStartOptions(),
    *,
    sample_weight: np.ndarray | None = None,
    digest: str = "",
    source: str = "",
    cancel: Any = None,
) -> Generator[Progress, None, WarmStart]:
    """The fit behind `warm_start_steps` once the design matrix is known (from the cache,
    without parsing a message: a retrain on 1,000 cached labels takes a few seconds)."""
    import copy
    import time

    from spamguard.evaluate import metrics as compute_metrics
    from spamguard.scoring.model import HeadModel

    started = time.perf_counter()

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("retraining was cancelled")

    y = np.asarray(y, dtype=bool)
    n = len(y)
    if n == 0:
        raise CorpusError("warm start needs at least one labelled message")
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sw = sw * options.user_weight
    X, XH = design
    if not options.augment_headerless:
        XH = None
    head0 = parent.head

    from scipy import sparse

    # Rows 0..n-1 are the messages, n..2n-1 their headerless copies (when augmenting).
    X_all = sparse.vstack([X, XH], format="csr") if XH is not None else X
    gram = gram_matrix(X_all)
    z0_all = np.asarray(X_all @ head0.coef_, dtype=np.float64)
    copies = 2 if XH is not None else 1
    alpha_all = np.zeros(X_all.shape[0])

    def fit(rows: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        idx = np.concatenate([rows + c * n for c in range(copies)])
        # Both copies of a message share its weight, so augmenting does not double it.
        alpha, b = fit_dual(
            gram[np.ix_(idx, idx)],
            z0_all[idx],
            np.tile(y[rows], copies),
            np.tile(sw[rows], copies) / copies,
            intercept0=head0.intercept_,
            l2=options.l2,
            intercept_l2=options.intercept_l2,
            max_iter=options.max_iter,
            # Folds start from the full fit: they differ from it by a fifth of the labels.
            start=alpha_all[idx],
        )
        coef = head0.coef_ + np.asarray(X_all[idx].T @ alpha, dtype=np.float64).ravel()
        return coef, b, alpha

    yield Progress("final fit", 0, 1)
    final_coef, final_b, alpha_all = fit(np.arange(n))
    check()

    folds = min(options.folds, n)
    oof = np.zeros(n)
    if folds >= 2:
        order = np.random.default_rng(options.seed).permutation(n)
        for k in range(folds):
            held = order[k::folds]
            kept = np.setdiff1d(order, held)
            coef, b, _ = fit(kept)
            oof[held] = X[held] @ coef + b
            yield Progress("cross-validation", k + 1, folds)
            check()
    else:
        oof = head0.decision_function(X)  # one label: held out, the parent predicts it
    coef, b = final_coef, final_b
    platt = head0.platt_
    calibration = "parent"
    mode = options.calibration
    wants_refit = mode == "refit" or (mode == "auto" and n >= options.min_calibration_labels)
    if wants_refit and y.any() and not y.all():
        platt = platt_shrunk(oof, y, head0.platt_, options.calibration_prior)
        calibration = f"refit, shrunk towards the parent's (prior {options.calibration_prior:g})"
    head = LogisticHead(C=head0.C, coef_=coef, intercept_=b, platt_=platt)
    yield Progress("final fit", 1, 1)
    oof_p = head.calibrate(oof)
    version = options.version or (
        f"personal-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}-{digest[:8]}"
    )
    user_cv = compute_metrics(y, oof_p) if (y.any() and not y.all()) else {"n": n}
    model = HeadModel(
        featurizer=parent.featurizer,
        head=head,
        version=version,
        encoder=copy.deepcopy(parent.encoder),
        thresholds=dict(parent.thresholds),
        training={
            "kind": "warm-start",
            "parent": parent.version,
            "parent_training": {
                k: parent.training.get(k) for k in ("data_hash", "source") if k in parent.training
            },
            "data_hash": digest,
            "source": source,
            "n_spam": int(y.sum()),
            "n_ham": int((~y).sum()),
            "l2": options.l2,
            "user_weight": options.user_weight,
            "intercept_l2": options.intercept_l2,
            "half_life_days": options.half_life_days,
            "augment_headerless": options.augment_headerless,
            "calibration": calibration,
            "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "priors": parent.training.get("priors", {}),
        },
        metrics={"user_cv": user_cv, "parent": parent.metrics},
    )
    # Explanations keep pointing at the parent's labelled neighbours.
    model.neighbour_vectors = parent.neighbour_vectors
    model.neighbour_labels = parent.neighbour_labels
    model.neighbour_subjects = list(parent.neighbour_subjects)
    model.neighbour_refs = list(parent.neighbour_refs)
    return WarmStart(model, oof_p, y, time.perf_counter() - started)


def train_from(
    parent_dir: Any,
    items: Sequence[LabelledMessage],
    options: WarmStartOptions = WarmStartOptions(),
    *,
    on_progress: Callable[[Progress], None] | None = None,
    source: str = "",
    **kwargs: Any,
) -> Any:
    """`spamguard train --from`: warm-start the model in ``parent_dir`` (or "default")."""
    from pathlib import Path

    from spamguard.scoring.model import default_model_dir, load_model

    path = default_model_dir() if str(parent_dir) == "default" else Path(parent_dir)
    parent = load_model(path)
    gen = warm_start_steps(parent, items, options, source=source, **kwargs)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            result: WarmStart = stop.value
            return result.model
        if on_progress is not None:
            on_progress(progress)


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
