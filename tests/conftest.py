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
    from spamguard.learn.corpus import load_split
    from spamguard.learn.fit import TrainOptions, train
    from spamguard.scoring.model import save_model

    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")
    options = TrainOptions(keep_neighbours=False, folds=3, version="fixture-head")
    model = train(items, options, source="fixture corpus")
    return save_model(model, tmp_path_factory.mktemp("models") / "fixture")


# Interpreter teardown after the last report. Once in three full runs on this machine
# (2026-12-07) the pytest process died with SIGSEGV *after* printing "736 passed, 1 failed",
# while the native libraries it had loaded (Qt, onnxruntime, llama.cpp, torch) were torn
# down; the cause is not found yet (next step: a core dump of that exit). A crash there says
# nothing about any test, but it turned the run's exit status into 139. scripts/check sets
# SPAMGUARD_TEST_HARD_EXIT=1 so the process ends with pytest's own status right after the
# summary, without that teardown; a crash during a test is still a crash.
_SESSION_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_STATUS and os.environ.get("SPAMGUARD_TEST_HARD_EXIT") == "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_SESSION_STATUS[-1])
