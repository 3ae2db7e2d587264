"""Warm start: pull towards the parent, untouched weights kept, calibration, cache, cancel."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from spamguard.learn.corpus import LabelledMessage, load_split
from spamguard.learn.warm import (
    Cancelled,
    WarmStart,
    WarmStartOptions,
    design_for,
    fit_warm,
    platt_shrunk,
    recency_weights,
    train_from,
    warm_start_steps,
)
from spamguard.scoring.model import HeadScorer, load_model
from spamguard.store import Store
from tests.conftest import FIXTURE_CORPUS


def _run(gen) -> WarmStart:  # type: ignore[no-untyped-def]
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def test_half() -> list[LabelledMessage]:
    return load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "test")


def test_fit_warm_keeps_untouched_columns_and_moves_towards_labels() -> None:
    from scipy import sparse

    rng = np.random.default_rng(0)
    w0 = rng.normal(size=50)
    X = sparse.csr_matrix(np.where(rng.random((6, 50)) < 0.1, 1.0, 0.0))
    y = np.asarray([1, 1, 1, 0, 0, 0], dtype=bool)
    w, b = fit_warm(w0, 0.0, X, y, np.ones(6), l2=1.0, intercept_l2=1.0)
    untouched = np.flatnonzero(np.asarray(X.sum(axis=0)).ravel() == 0)
    assert np.array_equal(w[untouched], w0[untouched])
    before = X @ w0
    after = X @ w + b
    assert np.all((after - before)[y] > 0) and np.all((after - before)[~y] < 0)
    # A stronger pull moves less.
    w_strong, _ = fit_warm(w0, 0.0, X, y, np.ones(6), l2=100.0, intercept_l2=100.0)
    assert np.abs(w_strong - w0).sum() < np.abs(w - w0).sum()


def test_warm_start_learns_a_mislabelled_pattern(
    fixture_model: Path, test_half: list[LabelledMessage]
) -> None:
    parent = load_model(fixture_model)
    # The user calls these ham messages spam: the head must follow their words.
    flipped = [
        LabelledMessage(it.ref, True, it.group, it.message) for it in test_half if not it.is_spam
    ][:6]
    result = _run(warm_start_steps(parent, flipped, WarmStartOptions(folds=3, l2=0.1)))
    model = result.model
    assert model.training["parent"] == "fixture-head"
    assert model.training["calibration"] == "parent"  # six labels: keep the parent's Platt
    assert model.head.platt_ == parent.head.platt_
    messages = [it.message for it in flipped]
    before = [s.p_spam for s in HeadScorer(parent, top_evidence=0).score(messages)]
    after = [s.p_spam for s in HeadScorer(model, top_evidence=0).score(messages)]
    assert np.mean(after) > np.mean(before) + 0.2
    assert result.oof_p.shape == (6,)


def test_calibration_refit_is_shrunk_towards_the_parent() -> None:
    scores = np.linspace(-3, 3, 20)
    labels = scores > 0
    weak = platt_shrunk(scores, labels, (1.0, 0.0), strength=1e6)
    assert weak == pytest.approx((1.0, 0.0), abs=1e-3)
    free = platt_shrunk(scores, labels, (1.0, 0.0), strength=0.1)
    assert free[0] > 1.5  # separable data: a steeper slope once the prior lets go


def test_cached_rows_are_reused_and_identical(
    fixture_model: Path, test_half: list[LabelledMessage], tmp_path: Path
) -> None:
    parent = load_model(fixture_model)
    messages = [it.message for it in test_half[:8]]
    with Store(tmp_path / "s.sqlite3") as store:
        X1, H1 = design_for(parent.featurizer, messages, cache=store)
        X2, H2 = design_for(parent.featurizer, messages, cache=store)
    fresh = parent.featurizer.transform(messages)
    assert abs(X1 - fresh).max() < 1e-6  # float32 storage, exact enough for a refit
    assert (X1 != X2).nnz == 0 and (H1 != H2).nnz == 0


def test_recency_weights_halve_and_floor() -> None:
    now = 1_000_000_000.0
    w = recency_weights(
        np.asarray([now, now - 30 * 86400, now - 3650 * 86400]),
        now=now,
        half_life_days=30,
        min_share=0.25,
    )
    assert w == pytest.approx([1.0, 0.5, 0.25])


def test_cancel_stops_between_steps(fixture_model: Path, test_half: list[LabelledMessage]) -> None:
    cancel = threading.Event()
    cancel.set()
    gen = warm_start_steps(load_model(fixture_model), test_half[:6], cancel=cancel)
    with pytest.raises(Cancelled):
        _run(gen)


def test_train_from_folders_matches_the_generator(
    fixture_model: Path, test_half: list[LabelledMessage]
) -> None:
    model = train_from(fixture_model, test_half[:10], WarmStartOptions(version="v-test"))
    assert model.version == "v-test" and model.training["kind"] == "warm-start"


STACKED = (
    ("words", 1.0),
    ("headers", 1.0),
    ("chars", 1.0),
    ("hand", 1.0),
    ("tokens", 1.0),
    ("sender", 1.0),
)


@pytest.fixture(scope="module")
def stacked_model() -> object:
    from spamguard.learn.fit import TrainOptions, train

    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")
    return train(items, TrainOptions(blocks=STACKED, folds=3, keep_neighbours=False))


def test_stacked_head_is_one_linear_model_equal_to_its_stacker(
    stacked_model: object, test_half: list[LabelledMessage], tmp_path: Path
) -> None:
    from sklearn.naive_bayes import MultinomialNB

    from spamguard.learn.fit import NB_ALPHA
    from spamguard.scoring.model import save_model

    model = stacked_model
    st = model.training["stacker"]  # type: ignore[attr-defined]
    featurizer = model.featurizer  # type: ignore[attr-defined]
    head = model.head  # type: ignore[attr-defined]
    assert head.platt_ == (1.0, 0.0)  # the stacker is the calibration
    # Recompute the naive Bayes log-ratios from the training data alone and check that the
    # tokens block of the one weight vector carries w_nb * (mean log-ratio of the message's
    # terms - the log-ratio of a term never seen), the latter being in the intercept.
    train_items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")
    from spamguard.learn.fit import _headerless

    msgs = [it.message for it in train_items]
    y = np.asarray([it.is_spam for it in train_items])
    lo, hi = featurizer.offsets()["tokens"]
    from scipy import sparse

    T = sparse.vstack(
        [featurizer.transform(msgs)[:, lo:hi], featurizer.transform(_headerless(msgs))[:, lo:hi]]
    ).tocsr()
    present = T.copy()
    present.data[:] = 1.0
    nb = MultinomialNB(alpha=NB_ALPHA).fit(present, np.r_[y, y].astype(int))
    lr = nb.feature_log_prob_[1] - nb.feature_log_prob_[0]
    unseen = lr[np.asarray(present.sum(axis=0)).ravel() == 0][0]
    test_msgs = [it.message for it in test_half]
    Xt = featurizer.transform(test_msgs)
    nb_part = Xt[:, lo:hi] @ head.coef_[lo:hi]
    # The block is a mean: each message's terms share the block weight equally.
    block = Xt[:, lo:hi].tocsr()
    for i in range(block.shape[0]):
        values = block.data[block.indptr[i] : block.indptr[i + 1]]
        assert len(values) > 0
        assert values == pytest.approx(featurizer.weights["tokens"] / len(values))
    mean_lr = np.asarray(block @ lr).ravel() / featurizer.weights["tokens"]
    expected = st["weights"]["nb"] * (mean_lr - unseen)
    assert nb_part == pytest.approx(expected, rel=1e-6, abs=1e-9)
    # Saved and loaded, it scores like any head, and explains a term once.
    loaded = load_model(save_model(model, tmp_path / "stacked"))  # type: ignore[arg-type]
    scores = HeadScorer(loaded, top_evidence=30).score([it.message for it in test_half])
    spam = [s.p_spam for s, it in zip(scores, test_half, strict=True) if it.is_spam]
    ham = [s.p_spam for s, it in zip(scores, test_half, strict=True) if not it.is_spam]
    assert np.mean(spam) > 0.7 > 0.3 > np.mean(ham)
    for s in scores:
        features = [e.feature for e in s.evidence]
        assert len(features) == len(set(features))
    assert model.oof_p is not None and model.oof_p.shape == (len(train_items),)  # type: ignore[attr-defined]


def test_warm_start_carries_a_stacked_parent(
    stacked_model: object, test_half: list[LabelledMessage]
) -> None:
    flipped = [
        LabelledMessage(it.ref, True, it.group, it.message) for it in test_half if not it.is_spam
    ][:6]
    result = _run(warm_start_steps(stacked_model, flipped, WarmStartOptions(folds=3, l2=0.1)))
    messages = [it.message for it in flipped]
    before = [s.p_spam for s in HeadScorer(stacked_model, top_evidence=0).score(messages)]  # type: ignore[arg-type]
    after = [s.p_spam for s in HeadScorer(result.model, top_evidence=0).score(messages)]
    assert np.mean(after) > np.mean(before) + 0.2
    assert result.model.featurizer.weights == stacked_model.featurizer.weights  # type: ignore[attr-defined]


def test_training_with_a_chosen_signal_list(tmp_path: Path) -> None:
    """A retrain can leave out a signal that marks a corpus source; the model records the
    list it was trained with and scores through it after loading."""
    from spamguard.errors import CorpusError
    from spamguard.learn.fit import TrainOptions, train
    from spamguard.scoring.features import SENDER_FEATURES
    from spamguard.scoring.model import save_model

    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")
    sender = tuple(n for n, _ in SENDER_FEATURES if n not in ("feedback_id", "dkim_pass"))
    options = TrainOptions(
        blocks=(("words", 1.0), ("hand", 1.0), ("tokens", 1.0), ("sender", 1.0)),
        keep_neighbours=False,
        folds=3,
        sender_names=sender,
        hand_names=("html_only", "auth_pass", "auth_fail"),
    )
    model = train(items, options)
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.featurizer.sender_names == sender
    assert loaded.featurizer.hand_names == ("html_only", "auth_pass", "auth_fail")
    assert set(loaded.training["stacker"]["weights"]) == {"head", "nb", *sender}
    assert loaded.head.coef_.shape[0] == loaded.featurizer.n_columns
    with pytest.raises(CorpusError, match="'bimi_pass'"):
        train(items, TrainOptions(keep_neighbours=False, folds=3, sender_names=("bimi_pass",)))


def test_cv_groups_hold_a_copy_out_with_its_original() -> None:
    """An augmented copy in a training fold while its original is held out would leak the
    held-out message into its own out-of-fold score: grouped folds never split a group."""
    from spamguard.learn.fit import TrainOptions, _cv_splits

    y = np.asarray([i % 3 == 0 for i in range(60)] * 2)
    groups = [f"m{i}" for i in range(60)] * 2  # message i and its copy share a key
    splits = _cv_splits(TrainOptions(), y, groups)
    assert len(splits) == TrainOptions().folds
    held = np.concatenate([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(120))
    for train_idx, held_idx in splits:
        assert not {groups[i] for i in train_idx} & {groups[i] for i in held_idx}
        assert y[held_idx].any() and not y[held_idx].all()
    ungrouped = _cv_splits(TrainOptions(), y, None)
    leaks = sum(bool({groups[i] for i in t} & {groups[i] for i in h}) for t, h in ungrouped)
    assert leaks > 0  # without groups, copies do land across folds
    with pytest.raises(Exception, match="one key per"):
        _cv_splits(TrainOptions(), y, groups[:-1])
