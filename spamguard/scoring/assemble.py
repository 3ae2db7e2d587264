"""Assembling scorers: the default head or cascade from the shipped and personal model files."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from spamguard.errors import ModelError
from spamguard.learn.registry import CASCADE_FILE, STAGE0_DIR

log = logging.getLogger(__name__)

__all__ = [
    "build_cascade",
    "cascade_parts",
    "default_bands_path",
    "default_cheap_dir",
    "load_default_scorer",
]

REMOTE_WARNING = (
    "NOTE: --llm-url sends the text of every message that reaches the LLM stage to {url}. "
    "Message text leaves this machine. Only use a server you run and trust."
)


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
    from spamguard.learn.registry import active_model_dir
    from spamguard.scoring.cascade import Band, Cascade
    from spamguard.scoring.model import load_scorer

    model_dir = Path(model_dir) if model_dir else active_model_dir()
    full = load_scorer(model_dir, encoder=encoder, encoder_kind=encoder_kind)  # type: ignore[arg-type]
    parts = cascade_parts(model_dir, full.version) if cascade else None
    if parts is None:
        log.info("no cascade fits %s: the full head scores every message", full.version)
        return full
    cheap_dir, spec = parts
    cheap = load_scorer(cheap_dir)
    return Cascade([cheap, full], [Band(**spec["bands"][0])], names=["stage0-cheap", "stage1-head"])


def build_cascade(
    cheap_dir: Path | None = None,
    full_dir: Path | None = None,
    bands_file: Path | None = None,
    *,
    llm: bool = False,
    encoder: str | None = None,
    llm_settings: Any = None,
    remote_url: str | None = None,
) -> Any:
    """A `Cascade` from two model directories and a bands file (see `spamguard cascade fit`).

    The LLM stage is added only when asked for and the bands file has an LLM band; if the
    model cannot be loaded the cascade runs without it and says why on stderr.
    """
    from spamguard.scoring.cascade import Band, Cascade, Stacker
    from spamguard.scoring.model import load_scorer

    bands_file = bands_file or default_bands_path()
    if not bands_file.is_file():
        raise ModelError(
            f"no cascade bands at {bands_file}; make them with `spamguard cascade fit`"
        )
    spec = json.loads(bands_file.read_text("utf-8"))
    cheap = load_scorer(cheap_dir or default_cheap_dir())
    full = load_scorer(full_dir, encoder_kind=encoder)  # type: ignore[arg-type]
    made_for = spec.get("for_models") or {}
    if made_for and (made_for.get("cheap"), made_for.get("full")) != (cheap.version, full.version):
        sys.stderr.write(
            f"spamguard: warning: {bands_file} was fitted for {made_for}, not for "
            f"{cheap.version} + {full.version}; refit with `spamguard cascade fit`\n"
        )
    stages: list[Any] = [cheap, full]
    names = ["stage0-cheap", "stage1-head"]
    bands = [Band(**spec["bands"][0])]
    stacker = None
    if llm and len(spec["bands"]) > 1 and not spec.get("stacker"):
        sys.stderr.write(
            "spamguard: the LLM stage is not used for scoring: stacking it with the head did "
            "not improve train-split cross-validation (see the bands file). It still explains "
            "messages on request (`spamguard explain --llm`).\n"
        )
    elif llm and len(spec["bands"]) > 1:
        try:
            stages.append(_llm_stage(llm_settings, remote_url))
            names.append("stage2-llm")
            bands.append(Band(**spec["bands"][1]))
            if spec.get("stacker"):
                stacker = Stacker(**spec["stacker"])
        except ModelError as exc:
            sys.stderr.write(f"spamguard: LLM stage off, scoring with the heads alone: {exc}\n")
    return Cascade(stages, bands, names=names, stacker=stacker)


def _llm_stage(settings: Any, remote_url: str | None) -> Any:
    from spamguard.llm.engine import LLMEngine, LLMScorer, LLMSettings

    settings = settings or LLMSettings()
    if remote_url:
        from spamguard.llm.remote import RemoteLLMScorer

        local: Any = None
        try:
            local = LLMScorer(LLMEngine(settings))
        except ModelError:
            local = None
        return RemoteLLMScorer(remote_url, fallback=local)
    return LLMScorer(LLMEngine(settings))
