"""Fixtures shared across the suite: the small fixture corpus and a head trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CORPUS = ROOT / "tests" / "fixtures" / "corpus"
SHARED_SPLIT = ROOT.parent / "shared" / "corpora" / "spamassassin-split.tsv"


def shared_corpus_dir() -> Path | None:
    """The fetched SpamAssassin corpus, if this machine has it."""
    env = os.environ.get("SPAMGUARD_CORPUS")
    candidates = [Path(env)] if env else []
    candidates.append(Path.home() / ".cache" / "spamguard" / "corpora" / "spamassassin")
    for path in candidates:
        if (path / ".complete").is_file():
            return path
    return None


@pytest.fixture(autouse=True)
def _private_log_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never write into the user's real log folder."""
    monkeypatch.setenv("SPAMGUARD_LOG_DIR", str(tmp_path_factory.getbasetemp() / "logs"))


@pytest.fixture(scope="session")
def fixture_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A head trained on the fixture corpus's train half (no encoder, so it takes seconds)."""
    from spamguard.corpus import load_split
    from spamguard.scoring.model import save_model
    from spamguard.training import TrainOptions, train

    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")
    options = TrainOptions(keep_neighbours=False, folds=3, version="fixture-head")
    model = train(items, options, source="fixture corpus")
    return save_model(model, tmp_path_factory.mktemp("models") / "fixture")
