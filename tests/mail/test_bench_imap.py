"""`spamguard bench --imap`: a first sync of a scratch copy on a real Dovecot, timed per phase,
that leaves the account's own mail exactly as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dovecot_server import DovecotServer
from imap_helpers import PASSWORD, account_toml, append_all, mailbox_snapshot, make_mail

pytestmark = pytest.mark.imap

HERE = Path(__file__).parent
REPO = HERE.parent.parent


def _cli(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env["SPAMGUARD_SCORER"] = "header_scorer:factory"
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    return subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _folders(server: DovecotServer, user: str) -> set[str]:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
        client.login(user, PASSWORD)
        return {str(name) for _, _, name in client.list_folders()}


def test_bench_imap_times_each_phase_on_a_copy(
    dovecot: DovecotServer, user: str, tmp_path: Path
) -> None:
    messages = [make_mail(i, p) for i, p in enumerate([0.99, 0.7, 0.1, 0.02] * 10)]
    append_all(dovecot, user, messages)
    config = tmp_path / "config.toml"
    config.write_text(account_toml(dovecot, user))
    before = mailbox_snapshot(dovecot, user)
    folders = _folders(dovecot, user)
    out = tmp_path / "bench.json"
    result = _cli(tmp_path, config, "bench", "--imap", "work", "-n", "30", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    # The newest 30 of 40: positions 10..39 of the 0.99/0.7/0.1/0.02 cycle.
    assert figures["messages"] == figures["scored"] == 30
    assert (figures["moved"], figures["flagged"], figures["refused"]) == (7, 7, 0)
    assert all(figures["phases"][p] > 0 for p in ("fetch", "parse", "score", "actions"))
    assert sum(figures["phases"].values()) < figures["wall_seconds"]
    assert set(figures["phases_cpu"]) == set(figures["phases"])
    assert "CPU ms/msg" in result.stdout
    assert "messages/s end to end" in result.stdout and "actions" in result.stdout
    # The account's own mail and folders are exactly as they were.
    assert mailbox_snapshot(dovecot, user) == before
    assert _folders(dovecot, user) == folders
    # Nothing of the bench went into the user's state.
    assert not (tmp_path / "xdg-data").exists() or not any(
        (tmp_path / "xdg-data").rglob("*.sqlite3")
    )


def test_bench_imap_refuses_clearly(dovecot: DovecotServer, user: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(account_toml(dovecot, user))
    empty = _cli(tmp_path, config, "bench", "--imap", "work")
    assert empty.returncode != 0 and "is empty" in empty.stderr, empty.stderr
    assert "Traceback" not in empty.stderr
    assert not {"SpamGuard-bench", "SpamGuard-bench-Junk"} & _folders(dovecot, user)
    missing = _cli(tmp_path, config, "bench")
    assert (
        missing.returncode != 0
        and "--split" in missing.stderr
        and "Traceback" not in missing.stderr
    )
