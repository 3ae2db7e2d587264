"""CLI: train --from, score --model with the result, models list/register/rollback/export, adapt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spamguard.cli import main
from tests.conftest import FIXTURE_CORPUS

HAM = FIXTURE_CORPUS / "hard-ham"
SPAM = FIXTURE_CORPUS / "spam-b"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("SPAMGUARD_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path


def test_train_from_then_score_with_the_result(
    fixture_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adapted"
    argv = ["train", "--from", str(fixture_model), "--ham", str(HAM), "--spam", str(SPAM)]
    assert main([*argv, "--out", str(out), "--version", "adapted-1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["version"] == "adapted-1"
    assert config["training"]["parent"] == "fixture-head"
    capsys.readouterr()
    first = sorted(SPAM.iterdir())[0]
    assert main(["score", "--model", str(out), "--jsonl", str(first)]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["model_version"] == "adapted-1"


def test_models_lineage_rollback_and_export(
    fixture_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "register", str(fixture_model), "--activate"]) == 0
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "* fixture-head" in listing and "active" in listing
    assert main(["models", "export", str(tmp_path / "mine.zip")]) == 0
    assert main(["models", "rollback"]) == 0
    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert data["active"] is None
    assert data["versions"][0]["state"] == "rolled back"


def test_adapt_prints_before_and_after_and_draws_the_curve(
    fixture_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "curve.png"
    argv = ["adapt", "--model", str(fixture_model), "--ham", str(HAM), "--spam", str(SPAM)]
    assert (
        main([*argv, "--k", "4,10", "--plot", str(plot), "--json", str(tmp_path / "a.json")]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["K=4", "K=10"]
    assert plot.stat().st_size > 10_000
    result = json.loads((tmp_path / "a.json").read_text())
    assert [r["k"] for r in result["rows"]] == [4, 10]
