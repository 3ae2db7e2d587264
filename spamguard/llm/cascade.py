"""The cascade with the LLM as its third stage, as `spamguard bench` and the benchmarks build it.

The default scorer (`spamguard.scoring.assemble`) never includes the LLM: stacking it with the
head did not improve train-split cross-validation. This assembles it on request.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from spamguard.errors import ModelError
from spamguard.scoring.assemble import default_bands_path, default_cheap_dir

__all__ = ["REMOTE_WARNING", "build_cascade", "llm_stage"]

REMOTE_WARNING = (
    "NOTE: --llm-url sends the text of every message that reaches the LLM stage to {url}. "
    "Message text leaves this machine. Only use a server you run and trust."
)


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
            stages.append(llm_stage(llm_settings, remote_url))
            names.append("stage2-llm")
            bands.append(Band(**spec["bands"][1]))
            if spec.get("stacker"):
                stacker = Stacker(**spec["stacker"])
        except ModelError as exc:
            sys.stderr.write(f"spamguard: LLM stage off, scoring with the heads alone: {exc}\n")
    return Cascade(stages, bands, names=names, stacker=stacker)


def llm_stage(settings: Any, remote_url: str | None) -> Any:
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.scorer import LLMScorer

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
