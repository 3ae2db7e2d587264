"""Fixtures shared by the LLM tests: the same session cache directory as the scoring tests."""

from tests.scoring.conftest import spamguard_cache_dir

__all__ = ["spamguard_cache_dir"]
