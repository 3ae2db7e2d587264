"""The evaluation metrics agree with scikit-learn and with hand-worked cases."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spamguard.evaluate import auc, calibration_error, metrics, recall_at_fpr


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=2, max_size=80))
def test_auc_matches_sklearn(pairs: list[tuple[bool, int]]) -> None:
    from sklearn.metrics import roc_auc_score

    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] / 20 for p in pairs])
    if y.all() or not y.any():
        assert np.isnan(auc(y, s))
    else:
        assert abs(auc(y, s) - roc_auc_score(y, s)) < 1e-12


def test_recall_at_fpr_counts_allowed_ham() -> None:
    # 1000 ham, 10 spam. Two ham score high; 0.1% FPR allows exactly one of them.
    ham = np.r_[np.full(998, 0.1), 0.95, 0.8]
    spam = np.r_[np.full(8, 0.9), 0.85, 0.7]
    y = np.r_[np.zeros(1000, bool), np.ones(10, bool)]
    recall, bar = recall_at_fpr(y, np.r_[ham, spam], 0.001)
    assert bar == 0.8
    assert recall == 0.9  # the eight at 0.9 and the one at 0.85
    recall_1pct, _ = recall_at_fpr(y, np.r_[ham, spam], 0.01)
    assert recall_1pct == 1.0


def test_calibration_error_zero_when_frequencies_match() -> None:
    y = np.r_[np.ones(3), np.zeros(7), np.ones(9), np.zeros(1)]
    p = np.r_[np.full(10, 0.3), np.full(10, 0.9)]
    assert calibration_error(y, p) < 1e-12
    assert abs(calibration_error(np.ones(4), np.full(4, 0.5)) - 0.5) < 1e-12


def test_metrics_at_thresholds_and_groups() -> None:
    y = [True, True, False, False, False]
    p = [0.95, 0.6, 0.55, 0.2, 0.92]
    groups = ["spam", "spam", "hard-ham", "ham", "ham"]
    m = metrics(y, p, groups, move=0.9, flag=0.5)
    assert m["at_move"]["false_positives"] == 1 and m["at_move"]["recall"] == 0.5
    assert m["at_flag"]["recall"] == 1.0 and m["at_flag"]["false_positives"] == 2
    assert m["groups"]["hard-ham"]["count_at_flag"] == 1
    assert m["groups"]["hard-ham"]["count_at_move"] == 0
