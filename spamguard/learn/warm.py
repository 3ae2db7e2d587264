"""Warm start: the user's labels on top of a parent head, without the base corpus.

The pull towards the parent's weights stands in for the base data; `fit_labels_steps` is what
the learning loop and first-sync learning run, `train_from` what `spamguard train --from` runs."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spamguard.errors import CorpusError
from spamguard.learn.corpus import LabelledMessage, data_hash
from spamguard.learn.fit import Progress, _headerless
from spamguard.message import Message
from spamguard.scoring.features import (
    LEGACY_HAND_FEATURES,
    LEGACY_SENDER_FEATURES,
)
from spamguard.scoring.head import Featurizer, LogisticHead

__all__ = [
    "Cancelled",
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
    "train_from",
    "warm_start_steps",
]


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
        # The parent's scoring views (frozen, so shared): without them a personal version
        # would lose the padding protection at the user's first retrain (issue 21).
        views=parent.views,
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
