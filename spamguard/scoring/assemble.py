"""Assembling the default scorer: a head, with the cascade in front when its bands fit it.

Which head is active (the user's promoted personal version, else the shipped default) is the
registry's answer (`spamguard.learn.registry`), asked by `spamguard.engine.runtime`; given no
directory, this assembles the shipped default.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "CASCADE_FILE",
    "STAGE0_DIR",
    "cascade_parts",
    "default_bands_path",
    "default_cheap_dir",
    "load_default_scorer",
]

# A head version keeps the cascade fitted for it beside its own files (see spamguard.learn.loop);
# the shipped ones sit in spamguard_models.
STAGE0_DIR = "stage0"
CASCADE_FILE = "cascade.json"


def default_bands_path() -> Path:
    from spamguard_models import HERE

    return Path(HERE) / CASCADE_FILE


def default_cheap_dir() -> Path:
    """The shipped stage-0 head (the default head's blocks without the sentence encoder)."""
    from spamguard_models import HERE

    return Path(HERE) / STAGE0_DIR


def cascade_parts(model_dir: Path, full_version: str) -> tuple[Path, dict[str, Any]] | None:
    """(stage-0 model directory, bands spec) of a cascade fitted for the model in
    ``model_dir``: its own (a personal version keeps one beside it, see
    `spamguard.learn.loop`) or the shipped one. None when no cascade fits that model."""
    candidates = [(model_dir / STAGE0_DIR, model_dir / CASCADE_FILE)]
    candidates.append((default_cheap_dir(), default_bands_path()))
    for cheap_dir, bands in candidates:
        try:
            spec = json.loads(bands.read_text("utf-8"))
            cheap = json.loads((cheap_dir / "config.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        made_for = spec.get("for_models") or {}
        if (made_for.get("cheap"), made_for.get("full")) == (cheap.get("version"), full_version):
            return cheap_dir, spec
    return None


def load_default_scorer(
    model_dir: Path | None = None,
    *,
    encoder: Any = None,
    encoder_kind: str | None = None,
    cascade: bool = True,
) -> Any:
    """What scores mail by default: the cascade when its bands were fitted for this model.

    The shipped bands (chosen on train-split cross-validation) fit the shipped default head;
    a personal version carries its own when its cheap stage was retrained with it and passed
    the check on the user's labels. For any other head the cascade's accuracy is unproven,
    so the full head scores every message, as it does with ``cascade=False``.
    """
    from spamguard.scoring.cascade import Band, Cascade
    from spamguard.scoring.model import default_model_dir, load_scorer

    model_dir = Path(model_dir) if model_dir else default_model_dir()
    full = load_scorer(model_dir, encoder=encoder, encoder_kind=encoder_kind)  # type: ignore[arg-type]
    parts = cascade_parts(model_dir, full.version) if cascade else None
    if parts is None:
        log.info("no cascade fits %s: the full head scores every message", full.version)
        return full
    cheap_dir, spec = parts
    cheap = load_scorer(cheap_dir)
    return Cascade([cheap, full], [Band(**spec["bands"][0])], names=["stage0-cheap", "stage1-head"])
