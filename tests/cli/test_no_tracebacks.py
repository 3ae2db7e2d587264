"""Commands × bad inputs: every failure is one line on stderr that says what to do, is in the
log file too, exits non-zero, and is never a traceback (issue 21)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from spamguard.cli import main
from spamguard.store import Store
from tests.conftest import FIXTURE_CORPUS

ROOT = Path(__file__).resolve().parents[2]
HAM_DIR = FIXTURE_CORPUS / "ham-a"
SPAM_DIR = FIXTURE_CORPUS / "spam-a"
MAIL = sorted(SPAM_DIR.iterdir())[0]

Setup = Callable[[Path], list[str]]


def _config(tmp: Path, data_dir: Path | None = None, extra: str = "") -> Path:
    config = tmp / "config.toml"
    config.write_text(
        f'data_dir = "{data_dir or tmp / "data"}"\n\n[accounts.work]\nhost = "127.0.0.1"\n'
        'port = 9\nsecurity = "plain"\nusername = "u"\npassword_command = "echo pw"\n' + extra
    )
    return config


def _state(tmp: Path, content: bytes | None) -> Path:
    """A config whose state file holds ``content`` (None: a real one cut short)."""
    config = _config(tmp)
    path = tmp / "data" / "spamguard.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        with Store(path) as store:
            for i in range(300):
                store.add_rescued("work", f"<m{i}@x>", f"{i:064x}", "INBOX")
        path.write_bytes(path.read_bytes()[:8192])
    else:
        path.write_bytes(content)
    return config


def _not_utf8_config(tmp: Path) -> Path:
    config = tmp / "config.toml"
    config.write_bytes(b'data_dir = "caf\xe9"\n')
    return config


def _data_dir_is_a_file(tmp: Path) -> Path:
    blocker = tmp / "data"
    blocker.write_text("not a folder")
    return _config(tmp, data_dir=blocker)


def _split_not_utf8(tmp: Path) -> list[str]:
    split = tmp / "split.tsv"
    split.write_bytes(b"path\tlabel\tgroup\tsplit\nspam-a/\xff\xfe\tspam\tspam\ttrain\n")
    return [
        "train",
        "--split",
        str(split),
        "--corpus",
        str(FIXTURE_CORPUS),
        "--out",
        str(tmp / "m"),
    ]


def _split_missing_cells(tmp: Path) -> list[str]:
    split = tmp / "split.tsv"
    split.write_text("path\tlabel\tgroup\tsplit\n\t\t\ttrain\n")
    return [
        "train",
        "--split",
        str(split),
        "--corpus",
        str(FIXTURE_CORPUS),
        "--out",
        str(tmp / "m"),
    ]


def _garbage_folder(tmp: Path) -> Path:
    folder = tmp / "garbage"
    folder.mkdir()
    (folder / "a.eml").write_bytes(b"\x00\x01\x02 not mail at all")
    (folder / "b.eml").write_bytes(b"")
    return folder


def _precious(tmp: Path) -> Path:
    folder = tmp / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("thesis")
    return folder


TRAIN = ["train", "--ham", str(HAM_DIR), "--spam", str(SPAM_DIR), "--out"]

# (id, setup -> argv); an argv ending in "-" runs with standard input closed.
CASES: list[tuple[str, Setup]] = [
    ("score-missing", lambda t: ["score", str(t / "nope.eml")]),
    ("score-all-garbage", lambda t: ["score", str(_garbage_folder(t))]),
    ("score-jsonl-all-garbage", lambda t: ["score", "--jsonl", str(_garbage_folder(t))]),
    ("score-stdin-closed", lambda t: ["score", "-"]),
    ("score-bad-threshold", lambda t: ["score", "--move", "1.5", str(MAIL)]),
    ("score-jobs-zero", lambda t: ["score", "--jobs", "0", str(MAIL)]),
    ("score-model-missing", lambda t: ["score", "--model", str(t / "no-model"), str(MAIL)]),
    ("explain-stdin-closed", lambda t: ["explain", "-"]),
    ("explain-folder", lambda t: ["explain", str(SPAM_DIR)]),
    ("explain-garbage", lambda t: ["explain", str(_garbage_folder(t) / "a.eml")]),
    ("train-split-not-utf8", _split_not_utf8),
    ("train-split-missing-cells", _split_missing_cells),
    ("train-negative-C", lambda t: [*TRAIN, str(t / "m"), "--C", "-1"]),
    ("train-nan-C", lambda t: [*TRAIN, str(t / "m"), "--C", "nan"]),
    ("train-bad-block", lambda t: [*TRAIN, str(t / "m"), "--block", "embedding=lots"]),
    ("train-unknown-block", lambda t: [*TRAIN, str(t / "m"), "--block", "nope=1"]),
    (
        "train-same-folder",
        lambda t: ["train", "--ham", str(SPAM_DIR), "--spam", str(SPAM_DIR), "--out", str(t / "m")],
    ),
    ("train-out-precious", lambda t: [*TRAIN, str(_precious(t))]),
    (
        "train-only-garbage",
        lambda t: [
            "train",
            "--ham",
            str(_garbage_folder(t)),
            "--spam",
            str(SPAM_DIR),
            "--out",
            str(t / "m"),
        ],
    ),
    ("config-not-utf8", lambda t: ["--config", str(_not_utf8_config(t)), "status"]),
    ("config-not-toml", lambda t: ["--config", str(_write(t / "c.toml", "[[[")), "status"]),
    ("data-dir-is-a-file", lambda t: ["--config", str(_data_dir_is_a_file(t)), "status"]),
    ("state-empty", lambda t: ["--config", str(_state(t, b"")), "run", "--once"]),
    ("state-garbage", lambda t: ["--config", str(_state(t, os.urandom(50_000))), "status"]),
    ("state-truncated", lambda t: ["--config", str(_state(t, None)), "undo", "--last", "1"]),
    ("undo-negative", lambda t: ["--config", str(_config(t)), "undo", "--last", "-1"]),
    ("undo-zero", lambda t: ["--config", str(_config(t)), "undo", "--last", "0"]),
    ("undo-words", lambda t: ["--config", str(_config(t)), "undo", "--id", "x"]),
    ("undo-bad-since", lambda t: ["--config", str(_config(t)), "undo", "--since", "soon"]),
    ("status-negative", lambda t: ["--config", str(_config(t)), "status", "--journal", "-3"]),
    (
        "run-unknown-account",
        lambda t: ["--config", str(_config(t)), "run", "--once", "--account", "nope"],
    ),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("setup", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_without_a_traceback(
    setup: Setup, tmp_path: Path, fixture_model: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv = setup(work)
    if argv[0] == "score" and "--model" not in argv:
        argv[1:1] = ["--model", str(fixture_model)]
    logs = tmp_path / "logs"
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
        SPAMGUARD_LOG_DIR=str(logs),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, "-m", "spamguard", *argv],
        env=env,
        stdin=subprocess.DEVNULL if argv[-1] != "-" else None,
        capture_output=True,
        text=True,
        timeout=300,
        # "-": standard input closed outright, as `spamguard score - <&-` leaves it.
        preexec_fn=(lambda: os.close(0)) if argv[-1] == "-" else None,
    )
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode != 0, (result.stdout, err)
    lines = [line for line in err.splitlines() if line.strip()]
    if result.returncode == 2:  # argparse's usage error: usage line + one error line
        assert lines[-1].startswith("spamguard") and "error:" in lines[-1], err
        return
    assert len(lines) >= 1 and lines[-1].startswith("spamguard: error: "), err
    error = lines[-1].removeprefix("spamguard: error: ")
    assert error in (logs / "spamguard.log").read_text(), "not in the log file"
    assert "bug in SpamGuard" not in error, error  # an anticipated failure, told as such


def test_precious_folder_survives_the_fuzz(tmp_path: Path) -> None:
    """The destructive cases above changed nothing on disk."""
    precious = _precious(tmp_path)
    assert main([*TRAIN, str(precious)]) == 1
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"]


def test_a_locked_state_file_is_one_line_after_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    path = tmp_path / "data" / "spamguard.sqlite3"
    Store(path).close()
    monkeypatch.setattr(Store, "busy_timeout", 0.2)
    holder = sqlite3.connect(str(path), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        assert main(["--config", str(config), "status"]) == 1
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use by another SpamGuard" in err, err


def test_disk_full_while_writing_state_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database or disk is full" as the user sees it: no traceback, what to do."""
    path = tmp_path / "state.sqlite3"
    with Store(path) as store:
        store._db.execute("PRAGMA max_page_count = 1")  # the cheapest full disk there is
        from spamguard.errors import StateError

        with pytest.raises(StateError, match="is full; free some space"):
            for i in range(200):
                store.add_rescued("work", f"<m{i}@x>", "h" * 64, "INBOX")


def test_unexpected_errors_are_one_line_and_the_traceback_goes_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import spamguard.cli as cli
    import spamguard.cli.score as score_commands

    def boom(args: object) -> int:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(score_commands, "cmd_demo", boom)
    logs = tmp_path / "logs"
    monkeypatch.setenv("SPAMGUARD_LOG_DIR", str(logs))
    assert cli.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "simulated bug" in err and "Traceback" not in err
    log = (logs / "spamguard.log").read_text()
    assert "Traceback" in log and "RuntimeError: simulated bug" in log


def test_a_log_file_on_a_full_disk_is_one_line_not_a_logging_traceback(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "spamguard.log").symlink_to("/dev/full")  # every write: ENOSPC
    env = dict(os.environ)
    env.update(
        SPAMGUARD_LOG_DIR=str(logs),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, "-m", "spamguard", "explain", str(tmp_path / "missing.eml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("spamguard: error: ") and "missing.eml" in lines[0]
    assert "cannot write the log" in lines[1] and "No space left" in lines[1], lines
