"""`spamguard account edit` and `account remove` (issue 22's leftovers): the command line does
what the app's Edit account / Remove account do, against a real Dovecot and a file keyring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dovecot_server import PASSWORD, DovecotServer

from spamguard.config import load_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    # A real keyring backend that works headless, in the temp dir: never the user's own.
    env["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    return env


def _cli(
    tmp_path: Path, config: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), "account", *args],
        env=_env(tmp_path),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _stored(tmp_path: Path, user_at_host: str) -> str | None:
    from keyrings.alt.file import PlaintextKeyring

    ring = PlaintextKeyring()
    ring.file_path = str(tmp_path / "xdg-data" / "python_keyring" / "keyring_pass.cfg")  # type: ignore[misc]
    return ring.get_password("spamguard", user_at_host)


def test_edit_moves_the_password_with_the_user_name_and_remove_takes_both(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user = dovecot.add_user()
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n[accounts.work]\nhost = "127.0.0.1"\n'
        f'port = {dovecot.port}\nsecurity = "plain"\nusername = "wrong"\n'
        'backlog = "newest 100"\n'
    )
    added = _cli(tmp_path, config, "add", "work", "--password-stdin", "--no-test", stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    assert _stored(tmp_path, "wrong@127.0.0.1") == PASSWORD
    assert _cli(tmp_path, config, "test", "work").returncode != 0  # no such user

    edited = _cli(tmp_path, config, "edit", "work", "--username", user)
    assert edited.returncode == 0, edited.stderr
    assert f"changed account 'work' in {config}: username {user}" in edited.stdout
    account = load_config(config).accounts["work"]
    assert account.username == user and account.port == dovecot.port
    assert 'backlog = "newest 100"' in config.read_text()  # lines it was not asked about stay
    # The stored password followed the account to its new name, and nothing is left behind.
    assert _stored(tmp_path, f"{user}@127.0.0.1") == PASSWORD
    assert _stored(tmp_path, "wrong@127.0.0.1") is None
    tested = _cli(tmp_path, config, "test", "work")
    assert tested.returncode == 0 and f"logged in to 127.0.0.1 as {user}" in tested.stdout

    # A new password from standard input replaces the stored one.
    again = _cli(tmp_path, config, "edit", "work", "--password-stdin", stdin="changed\n")
    assert again.returncode == 0 and "new password stored" in again.stdout
    assert _stored(tmp_path, f"{user}@127.0.0.1") == "changed"
    nothing = _cli(tmp_path, config, "edit", "work")
    assert nothing.returncode != 0 and "nothing to change" in nothing.stderr
    assert "Traceback" not in nothing.stderr

    removed = _cli(tmp_path, config, "remove", "work", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "removed account 'work'" in removed.stdout and "forgotten" in removed.stdout
    assert "work" not in load_config(config).accounts
    assert "[accounts.work]" not in config.read_text()
    assert _stored(tmp_path, f"{user}@127.0.0.1") is None
    gone = _cli(tmp_path, config, "remove", "work", "--yes")
    assert gone.returncode != 0 and "work" in gone.stderr and "Traceback" not in gone.stderr
