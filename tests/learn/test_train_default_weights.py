"""scripts/train_default.py --language-weight: a modern language's train mail weighted apart
(issue 17 item 2: the modern train half holds Japanese spam and next to no Japanese ham)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from spamguard.learn.corpus import ManifestEntry

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_default.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_default_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry(language: str, spam: bool) -> ManifestEntry:
    return ManifestEntry(
        "a/b", "0" * 40, f"{language}-{spam}.eml", "0" * 64, spam, "x", language, 2024, "", "train"
    )


def test_each_modern_message_weighs_the_modern_weight_times_its_languages_factor() -> None:
    td = _script()
    modern = [(_entry("en", False), None), (_entry("ja", True), None), (_entry("zh", True), None)]
    w = td.modern_weights(modern, 0.5, td.parse_language_weights(["ja=0.1", "zh=0"]))
    np.testing.assert_allclose(w, [0.5, 0.05, 0.0])
    np.testing.assert_allclose(td.modern_weights(modern, 1.0), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("spec", ["ja", "ja=x", "=0.1", "ja=-1"])
def test_a_malformed_language_weight_is_a_one_line_error(spec: str) -> None:
    with pytest.raises(SystemExit, match="LANG=WEIGHT"):
        _script().parse_language_weights([spec])


def test_the_calibration_leaves_out_what_is_to_teach_the_head_only() -> None:
    td = _script()
    w = np.asarray([1.0, 1.0, 0.3, 0.3, 1.0])  # 2 SpamAssassin, 2 modern, 1 padded copy
    assert td.calibration_weights(w, 2, 2) is None
    np.testing.assert_allclose(td.calibration_weights(w, 2, 2, copies=False), [1, 1, 0.3, 0.3, 0])
    np.testing.assert_allclose(td.calibration_weights(w, 2, 2, modern=False), [1, 1, 0, 0, 1])
    np.testing.assert_allclose(w, [1.0, 1.0, 0.3, 0.3, 1.0])  # the training weights unchanged
