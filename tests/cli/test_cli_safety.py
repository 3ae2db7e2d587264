"""Careless commands lose nothing: `train --out` never replaces what is not a model, `undo`
asks before undoing many actions, numbers are checked by the parser (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamguard.cli import main
from spamguard.errors import ModelError
from spamguard.scoring.model import load_model, save_model
from tests.conftest import FIXTURE_CORPUS

HAM_DIR = FIXTURE_CORPUS / "ham-a"
SPAM_DIR = FIXTURE_CORPUS / "spam-a"


def test_train_out_refuses_a_folder_of_the_users_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("thesis")
    args = ["train", "--ham", str(HAM_DIR), "--spam", str(SPAM_DIR), "--no-neighbours"]
    assert main([*args, "--out", str(precious)]) == 1
    err = capsys.readouterr().err
    assert (precious / "thesis.txt").read_text() == "thesis"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]
    assert err.count("\n") == 1 and "not a SpamGuard model" in err and "--out" in err
    # A file is refused too, and nothing is written next to it.
    lone = tmp_path / "notes.txt"
    lone.write_text("notes")
    assert main([*args, "--out", str(lone)]) == 1
    assert lone.read_text() == "notes"


def test_save_model_replaces_an_older_model_and_leaves_its_neighbours_alone(
    fixture_model: Path, tmp_path: Path
) -> None:
    model = load_model(fixture_model)
    target = tmp_path / "m"
    save_model(model, target)
    # The user's own "m.old" next to it was deleted by the old rename-then-remove dance.
    mine = tmp_path / "m.old"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    save_model(model, target)
    assert (mine / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.old"]
    assert load_model(target).version == model.version
    # An empty folder is fine; a non-empty non-model is refused by the library call too.
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(model, empty)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    with pytest.raises(ModelError, match="not a SpamGuard model"):
        save_model(model, tmp_path / "docs")
    assert (tmp_path / "docs" / "a.txt").read_text() == "a"


def _config_with_applied_moves(tmp_path: Path, n: int) -> Path:
    """A config whose account points at a port nothing listens on, and a journal of ``n``
    applied moves: `undo` must decide before it ever connects."""
    from spamguard.store import JournalDraft, ScoredMessage, Store

    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n[accounts.work]\nhost = "127.0.0.1"\nport = 9\n'
        'security = "plain"\nusername = "u"\npassword_command = "echo pw"\n'
    )
    with Store(tmp_path / "data" / "spamguard.sqlite3") as store:
        for i in range(n):
            scored = ScoredMessage(
                "work", "INBOX", 1, i + 1, f"<m{i}@x>", f"{i:064x}", 0.99, "spam", "t", "v"
            )
            (entry,) = store.record_plan(
                scored, [JournalDraft("move_junk", "INBOX", 1, i + 1, "Junk")]
            )
            store.mark_applied(entry, dst_uidvalidity=2, dst_uid=i + 1)
    return config


@pytest.mark.parametrize("last", ["-1", "0", "two", "1.5"])
def test_undo_last_takes_only_a_positive_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], last: str
) -> None:
    config = _config_with_applied_moves(tmp_path, 3)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "undo", "--last", last])
    assert exit_info.value.code == 2
    assert "--last" in capsys.readouterr().err


def test_undo_of_many_actions_wants_yes_and_touches_nothing_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spamguard.cli.mail import UNDO_WITHOUT_ASKING
    from spamguard.store import Store

    n = UNDO_WITHOUT_ASKING + 1
    config = _config_with_applied_moves(tmp_path, n)
    for argv in (["--last", str(n)], ["--since", "1h"]):
        assert main(["--config", str(config), "undo", *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"undo {n} actions" in err and "--yes" in err, err
    with Store(tmp_path / "data" / "spamguard.sqlite3") as store:
        assert [e.state for e in store.journal()] == ["applied"] * n
        assert store.counts("work")["rescued"] == 0
    # With --yes it goes ahead (and here meets the server that is not there).
    assert main(["--config", str(config), "undo", "--last", str(n), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "--yes" not in err and err.count("\n") == 1


def test_a_huge_input_file_is_not_read_whole(tmp_path: Path) -> None:
    """A 1.5 GB file took 1.8 GB of memory before the parser's byte cap applied."""
    import subprocess
    import sys

    huge = tmp_path / "huge.eml"
    with huge.open("wb") as fh:  # sparse: no disk is used
        fh.write(b"From: a@example.org\r\nSubject: big\r\n\r\n")
        fh.truncate(1_500_000_000)
    # VmHWM is this program's own peak (ru_maxrss would carry the forking parent's).
    code = (
        "import re, sys\n"
        "from spamguard.cli.score import _read_bytes\n"
        "from pathlib import Path\n"
        "data = _read_bytes(Path(sys.argv[1]))\n"
        "status = Path('/proc/self/status').read_text()\n"
        "print(len(data), re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(huge)], capture_output=True, text=True, check=True
    ).stdout.split()
    from spamguard.cli.score import MAX_INPUT_BYTES

    assert int(out[0]) == MAX_INPUT_BYTES
    assert int(out[1]) < 400_000  # KiB: far below the file's 1.5 GB


def test_train_says_which_files_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    ham = tmp_path / "ham"
    shutil.copytree(HAM_DIR, ham)
    (ham / "zz-not-mail.eml").write_bytes(b"\x00\x01 binary, not mail")
    out = tmp_path / "model"
    rc = main(
        ["train", "--ham", str(ham), "--spam", str(SPAM_DIR), "--out", str(out), "--no-neighbours"]
    )
    assert rc == 0 and (out / "config.json").is_file()
    err = capsys.readouterr().err
    assert "skipped 1 file(s)" in err and "zz-not-mail.eml" in err, err


@pytest.mark.parametrize(("answer", "goes_ahead"), [(b"n\n", False), (b"y\n", True)])
def test_undo_of_many_actions_asks_on_a_terminal(
    tmp_path: Path, answer: bytes, goes_ahead: bool
) -> None:
    """On a terminal the question is asked; only "y" goes ahead (here to a server that is not
    there, which is its own one-line error)."""
    import os
    import select
    import subprocess
    import sys

    from spamguard.cli.mail import UNDO_WITHOUT_ASKING

    n = UNDO_WITHOUT_ASKING + 1
    config = _config_with_applied_moves(tmp_path, n)
    main_fd, child_fd = os.openpty()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "spamguard", "--config", str(config), "undo", "--last", str(n)],
        stdin=child_fd,
        stdout=subprocess.DEVNULL,
        stderr=child_fd,
        env=env,
    )
    os.close(child_fd)
    seen = b""
    while b"[y/N]" not in seen:
        ready, _, _ = select.select([main_fd], [], [], 60)
        assert ready, seen
        seen += os.read(main_fd, 4096)
    assert f"Undo {n} actions in work?".encode() in seen
    os.write(main_fd, answer)
    rest = b""
    while proc.poll() is None or select.select([main_fd], [], [], 0.2)[0]:
        if select.select([main_fd], [], [], 0.2)[0]:
            try:
                rest += os.read(main_fd, 4096)
            except OSError:
                break
    os.close(main_fd)
    assert proc.wait(60) == 1
    if goes_ahead:  # went ahead: the refusal is about the server, not about --yes
        assert b"--yes" not in rest and b"127.0.0.1" in rest, rest
    else:
        assert b"nothing was undone" in rest and b"--yes" in rest, rest
