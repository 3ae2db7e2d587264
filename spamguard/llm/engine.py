"""The local LLM engine: one owner thread per `Llama`, label-logit scoring, text generation.

The LLM never samples to classify: one forward pass over a fixed instruction prompt with the
mail quoted between delimiters, then the logits of the label tokens give a log-odds that a
Platt calibration (fitted on a train-split subset) turns into a probability. Its text
(rationales) is shown to the user and never decides an action.

``llama_cpp`` is imported only inside the worker thread, so importing this module is cheap.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from spamguard.config import LLMConfig
from spamguard.errors import ModelError
from spamguard.llm.catalog import (
    DEFAULT_MODEL,
    CatalogEntry,
    _entry_for_file,
    load_catalog,
    resolve_model_path,
    verify_sha256,
)
from spamguard.llm.prompts import Prompt, load_prompt
from spamguard.metrics import IdleCores, cpu_count

__all__ = [
    "EngineStats",
    "LLMEngine",
    "LLMSettings",
    "choose_gpu_layers",
    "gpu_layers",
    "shared_engine",
]

log = logging.getLogger(__name__)


T = TypeVar("T")
PrefixCache = Literal["keep", "state", "off"]

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """How to run the LLM stage.

    ``n_gpu_layers="auto"`` offloads every layer when llama.cpp was built with a GPU backend
    (CUDA, Metal, Vulkan, ...) and none otherwise. ``token_budget`` caps the quoted mail;
    the whole classification prompt then stays under ``n_ctx``.
    """

    model: str = DEFAULT_MODEL
    model_path: Path | None = None
    n_gpu_layers: int | Literal["auto"] = "auto"
    threads: int | None = None
    n_ctx: int = 1024
    token_budget: int = 256
    prefix_cache: PrefixCache = "keep"
    rationale_tokens: int = 96
    rationale_mail_tokens: int = 192
    verify: bool = True
    prompt_variant: str | None = None
    # Off by default: with a URL, the quoted mail is sent to that OpenAI-compatible server
    # (message text leaves the machine); failures fall back to the local model.
    remote_url: str | None = None
    remote_timeout: float = 10.0

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> LLMSettings:
        """The ``[llm]`` section of the user's config as engine settings."""
        return cls(
            model=cfg.model,
            model_path=cfg.model_path,
            n_gpu_layers=cfg.n_gpu_layers,
            threads=cfg.threads,
            n_ctx=cfg.n_ctx,
            token_budget=cfg.token_budget,
            remote_url=cfg.remote_url,
            remote_timeout=cfg.remote_timeout,
        )

    def resolved_threads(self, free_cores: float | None = None) -> int:
        """``threads`` when set; else the cores other programs leave free, 1 to 4.

        llama.cpp's threads wait for each other at every layer, so one descheduled thread
        stalls them all. Measured on a 2-core machine (SmolLM2, ~215 prompt tokens): idle,
        2 threads 0.61 s and 1 thread 1.15 s per message; with another program busy on one
        core, 2 threads 8.7 s and 1 thread 1.7 s. Auto therefore follows the free cores,
        re-read before every job (`IdleCores`).
        """
        if self.threads:
            return self.threads

        free = cpu_count() if free_cores is None else free_cores
        return max(1, min(int(free + 0.5), 4))


def gpu_layers(setting: int | Literal["auto"]) -> tuple[int, str]:
    """(layers to offload, the backend in words) for this llama.cpp build."""
    import llama_cpp

    return choose_gpu_layers(setting, bool(llama_cpp.llama_supports_gpu_offload()))


