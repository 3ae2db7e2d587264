"""Injected faults against a real Dovecot: SIGKILLed engine, server restarts, UIDVALIDITY reset,
folders renamed by another client, and the CLI end to end. After each, every message exists
exactly once and the journal matches the server."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dovecot_server import DovecotServer
from imap_helpers import (
    PASSWORD,
    HeaderScorer,
    Recorder,
    account_toml,
    append_all,
    junk_batch,
    mailbox_snapshot,
    make_mail,
    settings_for,
)

from spamguard.engine.events import ActionApplied, ConnectionState, Error, Progress
from spamguard.engine.service import AccountWorker, Service
from spamguard.store import Store

pytestmark = pytest.mark.imap

HERE = Path(__file__).parent
REPO = HERE.parent.parent


def _mid(raw: bytes) -> str:
    return raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()


def _where(
    server: DovecotServer, user: str, folders: tuple[str, ...] = ("INBOX", "Junk")
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    for folder, rows in mailbox_snapshot(server, user, folders).items():
        for message_id, _, flags in rows:
            if "\\Deleted" not in flags:
                out[message_id].append(folder)
    return out


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env["SPAMGUARD_SCORER"] = "header_scorer:factory"
    env["HOME"] = str(tmp_path)  # nothing of the real user's config or keyring
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env.pop("SPAMGUARD_FAILPOINT", None)
    env.update(extra)
    return env


def _write_config(tmp_path: Path, server: DovecotServer, user: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n' + account_toml(server, user, extra=extra)
    )
    return path


def _check_journal_matches_server(server: DovecotServer, user: str, store: Store) -> None:
    """Every applied move's COPYUID points at those very bytes in the destination."""
    from imapclient import IMAPClient

    entries = [e for e in store.journal(account="work") if e.action == "move_junk"]
    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
        client.login(user, PASSWORD)
        info = client.select_folder("Junk", readonly=True)
        for e in entries:
            assert e.state == "applied", e
            if e.dst_uid is None or e.dst_uidvalidity != info[b"UIDVALIDITY"]:
                continue
            data = client.fetch([e.dst_uid], ["BODY.PEEK[]<0.262144>"])
            raw = next(v for k, v in data[e.dst_uid].items() if k.startswith(b"BODY[]"))
            assert hashlib.sha256(raw).hexdigest() == e.content_hash


def _wait_for_junk_above(
    server: DovecotServer, user: str, count: int, proc: subprocess.Popen[bytes], deadline: float
) -> None:
    """Return once Junk holds more than `count` messages, or the process ended."""
    from imapclient import IMAPClient

    end = time.monotonic() + deadline
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        while time.monotonic() < end and proc.poll() is None:
            status = client.folder_status("Junk", [b"MESSAGES"])
            if status[b"MESSAGES"] > count:
                return
            time.sleep(0.02)


