"""Model directory round trip, integrity checks and the HeadScorer's explanations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spamguard.errors import ModelError
from spamguard.learn.corpus import load_split
from spamguard.scoring.model import HeadScorer, load_model, save_model
from tests.conftest import FIXTURE_CORPUS


def _test_items() -> list:
    return load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "test")


def test_round_trip_gives_identical_scores(fixture_model: Path, tmp_path: Path) -> None:
    model = load_model(fixture_model)
    copy = save_model(model, tmp_path / "copy")
    messages = [it.message for it in _test_items()]
    first = HeadScorer(model).score(messages)
    second = HeadScorer(load_model(copy)).score(messages)
    assert [s.p_spam for s in first] == pytest.approx([s.p_spam for s in second], abs=1e-6)
    config = json.loads((copy / "config.json").read_text())
    assert config["version"] == "fixture-head"
    assert config["training"]["data_hash"] and config["training"]["n_spam"] > 0
    assert set(config["files"]) == {"head.npz"}
    # No pickle anywhere in a model directory.
    for path in copy.iterdir():
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                assert all(arrays[k].dtype != object for k in arrays.files)


def test_fixture_head_separates_the_held_out_half(fixture_model: Path) -> None:
    items = _test_items()
    scores = HeadScorer(load_model(fixture_model)).score([it.message for it in items])
    spam = [s.p_spam for s, it in zip(scores, items, strict=True) if it.is_spam]
    ham = [s.p_spam for s, it in zip(scores, items, strict=True) if not it.is_spam]
    assert min(spam) > max(ham) - 0.2
    assert np.mean(spam) > 0.7 > 0.3 > np.mean(ham)


def test_evidence_names_real_terms_of_the_message(fixture_model: Path) -> None:
    item = next(it for it in _test_items() if it.is_spam)
    score = HeadScorer(load_model(fixture_model), top_evidence=5).score([item.message])[0]
    assert 0 < len(score.evidence) <= 5
    weights = [abs(e.weight) for e in score.evidence]
    assert weights == sorted(weights, reverse=True)
    text = (item.message.subject + " " + item.message.text).lower()
    word_evidence = [e for e in score.evidence if e.feature.startswith(("subject:", "text:"))]
    for ev in word_evidence:
        term = ev.feature.split(":", 1)[1]
        assert all(part in text for part in term.split(" "))


def test_corrupt_weights_are_refused(fixture_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fixture_model, broken)
    data = bytearray((broken / "head.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "head.npz").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        load_model(broken)


def test_missing_and_foreign_model_dirs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="spamguard train"):
        load_model(tmp_path / "nothing")
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "config.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ModelError, match="format"):
        load_model(tmp_path / "future")


def test_empty_batch_scores_nothing(fixture_model: Path) -> None:
    assert HeadScorer(load_model(fixture_model)).score([]) == []


def test_explanations_leave_out_headers_every_message_has() -> None:
    from spamguard.message import parse_message
    from spamguard.scoring.model import load_scorer

    raw = (
        b"Subject: You won a prize\nFrom: a@b.example\n\nClaim your prize now at http://x.example\n"
    )
    score = load_scorer().score([parse_message(raw)])[0]
    assert score.evidence
    assert not any(e.feature in ("hn:subject", "hn:from") for e in score.evidence)


def test_character_ngrams_are_one_total_and_names_cover_only_asked_columns(
    fixture_model: Path,
) -> None:
    model = load_model(fixture_model)
    item = next(it for it in _test_items() if it.is_spam)
    score = HeadScorer(model, top_evidence=20).score([item.message])[0]
    features = [e.feature for e in score.evidence]
    assert not any(f.startswith("chars:") for f in features)
    assert features.count("chars") <= 1
    featurizer = model.featurizer
    row = featurizer.transform([item.message])
    every = featurizer.term_names(item.message)
    # Every hashed column of the message is named, and asking for a few names only those.
    hashed_end = featurizer.offsets()["hand"][0]
    assert {c for c in row.indices if c < hashed_end} <= set(every)
    few = sorted(every)[:5]
    assert featurizer.term_names(item.message, few) == {c: every[c] for c in few}


def test_compact_weights_score_every_message_exactly_as_the_dense_vector() -> None:
    """A loaded scorer keeps the shipped head's weights as their non-zero entries (~50 MB
    less): decisions, evidence pushes and the dense vector must be the dense head's, to the
    bit, on real mail (the fixture corpus, both halves) and on views of it."""
    from spamguard.scoring.head import CompactWeights
    from spamguard.scoring.model import default_model_dir

    dense = load_model(default_model_dir())
    compact = load_model(default_model_dir(), compact=True)
    assert isinstance(compact.head.coef_, CompactWeights)
    assert isinstance(dense.head.coef_, np.ndarray)
    assert np.array_equal(np.asarray(compact.head.coef_), dense.head.coef_)
    items = _test_items() + load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")
    messages = [it.message for it in items]
    X = dense.featurizer.transform(messages, np.zeros((len(messages), 384)))
    assert X.format == "csr"  # the compact path, not its dense fallback
    want = dense.head.decision_function(X)
    got = compact.head.decision_function(X)
    assert want.tobytes() == got.tobytes()  # bit for bit, not approximately
    # The decision with the weights at every entry (what the evidence reads), both ways.
    for head in (dense.head, compact.head):
        decision, weights = head.decision_and_weights(X)
        assert decision.tobytes() == want.tobytes()
        assert weights.tobytes() == dense.head.coef_[X.indices].tobytes()
    # Columns with and without a weight, in any order, as a scalar and as an array.
    cols = np.concatenate([X.indices[:500], [0, dense.head.coef_.shape[0] - 1]])[::-1]
    assert dense.head.coef_[cols].tobytes() == compact.head.coef_[cols].tobytes()
    assert compact.head.coef_[int(cols[0])] == dense.head.coef_[int(cols[0])]
    # A row with no weighted column at all, and an empty batch.
    empty = X[:0]
    assert compact.head.decision_function(empty).shape == (0,)
    assert len(compact.head.coef_) == dense.head.coef_.shape[0]


def test_compact_weights_refuse_columns_outside_the_vector() -> None:
    from spamguard.scoring.head import CompactWeights

    with pytest.raises(ValueError):
        CompactWeights(np.array([3, 3]), np.array([1.0, 2.0]), 10)
    with pytest.raises(ValueError):
        CompactWeights(np.array([10]), np.array([1.0]), 10)
    weights = CompactWeights(np.array([7, 2]), np.array([0.5, -1.5]), 10)
    assert np.asarray(weights).tolist() == [0, 0, -1.5, 0, 0, 0, 0, 0.5, 0, 0]
    assert weights[[2, 3, 7]].tolist() == [-1.5, 0.0, 0.5]
    with pytest.raises(IndexError):
        weights[[10]]
    nothing = CompactWeights(np.zeros(0, dtype=np.int64), np.zeros(0), 130)
    assert nothing[[0, 64, 129]].tolist() == [0.0, 0.0, 0.0]


def test_log_l2_rows_is_scikit_learns_normalize_to_the_bit() -> None:
    import numpy as np
    from scipy import sparse
    from sklearn.preprocessing import normalize

    from spamguard.scoring.head import _log_l2_rows

    rng = np.random.default_rng(3)
    for weight in (1.0, 0.5, 2.3):
        dense = np.ceil(rng.random((40, 500)) * 9) * (rng.random((40, 500)) < 0.05)
        dense[5] = 0  # an empty row
        counts = sparse.csr_matrix(dense)
        before = counts.copy()
        expected = counts.astype(np.float64)
        expected.data = np.log1p(expected.data)
        expected = normalize(expected) * weight
        ours = _log_l2_rows(counts, weight)
        assert np.array_equal(ours.indptr, expected.indptr)
        assert np.array_equal(ours.indices, expected.indices)
        assert ours.data.tobytes() == expected.data.tobytes()
        assert (counts != before).nnz == 0  # the counts are left as they were
