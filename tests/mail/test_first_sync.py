"""Learning from an account's existing mail (issue 17 item 4) against the real Dovecot.

The account holds spam in Junk and read mail in the Inbox; `spamguard learn existing` (and
`account add --learn-existing`) reads them without changing anything on the server, trains a
version, checks it on the held-back mail and promotes it; rollback undoes it in one step.
What the server served is read from Dovecot's own log (its per-session ``body_count``), so
"nothing was read" and "nothing was read twice" are the server's word, not ours.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dovecot_server import PASSWORD, DovecotServer
from imap_helpers import account_toml, bodies_served, mailbox_snapshot, settings_for

from spamguard.cli import main
from spamguard.learn.first_sync import FirstSyncOptions, first_sync_steps, provider_says_spam
from spamguard.learn.registry import ModelRegistry
from spamguard.learn.warm import Cancelled
from spamguard.mail.connect import open_mailstore
from spamguard.store import Store
from tests.fixtures.make_corpus import render

OLD = datetime.now(UTC) - timedelta(days=20)


def _mail(group: str, n: int, seed: str) -> bytes:
    rng = random.Random(f"{seed}-{group}-{n}")
    return render(rng, group, n, OLD + timedelta(hours=n)).replace(b"\n", b"\r\n")


def spam(count: int, seed: str = "s") -> list[bytes]:
    return [_mail("spam-a" if i % 3 else "spam-b", i, seed) for i in range(count)]


def ham(count: int, seed: str = "h") -> list[bytes]:
    return [_mail("hard-ham" if i % 2 else "ham-a", i, seed) for i in range(count)]


def append(
    server: DovecotServer,
    user: str,
    folder: str,
    messages: list[bytes],
    flags: tuple[str, ...] = (),
    when: datetime = OLD,
) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        for raw in messages:
            client.append(folder, raw, flags=list(flags), msg_time=when)


@pytest.fixture
def workspace(tmp_path: Path, fixture_model: Path) -> tuple[Path, ModelRegistry]:
    """A data dir whose active model is the fixture head (a real head, quick to retrain)."""
    registry = ModelRegistry(tmp_path / "data" / "models")
    registry.register_dir(fixture_model, activate=True)
    return tmp_path / "data", registry


def write_config(tmp_path: Path, data: Path, server: DovecotServer, user: str) -> Path:
    config = tmp_path / "spamguard.toml"
    config.write_text(f'data_dir = "{data}"\n\n' + account_toml(server, user))
    return config


def test_junk_and_read_mail_make_a_promoted_version_and_rollback_undoes_it(
    dovecot: DovecotServer,
    user: str,
    tmp_path: Path,
    workspace: tuple[Path, ModelRegistry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, registry = workspace
    append(dovecot, user, "Junk", spam(30))
    append(dovecot, user, "INBOX", ham(90), flags=("\\Seen",))
    append(dovecot, user, "INBOX", ham(10, "answered"), flags=("\\Answered",))
    # Not evidence: unread, too recent, or marked junk by another client.
    append(dovecot, user, "INBOX", ham(5, "unread"))
    append(dovecot, user, "INBOX", ham(5, "new"), ("\\Seen",), datetime.now(UTC))
    append(dovecot, user, "INBOX", spam(3, "kw"), flags=("\\Seen", "$Junk"))
    before = mailbox_snapshot(dovecot, user)
    served = bodies_served(dovecot, user)
    config = write_config(tmp_path, data, dovecot, user)

    status = main(["--config", str(config), "learn", "existing", "--account", "work"])

    out = capsys.readouterr().out
    assert status == 0, out
    assert "learned from 30 spam in Junk and 100 read messages" in out
    assert bodies_served(dovecot, user) - served == 130  # exactly the 130 it learned from
    assert mailbox_snapshot(dovecot, user) == before  # nothing moved, no flag changed
    active = registry.active
    assert active is not None and active != "fixture-head"
    info = registry.get(active)
    assert info.parent == "fixture-head" and info.state == "active"
    assert (info.n_spam, info.n_ham) == (30, 100)
    held = info.metrics["held_back"]
    assert held["n"] == 130 and held["errors_candidate"] <= held["errors_active"]
    assert info.metrics["implicit"]["n"] == 130

    # Again, with nothing new on the server: nothing is fetched and no version is made.
    served = bodies_served(dovecot, user)
    assert main(["--config", str(config), "learn", "existing", "--account", "work"]) == 0
    assert "already learned from this mail" in capsys.readouterr().out
    assert bodies_served(dovecot, user) == served
    assert registry.active == active and len(registry.versions()) == 2

    assert main(["--config", str(config), "models", "rollback"]) == 0
    assert registry.active == "fixture-head"
    assert registry.get(active).state == "rolled back"


def test_empty_junk_gives_no_version_and_reads_nothing(
    dovecot: DovecotServer,
    user: str,
    tmp_path: Path,
    workspace: tuple[Path, ModelRegistry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, registry = workspace
    append(dovecot, user, "INBOX", ham(40), flags=("\\Seen",))
    config = write_config(tmp_path, data, dovecot, user)

    status = main(["--config", str(config), "learn", "existing", "--account", "work"])

    out = capsys.readouterr().out
    assert status == 3
    assert "Junk is empty: there is no spam to learn from; no new model version" in out
    assert [v.version for v in registry.versions()] == ["fixture-head"]
    assert registry.active == "fixture-head"
    assert bodies_served(dovecot, user) == 0


@pytest.mark.parametrize("how", ["--no-learn-existing", "no answer (stdin is not a terminal)"])
def test_declined_consent_reads_nothing(
    dovecot: DovecotServer,
    user: str,
    tmp_path: Path,
    workspace: tuple[Path, ModelRegistry],
    how: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, registry = workspace
    append(dovecot, user, "Junk", spam(30))
    append(dovecot, user, "INBOX", ham(40), flags=("\\Seen",))
    config = write_config(tmp_path, data, dovecot, user)
    argv = ["--config", str(config), "account", "add", "work"]
    if how.startswith("--"):
        argv.append(how)

    assert main(argv) == 0

    out = capsys.readouterr().out
    assert "logged in to 127.0.0.1" in out  # the account test did talk to the server
    assert "learned" not in out
    assert bodies_served(dovecot, user) == 0
    with Store(data / "spamguard.sqlite3") as store:
        assert store.first_sync_count() == 0
    assert [v.version for v in registry.versions()] == ["fixture-head"]


def test_consent_given_at_account_add_learns(
    dovecot: DovecotServer,
    user: str,
    tmp_path: Path,
    workspace: tuple[Path, ModelRegistry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, registry = workspace
    append(dovecot, user, "Junk", spam(30))
    append(dovecot, user, "INBOX", ham(40), flags=("\\Seen",))
    config = write_config(tmp_path, data, dovecot, user)

    assert main(["--config", str(config), "account", "add", "work", "--learn-existing"]) == 0

    assert "learned from 30 spam in Junk and 40 read messages" in capsys.readouterr().out
    assert bodies_served(dovecot, user) == 70
    assert registry.active not in (None, "fixture-head")


def test_a_cancelled_run_resumes_without_reading_anything_twice(
    dovecot: DovecotServer, user: str, tmp_path: Path, workspace: tuple[Path, ModelRegistry]
) -> None:
    _, registry = workspace
    append(dovecot, user, "Junk", spam(30))
    append(dovecot, user, "INBOX", ham(60), flags=("\\Seen",))
    settings = settings_for(dovecot, user)
    options = FirstSyncOptions(batch=20)
    cancel = threading.Event()
    with Store(tmp_path / "s.sqlite3") as store:
        mail = open_mailstore(settings, read_only=True)
        mail.connect()
        steps = first_sync_steps(mail, settings, store, registry, options, cancel=cancel)
        with pytest.raises(Cancelled):
            for p in steps:
                if p.step == "reading" and p.done >= 20:
                    cancel.set()  # after the first batch of Junk
        mail.close()
        assert store.first_sync_count("work") == 20
        assert registry.active == "fixture-head"

        mail = open_mailstore(settings, read_only=True)
        mail.connect()
        steps = first_sync_steps(mail, settings, store, registry, options)
        try:
            while True:
                next(steps)
        except StopIteration as stop:
            result = stop.value
        mail.close()
    assert (result.fetched, result.reused) == (70, 20)
    assert result.state == "learned", result.message
    assert (result.n_spam, result.n_ham) == (30, 60)
    assert bodies_served(dovecot, user) == 90  # the server's count: each message once


def test_missing_junk_and_the_caps(
    dovecot: DovecotServer, user: str, tmp_path: Path, workspace: tuple[Path, ModelRegistry]
) -> None:
    from spamguard.learn.first_sync import learn_existing

    _, registry = workspace
    append(dovecot, user, "Junk", spam(30))
    append(dovecot, user, "INBOX", ham(40), flags=("\\Seen",))
    with Store(tmp_path / "s.sqlite3") as store:
        settings = settings_for(dovecot, user, junk_folder="Bulk")
        mail = open_mailstore(settings, read_only=True)
        mail.connect()
        result = learn_existing(mail, settings, store, registry)
        mail.close()
        assert result.state == "too little" and "no Junk folder" in result.message
        assert store.first_sync_count() == 0

        # A Junk larger than the cap: only its newest messages are read.
        settings = settings_for(dovecot, user)
        mail = open_mailstore(settings, read_only=True)
        mail.connect()
        options = FirstSyncOptions(max_spam=12, max_ham=15)
        result = learn_existing(mail, settings, store, registry, options)
        mail.close()
    assert (result.n_spam, result.n_ham, result.fetched) == (12, 15, 27)
    assert bodies_served(dovecot, user) == 27


def test_the_provider_verdict_counts_only_above_the_servers_received_line() -> None:
    own = (
        b"X-Spam-Flag: YES\r\nReceived: from mx.example.net by imap.example.net\r\n"
        b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    forged = (
        b"Received: from mx.example.net by imap.example.net\r\n"
        b"X-Spam-Flag: YES\r\nFrom: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    no_trace = b"X-Spam-Status: Yes, score=9\r\nFrom: a@b.example\r\n\r\nbody\r\n"
    assert provider_says_spam(own)
    assert not provider_says_spam(forged)  # written by the sender, below the server's line
    assert not provider_says_spam(no_trace)


def test_archive_counts_as_kept_mail_and_the_providers_own_verdict_is_counted(
    dovecot: DovecotServer, user: str, tmp_path: Path, workspace: tuple[Path, ModelRegistry]
) -> None:
    from imapclient import IMAPClient

    from spamguard.learn.first_sync import learn_existing

    _, registry = workspace
    trace = b"Received: from mx.example.net by imap.example.net; Mon, 1 Dec 2025 10:00:00 +0000\r\n"
    verdict = b"X-Spam-Flag: YES\r\n"
    junk = spam(12, "pv")
    junk = (
        [verdict + trace + raw for raw in junk[:3]]
        + [
            trace + verdict + raw
            for raw in junk[3:4]  # below the server's line: the sender's
        ]
        + junk[4:]
    )
    with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        client.create_folder("Archive")
    append(dovecot, user, "Junk", junk)
    append(dovecot, user, "INBOX", ham(6, "inbox"), flags=("\\Seen",))
    append(dovecot, user, "Archive", ham(6, "archive"), flags=("\\Seen",))
    settings = settings_for(dovecot, user)
    with Store(tmp_path / "s.sqlite3") as store:
        mail = open_mailstore(settings, read_only=True)
        mail.connect()
        result = learn_existing(mail, settings, store, registry)
        mail.close()
    assert result.ham_folders == ("INBOX", "Archive")
    assert (result.n_spam, result.n_ham, result.n_provider_spam) == (12, 12, 3)
    assert result.state == "learned", result.message
    assert registry.get(str(registry.active)).metrics["implicit"]["provider_spam"] == 3


def _add_on_a_terminal(config: Path, answer: bytes) -> tuple[int, str]:
    """`spamguard account add work` on a pseudo-terminal, answering its question."""
    import os
    import pty
    import sys

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI as a user runs it
        argv = [sys.executable, "-m", "spamguard", "--config", str(config), "account", "add"]
        try:
            os.execv(sys.executable, [*argv, "work"])
        finally:
            os._exit(127)  # never back into pytest in the child
    out = b""
    asked = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal: it has exited
            break
        if not chunk:
            break
        out += chunk
        if not asked and b"[y/N]" in out:
            os.write(fd, answer)
            asked = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert asked, out.decode(errors="replace")
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@pytest.mark.parametrize(("answer", "learns"), [(b"\n", False), (b"y\n", True)])
def test_on_a_terminal_account_add_asks_and_enter_means_no(
    dovecot: DovecotServer,
    user: str,
    tmp_path: Path,
    workspace: tuple[Path, ModelRegistry],
    answer: bytes,
    learns: bool,
) -> None:
    data, registry = workspace
    append(dovecot, user, "Junk", spam(30))
    append(dovecot, user, "INBOX", ham(40), flags=("\\Seen",))
    config = write_config(tmp_path, data, dovecot, user)

    status, out = _add_on_a_terminal(config, answer)

    assert status == 0, out
    assert "Learn from the mail 'work' already holds?" in out
    assert ("learned from 30 spam in Junk and 40 read messages" in out) is learns
    assert bodies_served(dovecot, user) == (70 if learns else 0)
    assert (registry.active != "fixture-head") is learns
