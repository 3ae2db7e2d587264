"""After a sync the learner featurizes new labels; with none, it must not load a model for it.

It loaded a second copy of the active model (about 40 MiB) at the end of every first sync just
to find there was nothing to do: the peak RSS of a 300-message first sync went 349 -> 309 MiB
without it (benchmarks/bench_first_sync_big.py -n 300).
"""

from __future__ import annotations

from pathlib import Path

from spamguard.learn.corpus import load_split
from spamguard.learn.labels import record_label
from spamguard.learn.loop import Learner
from spamguard.learn.registry import ModelRegistry
from spamguard.store import Store
from tests.conftest import FIXTURE_CORPUS


def _learner(tmp_path: Path, fixture_model: Path, store: Store) -> Learner:
    registry = ModelRegistry(tmp_path / "models")
    registry.register_dir(fixture_model, activate=True)
    return Learner(store, registry=registry)


def test_no_labels_no_model_loaded(tmp_path: Path, fixture_model: Path) -> None:
    with Store(tmp_path / "state.sqlite3") as store:
        learner = _learner(tmp_path, fixture_model, store)
        assert learner.prepare_features() == 0
        assert learner._scorers == {}  # nothing was loaded to find that out


def test_labels_are_still_featurized(tmp_path: Path, fixture_model: Path) -> None:
    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")[:3]
    with Store(tmp_path / "state.sqlite3") as store:
        for item in items:
            raw = (FIXTURE_CORPUS / item.ref).read_bytes()
            msg = item.message
            label = "spam" if item.is_spam else "ham"
            record_label(store, "work", msg.message_id, msg.content_hash, label, "test", raw=raw)
        learner = _learner(tmp_path, fixture_model, store)
        assert learner.prepare_features() == 3
        assert learner._scorers  # the active model's featurizer did the work
