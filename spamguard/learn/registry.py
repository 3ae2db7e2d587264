"""Personal head versions in the user's data dir: lineage, the active pointer, rollback, export."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from spamguard.config import default_data_dir
from spamguard.errors import ModelError
from spamguard.scoring.assemble import CASCADE_FILE, STAGE0_DIR

__all__ = [
    "CASCADE_FILE",
    "EXPORT_MANIFEST",
    "STAGE0_DIR",
    "ModelRegistry",
    "VersionInfo",
    "VersionState",
    "active_model_dir",
    "default_models_root",
]

VersionState = Literal["candidate", "shadow", "active", "retired", "rejected", "rolled back"]
REGISTRY = "registry.json"
EXPORT_MANIFEST = "spamguard-personal-model.json"
EXPORT_FORMAT = 1
_LOCK = threading.RLock()


def default_models_root() -> Path:
    """Where personal versions live (``$SPAMGUARD_MODELS_DIR`` overrides, for tests)."""
    env = os.environ.get("SPAMGUARD_MODELS_DIR")
    if env:
        return Path(env)

    return default_data_dir() / "models"


def active_model_dir(root: Path | None = None) -> Path:
    """The model `load_scorer()` should use: the promoted personal version, else the default."""
    return ModelRegistry(root).active_dir()


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One head version and why it is where it is."""

    version: str
    parent: str
    created_at: str
    state: VersionState
    n_labels: int = 0
    n_spam: int = 0
    n_ham: int = 0
    # Feedback ids up to this one were used; later labels are "new" to this version.
    label_watermark: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    shadow: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # relative to the registry root, or absolute for a registered directory


