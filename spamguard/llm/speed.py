"""Which backend the local LLM ran on here, and its tokens per second (issue 18 item 3).

`spamguard doctor` and `spamguard bench` report it. One measurement evaluates a fixed
explanation prompt (about 300 tokens, from an empty context, so no cached prefix helps) and
then generates a fixed number of tokens greedily: the two figures that decide how long an
explanation takes. ``llama_cpp`` is imported only in the engine's worker thread.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from spamguard.llm.engine import LLMEngine
from spamguard.llm.prompts import Outcome, rationale_prompt_text
from spamguard.scoring.base import Evidence, Score

__all__ = ["SPEED_MAIL", "LLMSpeed", "measure_speed"]

# A fixed, ordinary mail: every measurement reads the same tokens.
SPEED_MAIL = (
    "From: Priya Natarajan <priya.natarajan@corvid-labs.example.com>\n"
    "Subject: Notes from Tuesday's planning meeting\n\n"
    "Hi Alex, here are my notes from Tuesday. The ingestion rewrite moves to January and "
    "Jonas owns the migration plan. We keep the old exporter until the two remaining "
    "customers have switched. The budget for the test cluster is approved and Mei will "
    "order the machines this week. Could you check the timeline in the planning document "
    "before Friday? I have put your name next to the load tests and the capacity review. "
    "Thanks, Priya"
)
_SPEED_SCORE = Score(
    0.04,
    "head",
    "speed",
    (
        Evidence("signal:log_text_chars", -1.1, "length of the text"),
        Evidence("text:planning", -0.8, "'planning' in the text"),
    ),
)


@dataclass(frozen=True, slots=True)
class LLMSpeed:
    """One measurement: what ran (model, backend, layers, threads) and how fast."""

    model: str
    backend: str  # the backend in words, as `llm.gpu_layers` chose it
    device: str  # "CPU" or "GPU"
    n_gpu_layers: int  # -1: every layer
    threads: int
    prompt_tokens: int
    prompt_tokens_per_s: float
    generated_tokens: int
    generation_tokens_per_s: float
    load_seconds: float

    def summary(self) -> str:
        layers = (
            "all layers on the GPU"
            if self.n_gpu_layers < 0
            else f"{self.n_gpu_layers} layers on the GPU"
            if self.n_gpu_layers
            else "0 GPU layers"
        )
        return (
            f"{self.model} ran on {self.device} ({layers}, {self.threads} threads): "
            f"prompt {_rate(self.prompt_tokens_per_s)} tokens/s, "
            f"generation {_rate(self.generation_tokens_per_s)} tokens/s"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def measure_speed(engine: LLMEngine, *, generate: int = 32) -> LLMSpeed:
    """Load ``engine`` if needed, then time a fixed prompt and ``generate`` greedy tokens."""
    prompt = engine.rationale_prompt
    text = rationale_prompt_text(
        prompt, _SPEED_SCORE, SPEED_MAIL, Outcome("ham", "it would be left alone")
    )

    def job() -> tuple[int, float, int, float]:
        import llama_cpp
        import numpy as np

        llm = engine._ensure()
        tokens = engine._tok(text, special=True)
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prompt_s = time.perf_counter() - started
        n_vocab = llm.n_vocab()
        made = 0
        started = time.perf_counter()
        for _ in range(generate):
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)
            )
            if llm.n_tokens + 1 >= engine.settings.n_ctx:
                break
            llm.eval([int(np.argmax(logits))])
            made += 1
        gen_s = time.perf_counter() - started
        # The next explanation must not reuse this context as if it held its prefix.
        llm.reset()
        return len(tokens), prompt_s, made, gen_s

    n_prompt, prompt_s, made, gen_s = engine._owner.submit(job).result()
    return LLMSpeed(
        model=engine.entry.name,
        backend=engine.backend,
        device="GPU" if engine.n_gpu_layers else "CPU",
        n_gpu_layers=engine.n_gpu_layers,
        threads=engine.threads,
        prompt_tokens=n_prompt,
        prompt_tokens_per_s=n_prompt / prompt_s if prompt_s > 0 else 0.0,
        generated_tokens=made,
        generation_tokens_per_s=made / gen_s if gen_s > 0 else 0.0,
        load_seconds=engine.load_seconds,
    )
