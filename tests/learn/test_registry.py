"""Versions: lineage, promote, rollback restores scores exactly, one-file export/import."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from spamguard.errors import ModelError
from spamguard.learn.corpus import load_split
from spamguard.learn.registry import ModelRegistry, active_model_dir
from spamguard.learn.warm import WarmStartOptions, train_from
from spamguard.scoring.model import load_model, load_scorer
from tests.conftest import FIXTURE_CORPUS


@pytest.fixture
def registry(tmp_path: Path, fixture_model: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    reg.register_dir(fixture_model, activate=True)
    return reg


def _child(fixture_model: Path, version: str):  # type: ignore[no-untyped-def]
    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "test")[:10]
    return train_from(fixture_model, items, WarmStartOptions(version=version, l2=0.05))


def test_promote_and_rollback_restore_scores_exactly(
    registry: ModelRegistry, fixture_model: Path
) -> None:
    messages = [
        it.message for it in load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "test")
    ]
    before = [s.p_spam for s in load_scorer(registry.active_dir()).score(messages)]
    registry.add(_child(fixture_model, "personal-1"), state="candidate", label_watermark=10)
    registry.promote("personal-1")
    assert registry.active == "personal-1"
    assert active_model_dir(registry.root) == registry.root / "versions" / "personal-1"
    during = [s.p_spam for s in load_scorer(registry.active_dir()).score(messages)]
    assert during != before
    assert registry.rollback() == "fixture-head"
    after = [s.p_spam for s in load_scorer(registry.active_dir()).score(messages)]
    assert after == before
    states = {v.version: v.state for v in registry.versions()}
    assert states == {"fixture-head": "active", "personal-1": "rolled back"}
    assert registry.get("personal-1").parent == "fixture-head"
    assert registry.rollback() is None  # back to the shipped default
    with pytest.raises(ModelError):
        registry.rollback()


def test_export_import_round_trip(
    registry: ModelRegistry, fixture_model: Path, tmp_path: Path
) -> None:
    registry.add(_child(fixture_model, "personal-2"), state="active")
    out = registry.export(None, tmp_path / "mine.zip", labels={"n": 10})
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    assert "spamguard-personal-model.json" in names and "model/head.npz" in names
    other = ModelRegistry(tmp_path / "elsewhere")
    info = other.import_file(out, activate=True)
    assert info.version == "personal-2" and other.active == "personal-2"
    a = load_model(registry.active_dir()).head.coef_
    b = load_model(other.active_dir()).head.coef_
    assert (a == b).all()


@pytest.mark.parametrize(
    "entry", ["model/../../evil.txt", "model/stage0/../../evil.txt", "model/stage0/sub/x.npz"]
)
def test_import_refuses_paths_outside_the_model(tmp_path: Path, entry: str) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("spamguard-personal-model.json", '{"format": 1}')
        zf.writestr(entry, "x")
    with pytest.raises(ModelError, match="unexpected entry"):
        ModelRegistry(tmp_path / "r").import_file(bad)
