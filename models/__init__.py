"""Data package: the model catalog, prompt templates and the shipped default head.

Installed as ``spamguard_models`` so the files are found from a wheel as well as a checkout.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = HERE / "default"
CATALOG = HERE / "catalog.json"
PROMPTS_DIR = HERE / "prompts"
