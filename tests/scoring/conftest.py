"""Fixtures shared by the scoring tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def spamguard_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """SPAMGUARD_CACHE_DIR for the whole session, so the ONNX encoder is exported once per run.

    Tests never write into the user's real cache. If the environment already sets
    SPAMGUARD_CACHE_DIR (CI can point it at a directory kept between runs), that one is used and
    the export is skipped whenever its manifest still verifies.
    """
    stable = os.environ.get("SPAMGUARD_CACHE_DIR")
    path = Path(stable) if stable else tmp_path_factory.mktemp("spamguard-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPAMGUARD_CACHE_DIR", str(path))
        # Models come from PyPI packages only; never let a library reach for the hub.
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield path