def choose_gpu_layers(setting: int | Literal["auto"], supported: bool) -> tuple[int, str]:
    """(layers to offload, the backend in words) given whether llama.cpp reports GPU offload.

    "auto": every layer (-1) when it does, none when it does not. A number is taken as is
    where offload works and becomes 0 (with how to rebuild) where it does not.
    """
    if setting == "auto":
        if supported:
            return -1, "GPU offload (llama.cpp reports a GPU backend): all layers"
        return 0, "CPU (this llama.cpp build has no GPU backend; auto chose 0 GPU layers)"
    if setting and not supported:
        return 0, (
            f"CPU (n_gpu_layers={setting} asked for, but this llama.cpp build has no GPU "
            "backend; rebuild llama-cpp-python with CMAKE_ARGS=-DGGML_CUDA=on or -DGGML_METAL=on)"
        )
    if setting:
        return int(setting), f"GPU offload: {setting} layers"
    return 0, "CPU (n_gpu_layers=0)"


# --------------------------------------------------------------------------- the owner thread


class _Owner:
    """One thread that owns a thread-unsafe handle; everyone else submits work to it."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.ident = self._thread.ident

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        if not self._thread.is_alive():
            fut.set_exception(ModelError("the LLM worker has stopped; restart SpamGuard"))
            return fut
        self._jobs.put((fn, fut))
        return fut

    def stop(self, timeout: float | None = 10.0) -> None:
        self._jobs.put(None)
        if threading.get_ident() != self._thread.ident:
            self._thread.join(timeout)


@dataclass
class EngineStats:
    forward_passes: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    eval_seconds: float = 0.0


class LLMEngine:
    """A GGUF model run by llama.cpp in one owner thread.

    Construction only resolves and verifies the file; the model loads in the worker on the
    first job (or `load()`). Every failure to find, verify or load it is a `ModelError`.
    """

    def __init__(
        self, settings: LLMSettings | None = None, *, entry: CatalogEntry | None = None
    ) -> None:
        self.settings = settings or LLMSettings()
        if entry is None:
            if self.settings.model_path is not None:
                entry = _entry_for_file(Path(self.settings.model_path), self.settings.model)
            else:
                catalog = load_catalog()
                if self.settings.model not in catalog:
                    raise ModelError(
                        f"unknown LLM {self.settings.model!r}; known: {', '.join(catalog)}. "
                        "See `spamguard llm list`."
                    )
                entry = catalog[self.settings.model]
        self.entry = entry
        self.path = resolve_model_path(entry)
        if self.settings.verify:
            verify_sha256(self.path, entry.sha256)
        self.prompt = load_prompt(entry.prompt)
        # The label variant chosen by cross-validation is recorded with the calibration.
        variant = self.settings.prompt_variant
        calibrated_for = str((entry.calibration or {}).get("prompt", ""))
        if variant is None and "+" in calibrated_for:
            variant = calibrated_for.split("+", 1)[1]
        if variant:
            self.prompt = self.prompt.variant(variant)
        self.rationale_prompt = load_prompt(entry.rationale_prompt)
        self.backend = "not loaded"
        self.n_gpu_layers = 0
        self.stats = EngineStats()
        self.load_seconds = 0.0
        self._llm: Any = None
        self._prefix_state: Any = None
        self._prefix_tokens: list[int] = []
        self._label_ids: dict[str, list[int]] = {}
        self._owner = _Owner(f"llm-{entry.name}")
        self._idle = IdleCores()
        self.threads = 0  # in use now (auto follows the free cores)

    # ----------------------------------------------------------------- worker-side helpers

    def _ensure(self) -> Any:
        assert threading.get_ident() == self._owner.ident, "Llama touched off its owner thread"
        if self._llm is not None:
            self._fit_threads()
            return self._llm
        started = time.perf_counter()
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelError(
                "the LLM stage needs llama-cpp-python: pip install llama-cpp-python"
            ) from exc
        layers, self.backend = gpu_layers(self.settings.n_gpu_layers)
        self.n_gpu_layers = layers
        threads = self.settings.resolved_threads(self._idle.free())
        self.threads = threads
        try:
            llm: Any = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=self.settings.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=layers,
                n_batch=512,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {self.path} ({exc}); the file may be damaged or "
                "not a GGUF model. Reinstall or re-download it; SpamGuard scores with the "
                "head alone meanwhile."
            ) from exc
        self._llm = llm
        self._prefix_tokens = self._tok(self.prompt.prefix, special=True)
        self._label_ids = {}
        for label, words in self.prompt.labels.items():
            ids = sorted({self._tok(w, special=False)[0] for w in words})
            self._label_ids[label] = ids
        if self.settings.prefix_cache == "state":
            llm.reset()
            llm.eval(self._prefix_tokens)
            self._prefix_state = llm.save_state()
        self.load_seconds = time.perf_counter() - started
        return llm

    def _fit_threads(self) -> None:
        if self.settings.threads:
            return
        threads = self.settings.resolved_threads(self._idle.free())
        if threads != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
            log.debug("LLM threads %d -> %d (free cores)", self.threads, threads)
            self.threads = threads

    def _tok(self, text: str, *, special: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def _mail_tokens(self, mail: str, budget: int) -> list[int]:
        tokens = self._tok(mail, special=False)
        if len(tokens) > budget:
            tokens = tokens[:budget] + self._tok(" […]", special=False)
        return tokens

    def _eval_prompt(self, prefix: list[int], rest: list[int]) -> np.ndarray:
        """Evaluate prefix + rest and return the logits after the last token."""
        import llama_cpp

        llm = self._llm
        tokens = prefix + rest
        if len(tokens) >= self.settings.n_ctx:
            raise ModelError(
                f"prompt of {len(tokens)} tokens does not fit n_ctx={self.settings.n_ctx}; "
                "lower the token budget or raise n_ctx"
            )
        mode = self.settings.prefix_cache
        started = time.perf_counter()
        if mode == "state" and prefix == self._prefix_tokens and self._prefix_state is not None:
            llm.load_state(self._prefix_state)
            reused = len(prefix)
        elif mode == "off":
            llm.reset()
            reused = 0
        else:
            # Keep whatever leading tokens the context already holds (the fixed instruction
            # prefix, at least); llama.cpp drops the KV cells past n_tokens on the next eval.
            held = llm.input_ids[: llm.n_tokens].tolist()
            reused = 0
            limit = min(len(held), len(tokens) - 1)
            while reused < limit and held[reused] == tokens[reused]:
                reused += 1
            llm.n_tokens = reused
        llm.eval(tokens[reused:])
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
        ).copy()
        self.stats.forward_passes += 1
        self.stats.prompt_tokens += len(tokens) - reused
        self.stats.reused_tokens += reused
        self.stats.eval_seconds += time.perf_counter() - started
        return logits

    def _label_logodds(self, logits: np.ndarray) -> float:
        def lse(ids: list[int]) -> float:
            vals = logits[ids].astype(np.float64)
            m = float(vals.max())
            return m + float(np.log(np.exp(vals - m).sum()))

        return lse(self._label_ids["spam"]) - lse(self._label_ids["ham"])

    # ----------------------------------------------------------------- public API

    def load(self) -> LLMEngine:
        self._owner.submit(self._ensure).result()
        return self

    def label_logodds(self, mails: Sequence[str]) -> list[float]:
        """log P(spam label) - log P(ham label) after the prompt, one forward pass per mail."""

        def job() -> list[float]:
            self._ensure()
            suffix = self._tok(self.prompt.suffix, special=True)
            out = []
            for mail in mails:
                body = self._mail_tokens(mail, self.settings.token_budget)
                out.append(
                    self._label_logodds(self._eval_prompt(self._prefix_tokens, body + suffix))
                )
            return out

        return self._owner.submit(job).result()

    def label_logodds_variants(
        self, mails: Sequence[str], prompts: Sequence[Prompt]
    ) -> list[list[float]]:
        """Log-odds under several prompts sharing one prefix (label-token cross-validation).

        The mail is evaluated once; each suffix is evaluated on top of it.
        """

        def job() -> list[list[float]]:
            self._ensure()
            variants = []
            for p in prompts:
                ids = {
                    lab: sorted({self._tok(w, special=False)[0] for w in words})
                    for lab, words in p.labels.items()
                }
                variants.append((self._tok(p.suffix, special=True), ids))
            rows = []
            saved = self._label_ids
            try:
                for mail in mails:
                    body = self._mail_tokens(mail, self.settings.token_budget)
                    row = []
                    for suffix, ids in variants:
                        self._label_ids = ids
                        logits = self._eval_prompt(self._prefix_tokens, body + suffix)
                        row.append(self._label_logodds(logits))
                    rows.append(row)
            finally:
                self._label_ids = saved
            return rows

        return self._owner.submit(job).result()

    def generate(
        self, before: str, mail: str, after: str, *, max_tokens: int, stop: Sequence[str] = ()
    ) -> Iterator[str]:
        """Greedy continuation of ``before + mail + after``, streamed piece by piece.

        The mail is tokenized without special tokens, so it can never open a chat turn.
        """
        pieces: queue.Queue[str | BaseException | None] = queue.Queue()
        cancelled = threading.Event()

        def job() -> None:
            llm = self._ensure()
            try:
                head = self._tok(before, special=True)
                body = self._mail_tokens(mail, self.settings.rationale_mail_tokens)
                tail = self._tok(after, special=True)
                logits = self._eval_prompt(head, body + tail)
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                eos = {int(llm.token_eos())}
                text = ""
                generated: list[int] = []
                for _ in range(max_tokens):
                    if cancelled.is_set():
                        break
                    # Greedy with a repetition penalty (as llama.cpp's repeat_penalty):
                    # small models otherwise loop on one phrase.
                    if generated:
                        seen = np.fromiter(set(generated[-64:]), dtype=np.int64)
                        vals = logits[seen]
                        logits[seen] = np.where(vals > 0, vals / 1.3, vals * 1.3)
                    token = int(np.argmax(logits))
                    generated.append(token)
                    if token in eos or llm.n_tokens + 1 >= self.settings.n_ctx:
                        break
                    piece = decoder.decode(llm.detokenize([token], special=True))
                    text += piece
                    if any(s in text for s in stop):
                        cut = min(text.find(s) for s in stop if s in text)
                        overshoot = len(text) - cut
                        if overshoot < len(piece):
                            pieces.put(piece[: len(piece) - overshoot])
                        break
                    if piece:
                        pieces.put(piece)
                    self.stats.generated_tokens += 1
                    logits = self._eval_next(token)
            except BaseException as exc:
                pieces.put(exc)
            finally:
                pieces.put(None)

        self._owner.submit(job)
        try:
            while True:
                item = pieces.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    def _eval_next(self, token: int) -> np.ndarray:
        import llama_cpp

        llm = self._llm
        llm.eval([token])
        return np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
        ).copy()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.entry.name,
            "file": str(self.path),
            "quantization": self.entry.quantization,
            "sha256": self.entry.sha256,
            "backend": self.backend,
            "n_gpu_layers": self.n_gpu_layers,
            "threads": self.threads or self.settings.resolved_threads(),
            "threads_setting": self.settings.threads or "auto (free cores, 1-4)",
            "n_ctx": self.settings.n_ctx,
            "token_budget": self.settings.token_budget,
            "prefix_cache": self.settings.prefix_cache,
            "prompt": self.prompt.version,
        }

    def close(self) -> None:
        def drop() -> None:
            if self._llm is not None:
                with contextlib.suppress(Exception):
                    self._llm.close()
            self._llm = None

        with contextlib.suppress(Exception):
            self._owner.submit(drop).result(timeout=30)
        self._owner.stop()


# --------------------------------------------------------------------------- rationales

_engines: dict[LLMSettings, LLMEngine] = {}
_engines_lock = threading.Lock()


def shared_engine(settings: LLMSettings | None = None) -> LLMEngine:
    """One engine per settings for the whole process (the model loads once)."""
    settings = settings or LLMSettings()
    with _engines_lock:
        engine = _engines.get(settings)
        if engine is None:
            engine = LLMEngine(settings)
            _engines[settings] = engine
        return engine