@pytest.mark.parametrize(
    "capabilities",
    [
        None,
        # No MOVE: UID COPY -> STORE \Deleted -> UID EXPUNGE, with kills inside that window.
        "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS SPECIAL-USE",
    ],
    ids=["MOVE", "COPY+UIDPLUS"],
)
def test_engine_sigkilled_at_random_points(
    dovecot_factory, tmp_path: Path, capabilities: str | None
) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory(capabilities=capabilities)
    user = server.add_user()
    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(50)]
    flagged = [make_mail(100 + i, 0.7, subject=f"maybe {i}") for i in range(10)]
    ham = [make_mail(200 + i, 0.05, subject=f"ham {i}") for i in range(10)]
    everything = spam + flagged + ham
    random.Random(1).shuffle(everything)
    append_all(server, user, everything)
    config = _write_config(tmp_path, server, user, extra="batch_size = 5\n")
    cmd = [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"]
    rng = random.Random(50)
    kills = finished = 0
    junk_counts = []
    for attempt in range(40):
        extra = {"TEST_SCORER_DELAY": "0.02"}
        if capabilities and attempt % 2 == 1:
            # Die between COPY and EXPUNGE, the window a MOVE-less server leaves open.
            point = rng.choice(["after_copy", "after_mark_deleted"])
            extra["SPAMGUARD_FAILPOINT"] = f"{point}:{rng.randint(1, 4)}"
        proc = subprocess.Popen(
            cmd, env=_cli_env(tmp_path, **extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # The first runs are always killed at a random moment after they started moving
        # mail (measured by the server's Junk count, not by the clock, so a slow or busy
        # machine still kills mid-work); later runs may finish.
        if attempt < 8:
            before = junk_counts[-1] if junk_counts else 0
            _wait_for_junk_above(server, user, before, proc, deadline=60)
            time.sleep(rng.uniform(0.0, 0.05))
        try:
            _, err = proc.communicate(timeout=0.01 if attempt < 8 else 60)
            if proc.returncode == 0:
                finished += 1
                if finished >= 2 and kills >= 5:
                    break
            else:
                assert proc.returncode in (137, -9), err.decode()
                kills += 1
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
        junk_counts.append(len(mailbox_snapshot(server, user, ("Junk",))["Junk"]))
    # Kills landed mid-work: Junk filled up over several interrupted runs.
    assert len({c for c in junk_counts if 0 < c < 50}) >= 2, junk_counts
    assert finished >= 2 and kills >= 5, (finished, kills)
    where = _where(server, user)
    for raw in spam:
        assert where[_mid(raw)] == ["Junk"], _mid(raw)
    for raw in flagged + ham:
        assert where[_mid(raw)] == ["INBOX"], _mid(raw)
    assert sum(len(v) for v in where.values()) == len(everything)
    with Store(tmp_path / "data" / "spamguard.sqlite3") as store:
        assert store.journal(states=["planned"]) == []
        moves = collections.Counter(e.message_id for e in store.journal(actions=["move_junk"]))
        assert set(moves) == {_mid(r) for r in spam} and set(moves.values()) == {1}
        flags = collections.Counter(e.message_id for e in store.journal(actions=["flag"]))
        assert set(flags) == {_mid(r) for r in flagged} and set(flags.values()) == {1}
        _check_journal_matches_server(server, user, store)


_NO_MOVE = "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS SPECIAL-USE"


def test_kill_before_uid_expunge_is_finished_not_read_as_a_rescue(
    dovecot_factory, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """Killed after COPY + STORE \\Deleted, before UID EXPUNGE: the restart expunges the
    \\Deleted original, and neither a rescue nor a label comes of it. Two such false rescues
    from one sender used to allow-list it, and its later spam was only flagged."""
    import hashlib

    from imapclient import IMAPClient

    from spamguard.message import parse_message
    from spamguard.store import JournalDraft, ScoredMessage

    server = dovecot_factory(capabilities=_NO_MOVE)
    user = server.add_user()
    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(2)]
    append_all(server, user, spam)
    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as other:
        other.login(user, PASSWORD)
        uidvalidity = other.select_folder("INBOX")[b"UIDVALIDITY"]
        for uid, raw in zip(other.search(["ALL"]), spam, strict=True):
            msg = parse_message(raw)
            scored = ScoredMessage(
                "work",
                "INBOX",
                uidvalidity,
                uid,
                msg.message_id,
                hashlib.sha256(raw).hexdigest(),
                0.99,
                "spam",
                "test",
                "test-header-1",
                (),
                from_addr=msg.from_addr,
            )
            store.record_plan(
                scored, [JournalDraft("move_junk", "INBOX", uidvalidity, uid, "Junk")]
            )
            # What the engine sent before the SIGKILL: UID COPY, then STORE \\Deleted.
            other.copy([uid], "Junk")
            other.add_flags([uid], ["\\Deleted"])
    worker = AccountWorker(settings_for(server, user), scorer=HeaderScorer(), store=store)
    assert worker.run_once()
    snap = mailbox_snapshot(server, user)
    assert snap["INBOX"] == []  # expunged, not left \\Deleted for the next sync to meet
    assert sorted(m for m, _, _ in snap["Junk"]) == sorted(_mid(r) for r in spam)
    for raw in spam:
        mid = _mid(raw)
        assert not store.is_rescued("work", mid, hashlib.sha256(raw).hexdigest())
    assert store.feedback_rows("work") == []
    assert not store.is_correspondent("work", "sender@example.org")
    assert [e.state for e in store.journal(account="work")] == ["applied", "applied"]


def test_deleted_original_met_again_is_not_a_rescue(dovecot_factory, store: Store) -> None:  # type: ignore[no-untyped-def]
    """Without UIDPLUS a move leaves the original \\Deleted for the user's client to expunge;
    meeting it again (a batch re-read after a kill) must not count as the user rescuing it."""
    server = dovecot_factory(capabilities="IMAP4rev1 LITERAL+ SASL-IR IDLE SPECIAL-USE")
    user = server.add_user()
    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(2)]
    append_all(server, user, spam)
    settings = settings_for(server, user)
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    assert all("\\Deleted" in f for _, _, f in mailbox_snapshot(server, user)["INBOX"])
    state = store.folder_state("work", "INBOX")
    assert state is not None
    # The run was killed before it saved how far it got: the batch is read again.
    store.save_folder_state(dataclasses.replace(state, uidnext=1))
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    assert store.counts("work")["rescued"] == 0 and store.feedback_rows("work") == []
    assert not store.is_correspondent("work", "sender@example.org")
    where = _where(server, user)
    assert all(where[_mid(r)] == ["Junk"] for r in spam)


def test_server_restarted_mid_idle_reconnects_and_catches_up(dovecot_factory, store: Store) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory()
    user = server.add_user()
    service = Service([settings_for(server, user)], scorer=HeaderScorer(), store=store)
    events = Recorder()
    service.subscribe(events)
    service.start()
    try:
        events.wait_for(
            lambda ev: any(isinstance(e, ConnectionState) and e.state == "idle" for e in ev)
        )
        server.stop()
        # Mail arrives while the server is down (the MDA writes the Maildir directly).
        missed = make_mail(1, 0.97, subject="arrived while down")
        server.deliver_offline(user, missed)
        server.start()
        events.wait_for(
            lambda ev: any(
                isinstance(e, ActionApplied) and e.subject == "arrived while down" for e in ev
            ),
            timeout=30,
        )
        events.wait_for(
            lambda ev: sum(isinstance(e, ConnectionState) and e.state == "idle" for e in ev) >= 2
        )
        later = make_mail(2, 0.97, subject="after the restart")
        server.save(user, later)
        events.wait_for(
            lambda ev: any(
                isinstance(e, ActionApplied) and e.subject == "after the restart" for e in ev
            ),
            timeout=10,
        )
    finally:
        service.stop()
        service.join(10)
    assert any(e.state == "reconnecting" for e in events.of(ConnectionState))
    where = _where(server, user)
    assert where[_mid(missed)] == ["Junk"] and where[_mid(later)] == ["Junk"]


def _reset_uidvalidity(server: DovecotServer, user: str, folder_dir: Path) -> None:
    """What a server restore or migration does: same mail, new UIDs, new UIDVALIDITY."""
    server.stop()
    uidlist = folder_dir / "dovecot-uidlist"
    header, *rest = uidlist.read_text().splitlines()
    fields = header.split()
    fields = [f"V{int(f[1:]) + 1000}" if f.startswith("V") else f for f in fields]
    uidlist.write_text(" ".join(fields) + "\n" + "\n".join(rest) + "\n")
    for index in folder_dir.glob("dovecot.index*"):
        index.unlink()
    server.start()


def test_uidvalidity_reset_causes_no_duplicate_actions(dovecot_factory, store: Store) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory()
    user = server.add_user()
    messages = [make_mail(i, p) for i, p in enumerate([0.99, 0.99, 0.7, 0.7, 0.1, 0.1])]
    append_all(server, user, messages)
    settings = settings_for(server, user)
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    journal_before = store.journal()
    old = store.folder_state("work", "INBOX")
    _reset_uidvalidity(server, user, server.maildir(user))
    newcomer = make_mail(99, 0.99, subject="new after reset")
    append_all(server, user, [newcomer])
    events = Recorder()
    scorer = HeaderScorer()
    worker = AccountWorker(settings, scorer=scorer, store=store)
    worker.events.subscribe(events)
    assert worker.run_once()
    new = store.folder_state("work", "INBOX")
    assert old is not None and new is not None and new.uidvalidity != old.uidvalidity
    assert any(isinstance(e, Progress) and e.phase == "resync" for e in events.events)
    journal_after = store.journal()
    added = journal_after[: len(journal_after) - len(journal_before)]
    assert [(e.action, e.message_id) for e in added] == [("move_junk", _mid(newcomer))]
    assert len(scorer.scored) == 1  # the rest were recognised by Message-ID + hash
    where = _where(server, user)
    assert all(len(v) == 1 for v in where.values()) and len(where) == 7


def test_watched_folder_renamed_or_deleted_by_another_client(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as other:
        other.login(user, PASSWORD)
        other.create_folder("Lists")
        other.create_folder("Old")
    settings = settings_for(
        dovecot, user, watch_folders=("Lists", "INBOX", "Old"), poll_interval=1.0
    )
    service = Service([settings], scorer=HeaderScorer(), store=store)
    events = Recorder()
    service.subscribe(events)
    service.start()
    try:
        events.wait_for(
            lambda ev: any(isinstance(e, ConnectionState) and e.state == "idle" for e in ev)
        )
        with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as other:
            other.login(user, PASSWORD)
            other.rename_folder("Lists", "Lists-2026")  # the folder we IDLE on
            other.delete_folder("Old")
        spam = make_mail(1, 0.99, subject="still filtered")
        dovecot.save(user, spam)
        events.wait_for(
            lambda ev: any(
                isinstance(e, ActionApplied) and e.subject == "still filtered" for e in ev
            ),
            timeout=20,
        )
        events.wait_for(
            lambda ev: (
                {"Lists", "Old"}
                <= {
                    f
                    for e in ev
                    if isinstance(e, Error)
                    for f in ("Lists", "Old")
                    if repr(f) in e.message
                }
            )
        )
    finally:
        service.stop()
        service.join(10)
    assert not any(e.fatal for e in events.of(Error))
    assert _where(dovecot, user)[_mid(spam)] == ["Junk"]


def test_cli_run_once_with_password_command_end_to_end(dovecot_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory()
    user = server.add_user()
    messages = [make_mail(i, p) for i, p in enumerate([0.99, 0.6, 0.1])]
    append_all(server, user, messages)
    config = tmp_path / "config.toml"
    config.write_text(account_toml(server, user))  # exactly the minimal account of the issue
    env = _cli_env(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spamguard", "--config", str(config), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = cli("run", "--once", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "move to Junk" in dry.stdout and _where(server, user)[_mid(messages[0])] == ["INBOX"]
    # One move and one flag planned: the summary says so (it said "would act on 0").
    assert "would act on 2 (dry run: nothing changed)" in dry.stderr, dry.stderr
    done = cli("run", "--once")
    assert done.returncode == 0, done.stderr
    assert "move_junk INBOX -> Junk" in done.stdout and PASSWORD not in done.stdout + done.stderr
    where = _where(server, user)
    assert where[_mid(messages[0])] == ["Junk"] and where[_mid(messages[1])] == ["INBOX"]
    status = cli("status")
    assert status.returncode == 0 and "move_junk_applied 1" in status.stdout, status.stdout
    undo = cli("undo", "--last", "2")
    assert undo.returncode == 0 and undo.stdout.count(": undone") == 2, undo.stdout + undo.stderr
    assert _where(server, user)[_mid(messages[0])] == ["INBOX"]
    flags = {mid: f for mid, _, f in mailbox_snapshot(server, user, ("INBOX",))["INBOX"]}
    assert "\\Flagged" not in flags[_mid(messages[1])]
    by_id = cli("undo", "--id", "1")
    assert by_id.returncode == 0 and "already undone" in by_id.stdout, by_id.stdout
    again = cli("undo", "--last", "1")
    assert again.returncode == 0 and "nothing to undo" in again.stdout
    # The rescued message is never moved again.
    rerun = cli("run", "--once")
    assert rerun.returncode == 0 and _where(server, user)[_mid(messages[0])] == ["INBOX"]


def test_cli_password_command_failure_is_clear_and_quiet(
    dovecot: DovecotServer, user: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        account_toml(dovecot, user).replace(f"echo {PASSWORD}", "echo hunter2-leak; exit 3")
    )
    result = subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"],
        env=_cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "password_command" in result.stderr and "exit status 3" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert time.monotonic() > 0


def test_cli_run_stops_cleanly_on_sigterm(
    dovecot: DovecotServer, user: str, tmp_path: Path
) -> None:
    import signal

    config = _write_config(tmp_path, dovecot, user)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spamguard", "--config", str(config), "-v", "run"],
        env=_cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if " idle " in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


_BATCH_POINTS = [
    # point, how many times it is passed before the kill
    ("batch_after_journal", 1),  # every row planned, nothing sent
    ("batch_after_move", 1),  # the server moved the whole set, nothing settled
    ("batch_mid_settle", 1),  # the flags settled, the moves planned and not yet sent
    ("batch_mid_settle", 2),  # the first batch settled, its progress not yet saved
]
_COPY_ONLY = "IMAP4rev1 LITERAL+ SASL-IR IDLE SPECIAL-USE"
_CAPABILITIES = {"MOVE": None, "COPY+UIDPLUS": _NO_MOVE, "COPY-only": _COPY_ONLY}
# The single moves' crash points, passed inside the batch's one command per chunk
# (`move_many`): after the UID MOVE, before its COPYUID is read; and in the window a server
# without MOVE leaves open, after the UID COPY (the set is in both folders) and after
# STORE \Deleted (before UID EXPUNGE, or for good without UIDPLUS).
_BATCH_CASES = [(caps, point, n) for caps in _CAPABILITIES for point, n in _BATCH_POINTS] + [
    ("MOVE", "after_move", 1),
    *[
        (c, p, 1)
        for c in ("COPY+UIDPLUS", "COPY-only")
        for p in ("after_copy", "after_mark_deleted")
    ],
]


@pytest.mark.parametrize(
    "capabilities,point,count", _BATCH_CASES, ids=[f"{c}-{p}:{n}" for c, p, n in _BATCH_CASES]
)
def test_batch_killed_at_each_crash_point_leaves_every_message_once(
    dovecot_factory, tmp_path: Path, capabilities: str, point: str, count: int
) -> None:  # type: ignore[no-untyped-def]
    """A batch is journalled before one UID MOVE/STORE is sent and settled after: killed at
    each point inside it, the next run settles it, every message exists exactly once, nothing
    is read as a rescue, and undo brings every message back."""
    capabilities = _CAPABILITIES[capabilities]  # type: ignore[assignment]
    from spamguard.mail.executor import Executor
    from spamguard.mail.imap import ImapMailStore

    server = dovecot_factory(capabilities=capabilities)
    user = server.add_user()
    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(12)]
    flagged = [make_mail(100 + i, 0.7, subject=f"maybe {i}") for i in range(4)]
    ham = [make_mail(200 + i, 0.05, subject=f"ham {i}") for i in range(4)]
    # Two batches of ten, each with moves, flags and mail left alone.
    first, second = spam[:6] + flagged[:2] + ham[:2], spam[6:] + flagged[2:] + ham[2:]
    random.Random(7).shuffle(first)
    random.Random(8).shuffle(second)
    everything = first + second
    append_all(server, user, everything)
    config = _write_config(tmp_path, server, user, extra="batch_size = 10\n")
    cmd = [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"]
    killed = subprocess.run(
        cmd,
        env=_cli_env(tmp_path, SPAMGUARD_FAILPOINT=f"{point}:{count}"),
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode in (137, -9), killed.stderr.decode()
    where = _where(server, user)
    assert sorted(where) == sorted(_mid(r) for r in everything)
    if point == "after_copy":
        # Killed between UID COPY and STORE \Deleted: the batch's spam is in both folders
        # (nothing lost); the next run must leave one of each.
        both = [m for m, folders in where.items() if sorted(folders) == ["INBOX", "Junk"]]
        assert both and all(len(folders) <= 2 for folders in where.values()), where
    else:
        assert all(len(folders) == 1 for folders in where.values()), where
    with Store(tmp_path / "data" / "spamguard.sqlite3") as store:
        planned = store.journal(states=["planned"])
        # Killed after a whole batch settled, nothing is left planned: the next run re-reads
        # that batch (its progress was not saved) and must not act twice or see rescues.
        assert bool(planned) == ((point, count) != ("batch_mid_settle", 2)), planned
    if point in ("batch_after_move", "after_move", "after_mark_deleted"):
        # The server did its part (the originals at most \Deleted): the batch's spam is in
        # Junk, though the journal says planned.
        assert any(folders == ["Junk"] for folders in where.values())
    finished = subprocess.run(cmd, env=_cli_env(tmp_path), capture_output=True, timeout=120)
    assert finished.returncode == 0, finished.stderr.decode()
    where = _where(server, user)
    for raw in spam:
        assert where[_mid(raw)] == ["Junk"], _mid(raw)
    for raw in flagged + ham:
        assert where[_mid(raw)] == ["INBOX"], _mid(raw)
    flags = {mid: f for mid, _, f in mailbox_snapshot(server, user, ("INBOX",))["INBOX"]}
    assert all("\\Flagged" in flags[_mid(r)] for r in flagged)
    assert not any("\\Flagged" in flags[_mid(r)] for r in ham)
    with Store(tmp_path / "data" / "spamguard.sqlite3") as store:
        assert store.journal(states=["planned"]) == []
        assert store.journal(states=["failed"]) == []
        moves = collections.Counter(e.message_id for e in store.journal(actions=["move_junk"]))
        assert set(moves) == {_mid(r) for r in spam} and set(moves.values()) == {1}
        marks = collections.Counter(e.message_id for e in store.journal(actions=["flag"]))
        assert set(marks) == {_mid(r) for r in flagged} and set(marks.values()) == {1}
        assert store.counts("work")["rescued"] == 0 and store.feedback_rows("work") == []
        if capabilities is None or "UIDPLUS" in capabilities:
            _check_journal_matches_server(server, user, store)
        # Undo, as `spamguard undo` does it: everything back where it was, unmarked.
        settings = settings_for(server, user)
        with ImapMailStore(settings) as mail:
            executor = Executor(mail, store, settings, junk_folder="Junk")
            results = executor.undo(store.journal(account="work", states=["applied"]))
        assert [r.outcome for r in results] == ["undone"] * (len(spam) + len(flagged)), results
    where = _where(server, user)
    assert all(where[_mid(r)] == ["INBOX"] for r in everything), where
    flags = {mid: f for mid, _, f in mailbox_snapshot(server, user, ("INBOX",))["INBOX"]}
    assert not any("\\Flagged" in f for f in flags.values())


def test_batch_settles_a_message_another_client_expunged_meanwhile(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    """One UID MOVE over a set whose one message another client deleted after our FETCH: the
    server moves the rest (COPYUID maps each to its new UID), the gone one is settled failed,
    and nothing else is touched."""
    from imapclient import IMAPClient

    from spamguard.mail.executor import Executor
    from spamguard.mail.imap import ImapMailStore

    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(5)]
    append_all(dovecot, user, spam)
    settings = settings_for(dovecot, user)
    with ImapMailStore(settings) as mail:
        uidvalidity = mail.select("INBOX").uidvalidity
        items = junk_batch(mail, mail.uids("INBOX"), uidvalidity)
        gone = items[2][0]
        with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as other:
            other.login(user, PASSWORD)
            other.select_folder("INBOX")
            other.delete_messages([gone.uid])
            other.expunge()
        results = Executor(mail, store, settings, junk_folder="Junk").apply_batch(items)
    states = {s.message_id: a.state for s, a in results}
    assert states.pop(gone.message_id) == "failed"
    assert set(states.values()) == {"applied"}
    where = _where(dovecot, user)
    assert gone.message_id not in where
    assert all(where[m] == ["Junk"] for m in states)
    entries = store.journal(account="work")
    assert {e.state for e in entries if e.message_id != gone.message_id} == {"applied"}
    assert next(e.error for e in entries if e.message_id == gone.message_id).startswith(
        "message no longer in its folder"
    )
    # Every applied row's COPYUID points at those very bytes in Junk.
    applied = [e for e in entries if e.state == "applied"]
    assert all(e.dst_uid is not None for e in applied)
    with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as other:
        other.login(user, PASSWORD)
        other.select_folder("Junk", readonly=True)
        data = other.fetch([e.dst_uid for e in applied], ["BODY.PEEK[]"])
        for e in applied:
            raw = data[e.dst_uid][b"BODY[]"]
            assert hashlib.sha256(raw).hexdigest() == e.content_hash


def test_cli_dry_run_summary_counts_what_it_planned(dovecot_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`run --dry-run` used to end with "would act on 0" after listing every planned move."""
    server = dovecot_factory()
    user = server.add_user()
    messages = [make_mail(i, p) for i, p in enumerate([0.99] * 5 + [0.7] * 3 + [0.1] * 4)]
    append_all(server, user, messages)
    config = _write_config(tmp_path, server, user, extra="batch_size = 5\n")
    cmd = [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"]
    dry = subprocess.run(
        [*cmd, "--dry-run"], env=_cli_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert dry.returncode == 0, dry.stderr
    lines = [line for line in dry.stdout.splitlines() if " -> " in line]
    planned = [line for line in lines if "-> leave" not in line]
    assert len(lines) == 12 and len(planned) == 8, dry.stdout
    assert "scored 12 messages, would act on 8 (dry run: nothing changed)" in dry.stderr, dry.stderr
    assert "backlog scan of the newest 500 messages of the last 30 days" in dry.stderr
    assert all(folders == ["INBOX"] for folders in _where(server, user).values())
    done = subprocess.run(cmd, env=_cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "scored 12 messages, acted on 8, 0 refused" in done.stderr, done.stderr
    assert done.stdout.count(": applied") == 8, done.stdout


# -- issue 21: lost state, sender-sized headers, wrong rescues ---------------------------------


def _cli(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _move_back(server: DovecotServer, user: str, message_ids: list[str]) -> None:
    """What the user does in another mail client: Junk -> INBOX."""
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
        client.login(user, PASSWORD)
        client.select_folder("Junk")
        for mid in message_ids:
            uids = client.search(["HEADER", "Message-ID", mid])
            assert uids, mid
            client.move(uids[:1], "INBOX")  # one copy, where there are two


def _damage(path: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(random.Random(3).randbytes(path.stat().st_size))
    else:  # truncated: a disk or copy that stopped part-way
        path.write_bytes(path.read_bytes()[: 2 * 4096])


@pytest.mark.parametrize("how", ["empty", "garbage", "truncated"])
def test_lost_state_file_is_refused_and_a_reset_never_moves_rescued_mail_back(
    dovecot_factory, tmp_path: Path, how: str
) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory()
    user = server.add_user()
    spam = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(3)]
    append_all(server, user, spam)
    config = _write_config(tmp_path, server, user)
    logs = tmp_path / "logs"
    env = _cli_env(tmp_path, SPAMGUARD_LOG_DIR=str(logs))
    assert _cli(config, env, "run", "--once").returncode == 0
    rescued = [_mid(r) for r in spam[:2]]
    _move_back(server, user, rescued)
    first = _cli(config, env, "run", "--once")
    assert first.returncode == 0, first.stderr
    state = tmp_path / "data" / "spamguard.sqlite3"
    with Store(state) as store:
        assert store.counts("work")["rescued"] == 2
    _damage(state, how)

    refused = _cli(config, env, "run", "--once")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "state reset`" in refused.stderr
    assert str(state) in refused.stderr
    assert str(state) in (logs / "spamguard.log").read_text()  # the log has it too
    where = _where(server, user)
    assert all(where[m] == ["INBOX"] for m in rescued)

    # The file is not touched by the refusal, and a reset sets it aside, not away.
    damaged = state.read_bytes()
    reset = _cli(config, env, "state", "reset")
    assert reset.returncode == 0, reset.stderr
    aside = [p for p in state.parent.iterdir() if ".damaged-" in p.name and p.suffix != "-wal"]
    assert [p.read_bytes() for p in aside] == [damaged]
    again = _cli(config, env, "run", "--once")
    assert again.returncode == 0, again.stderr
    where = _where(server, user)
    assert all(where[m] == ["INBOX"] for m in rescued), where
    # New mail is filtered as before.
    late = make_mail(50, 0.99, subject="new spam")
    append_all(server, user, [late])
    assert _cli(config, env, "run", "--once").returncode == 0
    where = _where(server, user)
    assert where[_mid(late)] == ["Junk"] and all(where[m] == ["INBOX"] for m in rescued)
    # A readable file is never reset.
    refused_reset = _cli(config, env, "state", "reset")
    assert refused_reset.returncode == 1 and "Nothing was changed" in refused_reset.stderr


def _huge_headers_mail(i: int, *, long_id: bool) -> bytes:
    raw = make_mail(i, 0.99, subject=f"huge {i}")
    if long_id:
        mid = _mid(raw)
        long_mid = mid[:-1] + "x" * 70_000 + ">"
        return raw.replace(mid.encode(), long_mid.encode())
    # The score header first: the engine fetches only the first 256 KB of a message.
    raw = b"X-Test-Score: 0.99\r\n" + raw.replace(b"X-Test-Score: 0.99\r\n", b"")
    return raw.replace(f"Subject: huge {i}".encode(), b"Subject: " + b"free money " * 100_000)


def test_sender_sized_message_id_and_subject_do_not_break_undo_or_block_the_account(
    dovecot_factory, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """A 70 KB Message-ID or a 1 MB Subject: the server refuses a SEARCH that long, which made
    undo fail and, with a half-recorded move, every later run fail while settling it."""
    from imapclient import IMAPClient

    from spamguard.mail.executor import Executor
    from spamguard.message import parse_message
    from spamguard.store import JournalDraft, ScoredMessage

    server = dovecot_factory()
    user = server.add_user()
    mails = [_huge_headers_mail(0, long_id=True), _huge_headers_mail(1, long_id=False)]
    append_all(server, user, mails)
    settings = settings_for(server, user)
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    assert len(mailbox_snapshot(server, user)["Junk"]) == 2
    worker = AccountWorker(settings, scorer=HeaderScorer(), store=store)
    worker.mail.connect()
    try:
        executor = Executor(worker.mail, store, settings, junk_folder="Junk")
        results = executor.undo(store.journal(account="work", states=["applied"]))
    finally:
        worker.mail.close()
    assert [r.outcome for r in results] == ["undone", "undone"], results
    assert len(mailbox_snapshot(server, user)["INBOX"]) == 2

    # A crash after the server's MOVE, before the journal heard of it.
    late = _huge_headers_mail(2, long_id=True)
    append_all(server, user, [late])
    msg = parse_message(late)
    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as other:
        other.login(user, PASSWORD)
        uidvalidity = other.select_folder("INBOX")[b"UIDVALIDITY"]
        uid = max(other.search(["ALL"]))
        scored = ScoredMessage(
            "work",
            "INBOX",
            uidvalidity,
            uid,
            msg.message_id,
            hashlib.sha256(late).hexdigest(),
            0.99,
            "spam",
            "test",
            "test-header-1",
        )
        store.record_plan(scored, [JournalDraft("move_junk", "INBOX", uidvalidity, uid, "Junk")])
        other.move([uid], "Junk")
    for _ in range(2):  # and the run after it
        assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    assert store.journal(account="work", states=["planned"]) == []
    junk = mailbox_snapshot(server, user, ("Junk",))["Junk"]
    assert [h for _, h, _ in junk] == [hashlib.sha256(late).hexdigest()]


def test_a_redelivered_copy_is_not_a_rescue(dovecot_factory, store: Store) -> None:  # type: ignore[no-untyped-def]
    """The same bytes arrive again (a restore, Sieve `fileinto :copy`) while the first copy
    is still in Junk: that is new spam, not the user taking the message out of Junk."""
    server = dovecot_factory()
    user = server.add_user()
    spam = make_mail(1, 0.99, subject="spam again")
    append_all(server, user, [spam])
    settings = settings_for(server, user)
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    append_all(server, user, [spam])  # byte-identical
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    chash = hashlib.sha256(spam).hexdigest()
    assert not store.is_rescued("work", _mid(spam), chash)
    assert store.feedback_rows("work") == []
    snap = mailbox_snapshot(server, user)
    assert snap["INBOX"] == [] and [h for _, h, _ in snap["Junk"]] == [chash, chash]
    # A real rescue of one of them is still one.
    _move_back(server, user, [_mid(spam)])
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    assert AccountWorker(settings, scorer=HeaderScorer(), store=store).run_once()
    assert store.is_rescued("work", _mid(spam), chash)
    assert len(mailbox_snapshot(server, user)["INBOX"]) == 1


def test_rescue_after_an_unrecorded_move_is_never_moved_back(
    dovecot_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Killed after the server's MOVE and before the journal said so; the user takes the
    message out of Junk before the restart. The restart must read that as a rescue."""
    server = dovecot_factory()
    user = server.add_user()
    spam = make_mail(7, 0.99, subject="rescued while we were down")
    append_all(server, user, [spam])
    config = _write_config(tmp_path, server, user)
    killed = _cli(config, _cli_env(tmp_path, SPAMGUARD_FAILPOINT="after_move"), "run", "--once")
    assert killed.returncode in (137, -9), killed.stderr
    assert _where(server, user)[_mid(spam)] == ["Junk"]
    state = tmp_path / "data" / "spamguard.sqlite3"
    with Store(state) as store:
        assert [e.state for e in store.journal(account="work")] == ["planned"]
    _move_back(server, user, [_mid(spam)])
    for _ in range(2):
        run = _cli(config, _cli_env(tmp_path), "run", "--once")
        assert run.returncode == 0, run.stderr
        assert _where(server, user)[_mid(spam)] == ["INBOX"]
    with Store(state) as store:
        assert store.is_rescued("work", _mid(spam), hashlib.sha256(spam).hexdigest())
        assert [e.state for e in store.journal(account="work")] == ["applied"]
        labels = store.feedback_rows("work")
        assert [(r.label, r.source) for r in labels] == [("ham", "moved out of Junk to INBOX")]


def test_a_message_deleted_by_another_client_is_not_called_not_mail(
    dovecot_factory, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """Expunged by another client between our SEARCH and FETCH: gone, quietly; it is not a
    message "that is not mail", and the rest of the batch is handled."""
    from imapclient import IMAPClient

    server = dovecot_factory()
    user = server.add_user()
    mails = [make_mail(i, 0.99, subject=f"spam {i}") for i in range(3)]
    append_all(server, user, mails)
    events = Recorder()
    worker = AccountWorker(settings_for(server, user), scorer=HeaderScorer(), store=store)
    worker.events.subscribe(events)
    worker.open()
    try:
        status = worker.mail.select("INBOX")
        uids = worker.mail.uids("INBOX")
        with IMAPClient("127.0.0.1", port=server.port, ssl=False) as other:
            other.login(user, PASSWORD)
            other.select_folder("INBOX")
            other.delete_messages([uids[1]])
            other.expunge()
        worker.process_batch("INBOX", status.uidvalidity, uids)
    finally:
        worker.close()
    assert not [e for e in events.of(Error) if "not mail" in e.message], events.events
    junk = sorted(m for m, _, _ in mailbox_snapshot(server, user, ("Junk",))["Junk"])
    assert junk == sorted(_mid(r) for r in (mails[0], mails[2]))


def test_a_read_only_folder_is_reported_as_read_only_not_as_a_lost_connection(
    dovecot_factory, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """An ACL that lets the account read INBOX but not change it: the server answers
    SELECT with [READ-ONLY], which imaplib raises as a kind of connection abort."""
    import tempfile

    acl = Path(tempfile.mkdtemp(prefix="sg-acl-"))
    os.chmod(acl, 0o755)
    (acl / "dovecot-acl").write_text("INBOX owner lr\nINBOX anyone lr\n")
    os.chmod(acl / "dovecot-acl", 0o644)
    server = dovecot_factory(
        extra_conf=f"""
        mail_plugins = $mail_plugins acl
        protocol imap {{
          mail_plugins = $mail_plugins imap_acl
        }}
        plugin {{
          acl = vfile:{acl}/dovecot-acl
        }}
        """
    )
    user = server.add_user()
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
        client.login(user, PASSWORD)  # makes the Maildir; the ACL lets no client add mail
        client.select_folder("INBOX", readonly=True)
    server.deliver_offline(user, make_mail(1, 0.99, subject="spam in a read-only inbox"))
    events = Recorder()
    worker = AccountWorker(settings_for(server, user), scorer=HeaderScorer(), store=store)
    worker.events.subscribe(events)
    assert not worker.run_once()
    errors = events.of(Error)
    assert errors and errors[-1].fatal, events.events
    assert "read-only" in errors[-1].message and "'INBOX'" in errors[-1].message, errors
    assert "lost the connection" not in errors[-1].message