class ModelRegistry:
    """``registry.json`` next to one directory per version.

    Writes are atomic (temp file + rename) under a process lock and an advisory file lock,
    so the tray app and a CLI command can both promote or roll back safely.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_models_root()

    # -- reading ---------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        path = self.root / REGISTRY
        if not path.is_file():
            return {"active": None, "history": [], "versions": {}}
        try:
            data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"{path} is unreadable ({exc}); move it away to fall back to the default model"
            ) from exc
        return data

    def versions(self) -> list[VersionInfo]:
        """Oldest first."""
        data = self._read()
        return [_info(v) for v in data["versions"].values()]

    def get(self, version: str) -> VersionInfo:
        data = self._read()
        if version not in data["versions"]:
            known = ", ".join(data["versions"]) or "none yet"
            raise ModelError(f"no model version {version!r} (known: {known})")
        return _info(data["versions"][version])

    @property
    def active(self) -> str | None:
        active: str | None = self._read().get("active")
        return active

    def version_dir(self, version: str) -> Path:
        path = Path(self.get(version).path)
        return path if path.is_absolute() else self.root / path

    def active_dir(self) -> Path:
        from spamguard.scoring.model import default_model_dir

        active = self.active
        if active is None:
            return default_model_dir()
        path = self.version_dir(active)
        if not (path / "config.json").is_file():
            raise ModelError(
                f"the active model {active!r} is missing from {path}; "
                "run `spamguard models rollback` to go back to the previous one"
            )
        return path

    def in_shadow(self) -> VersionInfo | None:
        for info in reversed(self.versions()):
            if info.state == "shadow":
                return info
        return None

    # -- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with _LOCK, _file_lock(self.root / ".lock"):
            data = self._read()
            yield data
            tmp = self.root / f".{REGISTRY}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
            os.replace(tmp, self.root / REGISTRY)

    def add(
        self,
        model: Any,
        *,
        state: VersionState = "candidate",
        label_watermark: int = 0,
        metrics: dict[str, Any] | None = None,
        reason: str = "",
    ) -> VersionInfo:
        """Save ``model`` (a `HeadModel`) as a new version."""
        from spamguard.scoring.model import save_model

        rel = Path("versions") / _safe_name(model.version)
        save_model(model, self.root / rel)
        training = model.training
        info = VersionInfo(
            version=model.version,
            parent=str(training.get("parent", "")),
            created_at=_now(),
            state=state,
            n_labels=int(training.get("n_spam", 0)) + int(training.get("n_ham", 0)),
            n_spam=int(training.get("n_spam", 0)),
            n_ham=int(training.get("n_ham", 0)),
            label_watermark=label_watermark,
            metrics=metrics or {},
            reason=reason,
            path=str(rel),
        )
        with self._edit() as data:
            data["versions"][info.version] = asdict(info)
            if state == "active":
                self._activate(data, info.version)
        return info

    def register_dir(self, model_dir: Path, *, activate: bool = False, reason: str = "") -> str:
        """Register an existing model directory (the base a user starts from) in place."""
        from spamguard.scoring.model import load_model

        model = load_model(model_dir)
        info = VersionInfo(
            version=model.version,
            parent=str(model.training.get("parent", "")),
            created_at=_now(),
            state="active" if activate else "candidate",
            n_labels=0,
            metrics={},
            reason=reason or f"registered from {model_dir}",
            path=str(Path(model_dir).resolve()),
        )
        with self._edit() as data:
            data["versions"][info.version] = asdict(info)
            if activate:
                self._activate(data, info.version)
        return info.version

    def update(self, version: str, **changes: Any) -> VersionInfo:
        with self._edit() as data:
            if version not in data["versions"]:
                raise ModelError(f"no model version {version!r}")
            info = replace(_info(data["versions"][version]), **changes)
            data["versions"][version] = asdict(info)
        return info

    def promote(self, version: str, reason: str = "promoted by hand") -> VersionInfo:
        """Make ``version`` the active model; the previous one stays for rollback."""
        with self._edit() as data:
            if version not in data["versions"]:
                raise ModelError(f"no model version {version!r}")
            path = Path(data["versions"][version]["path"])
            path = path if path.is_absolute() else self.root / path
            if not (path / "config.json").is_file():
                raise ModelError(f"model version {version!r} has no files at {path}")
            self._activate(data, version)
            data["versions"][version]["reason"] = reason
            return _info(data["versions"][version])

    def reject(self, version: str, reason: str) -> VersionInfo:
        return self.update(version, state="rejected", reason=reason)

    def rollback(self) -> str | None:
        """Back to the version active before this one (None: the shipped default). Immediate:
        only the pointer moves; the files and cached scores of both versions stay."""
        with self._edit() as data:
            current = data.get("active")
            if current is None:
                raise ModelError("the shipped default model is active; there is nothing to undo")
            history: list[str] = data["history"]
            while history and history[-1] == current:
                history.pop()
            previous = history[-1] if history else None
            data["versions"][current]["state"] = "rolled back"
            data["versions"][current]["reason"] = f"rolled back at {_now()}"
            data["active"] = previous
            if previous is not None:
                data["versions"][previous]["state"] = "active"
            return previous

    @staticmethod
    def _activate(data: dict[str, Any], version: str) -> None:
        current = data.get("active")
        if current is not None and current != version and current in data["versions"]:
            data["versions"][current]["state"] = "retired"
        data["versions"][version]["state"] = "active"
        data["active"] = version
        if not data["history"] or data["history"][-1] != version:
            data["history"].append(version)

    # -- one-file export / import ------------------------------------------------------------

    def export(
        self, version: str | None, out: Path, *, labels: dict[str, Any] | None = None
    ) -> Path:
        """One zip: the model directory's files plus a JSON manifest (lineage, label counts).
        Plain files only; no pickle, nothing executable."""
        version = version or self.active
        if version is None:
            raise ModelError("no personal model is active; give a version to export")
        info = self.get(version)
        src = self.version_dir(version)
        manifest = {
            "format": EXPORT_FORMAT,
            "version": asdict(info) | {"path": ""},
            "labels": labels or {},
            "exported_at": _now(),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(EXPORT_MANIFEST, json.dumps(manifest, indent=2))
            for path in sorted(src.iterdir()):
                if path.is_file():
                    zf.write(path, f"model/{path.name}")
            # The version's own cascade stage 0, when it has one (see spamguard.learn.loop).
            cheap = src / STAGE0_DIR
            for path in sorted(cheap.iterdir()) if cheap.is_dir() else ():
                if path.is_file():
                    zf.write(path, f"model/{STAGE0_DIR}/{path.name}")
        os.replace(tmp, out)
        return out

    def import_file(self, path: Path, *, activate: bool = False) -> VersionInfo:
        """Add the model in an exported zip as a version; its files are checked on load."""
        from spamguard.scoring.model import load_model, save_model

        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path} is not a SpamGuard model export ({exc})") from exc
        with zf, tempfile.TemporaryDirectory(dir=_mkdir(self.root)) as tmp:
            names = zf.namelist()
            if EXPORT_MANIFEST not in names:
                raise ModelError(f"{path} has no {EXPORT_MANIFEST}; not a SpamGuard export")
            manifest = json.loads(zf.read(EXPORT_MANIFEST))
            if manifest.get("format") != EXPORT_FORMAT:
                raise ModelError(f"{path} is export format {manifest.get('format')!r}")
            model_dir = Path(tmp) / "model"
            model_dir.mkdir()
            for name in names:
                if name == EXPORT_MANIFEST:
                    continue
                base = name.removeprefix("model/")
                sub = ""
                if base.startswith(f"{STAGE0_DIR}/"):
                    sub, base = STAGE0_DIR, base.removeprefix(f"{STAGE0_DIR}/")
                # Only flat file names (in the model or its stage0/ folder): nothing can land
                # outside the model directory.
                if not name.startswith("model/") or "/" in base or base in ("", ".", ".."):
                    raise ModelError(f"{path} holds an unexpected entry {name!r}; refused")
                target = model_dir / sub
                target.mkdir(exist_ok=True)
                (target / base).write_bytes(zf.read(name))
            model = load_model(model_dir)
            meta = manifest.get("version", {})
            if model.version in {v.version for v in self.versions()}:
                raise ModelError(f"model version {model.version!r} is already here")
            info = self.add(
                model,
                state="candidate",
                metrics=dict(meta.get("metrics", {})),
                reason=f"imported from {path.name}",
            )
            # Its cascade comes along when it had one; each part is checked as it loads.
            if (model_dir / STAGE0_DIR).is_dir() and (model_dir / CASCADE_FILE).is_file():
                dest = self.version_dir(info.version)
                save_model(load_model(model_dir / STAGE0_DIR), dest / STAGE0_DIR)
                shutil.copyfile(model_dir / CASCADE_FILE, dest / CASCADE_FILE)
        if activate:
            info = self.promote(info.version, f"imported from {path.name}")
        return info


def _info(raw: dict[str, Any]) -> VersionInfo:
    known = set(VersionInfo.__dataclass_fields__)
    return VersionInfo(**{k: v for k, v in raw.items() if k in known})


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _safe_name(version: str) -> str:
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in version)
    if not name.strip("."):
        raise ModelError(f"model version {version!r} cannot be a directory name")
    return name


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: the process lock is all we have
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_version_files(registry: ModelRegistry, version: str) -> None:
    """Delete a rejected version's files (its registry entry stays, for the lineage)."""
    path = registry.version_dir(version)
    if path.is_relative_to(registry.root):
        shutil.rmtree(path, ignore_errors=True)
