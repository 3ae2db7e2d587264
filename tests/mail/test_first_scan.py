"""The first-scan review's engine side (issue 22 item 3) and its CLI equivalent, on Dovecot.

`spamguard run --once --dry-run` shows what the first scan would do and one line saying how to
do it; `--move-above P` and `--flag-only` are the app's "Apply moves only above" and "Flag
only" for the command line.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
from imap_helpers import DovecotServer, account_toml, append_all, mailbox_snapshot, make_mail

from spamguard.config import parse_config
from spamguard.engine.first_scan import Choice, ReviewRecorder, needs_review
from spamguard.message import parse_message
from spamguard.policy import PolicyContext, plan_for
from spamguard.scoring.base import Score
from spamguard.store import FolderState, Store

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCORES = [0.99, 0.98, 0.95, 0.92, 0.7, 0.6, 0.1, 0.1]


def _settings(extra: str = "") -> object:
    return parse_config(
        '[accounts.work]\nhost = "h"\nusername = "u"\npassword_command = "true"\n' + extra
    ).accounts["work"]


def _plan(p: float, settings: object, **context: object) -> object:
    msg = parse_message(make_mail(1, p, sender="someone@example.org"))
    return plan_for(msg, Score(p, "test", "t"), settings, PolicyContext(**context))  # type: ignore[arg-type]


def test_choices_change_only_the_moves_to_junk() -> None:
    settings = _settings()
    spam, doubtful, flag, ham = (_plan(p, settings) for p in (0.99, 0.93, 0.7, 0.1))
    above = Choice("above", 0.96)
    assert above.adjust(spam, settings) == spam  # type: ignore[arg-type]
    kept = above.adjust(doubtful, settings)  # type: ignore[arg-type]
    assert [a.kind for a in kept.actions] == ["flag"] and kept.verdict == "flag"
    assert "first scan: moves only at or above 96%" in kept.describe()
    for plan in (flag, ham):  # nothing that would not move is touched
        assert above.adjust(plan, settings) == plan  # type: ignore[arg-type]
        assert Choice("flag").adjust(plan, settings) == plan  # type: ignore[arg-type]
    assert [a.kind for a in Choice("flag").adjust(spam, settings).actions] == ["flag"]  # type: ignore[arg-type]
    assert Choice("apply").adjust(spam, settings) == spam  # type: ignore[arg-type]
    # A user's rule that files mail elsewhere is not spam: "flag only" leaves it where it is.
    rule = _settings('[[accounts.work.rules]]\nname = "lists"\naction = "move"\nfolder = "Lists"\n')
    filed = _plan(0.1, rule)
    assert [a.kind for a in filed.actions] == ["move"]  # type: ignore[attr-defined]
    assert [a.kind for a in Choice("flag").adjust(filed, rule).actions] == ["leave"]  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Choice("above", 0.0)


def test_review_counts_what_each_choice_would_do() -> None:
    settings = _settings()
    recorder = ReviewRecorder("work")
    for uid, p in enumerate(SCORES, 1):
        msg = parse_message(make_mail(uid, p))
        recorder("INBOX", uid, msg, _plan(p, settings))  # type: ignore[arg-type]
    review = recorder.review()
    assert review.summary() == "SpamGuard would move 4 and flag 2 of 8 messages"
    assert [round(i.p_spam, 2) for i in review.acted] == SCORES[:6]
    assert review.counts(Choice("apply")) == (4, 2)
    assert review.counts(Choice("above", 0.96)) == (2, 4)
    assert review.counts(Choice("flag")) == (0, 6)


def test_needs_review_only_before_the_first_scan(tmp_path: Path) -> None:
    settings = _settings()
    with Store(tmp_path / "s.sqlite3") as store:
        assert needs_review(store, settings)  # type: ignore[arg-type]
        store.save_folder_state(FolderState("work", "INBOX", 1, 5, None))
        assert not needs_review(store, settings)  # type: ignore[arg-type]
    with Store(tmp_path / "reset.sqlite3") as store:
        store.start_from_new_mail(["work"])  # a lost state file: no backlog to review
        assert not needs_review(store, settings)  # type: ignore[arg-type]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env["SPAMGUARD_SCORER"] = "header_scorer:factory"
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env.pop("SPAMGUARD_FAILPOINT", None)
    return env


def _run(config: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _where(server: DovecotServer, user: str) -> dict[str, list[tuple[str, bool]]]:
    """{folder: sorted [(X-Test-Score, flagged)]}."""
    out: dict[str, list[tuple[str, bool]]] = collections.defaultdict(list)
    snapshot = mailbox_snapshot(server, user)
    scores = {}
    for raw in _raw(server, user):
        msg = parse_message(raw)
        scores[msg.message_id] = msg.header("X-Test-Score") or ""
    for folder, rows in snapshot.items():
        out[folder] = sorted((scores[mid], "\\Flagged" in flags) for mid, _, flags in rows)
    return out


def _raw(server: DovecotServer, user: str) -> list[bytes]:
    from imap_helpers import PASSWORD
    from imapclient import IMAPClient

    out = []
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        for folder in ("INBOX", "Junk"):
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            if uids:
                out += [d[b"BODY[]"] for d in client.fetch(uids, ["BODY.PEEK[]"]).values()]
    return out


def _account(dovecot: DovecotServer, tmp_path: Path, name: str) -> tuple[str, Path]:
    user = dovecot.add_user()
    append_all(dovecot, user, [make_mail(i, p) for i, p in enumerate(SCORES)])
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'data_dir = "{tmp_path / name}"\n\n'
        + account_toml(dovecot, user, extra='junk_folder = "Junk"\n')
    )
    return user, config


def test_cli_dry_run_says_what_the_first_scan_would_do_and_how_to_do_it(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user, config = _account(dovecot, tmp_path, "a")
    before = _where(dovecot, user)
    dry = _run(config, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "[work] SpamGuard would move 4 and flag 2 of 8 messages" in dry.stderr, dry.stderr
    hint = dry.stderr.strip().splitlines()[-1]
    assert hint == (
        f"spamguard: to do this: spamguard --config {config} run --once (add --move-above 0.97 "
        "to move only the surest, or --flag-only to move nothing)"
    )
    assert _where(dovecot, user) == before
    # A dry run with a limit shows what that limit would do, and its own command.
    limited = _run(config, tmp_path, "--dry-run", "--move-above", "0.96")
    assert "[work] SpamGuard would move 2 and flag 4 of 8 messages" in limited.stderr
    assert limited.stderr.strip().splitlines()[-1].endswith("run --once --move-above 0.96")
    assert _where(dovecot, user) == before

    done = _run(config, tmp_path, "--move-above", "0.96")
    assert done.returncode == 0, done.stderr
    after = _where(dovecot, user)
    assert after["Junk"] == [("0.98", False), ("0.99", False)]
    assert [s for s, flagged in after["INBOX"] if flagged] == ["0.6", "0.7", "0.92", "0.95"]
    assert "first scan: moves only at or above 96%" in done.stdout


def test_cli_flag_only_moves_nothing(dovecot: DovecotServer, tmp_path: Path) -> None:
    user, config = _account(dovecot, tmp_path, "b")
    done = _run(config, tmp_path, "--flag-only")
    assert done.returncode == 0, done.stderr
    after = _where(dovecot, user)
    assert after["Junk"] == []
    assert [s for s, flagged in after["INBOX"] if flagged] == [
        "0.6",
        "0.7",
        "0.92",
        "0.95",
        "0.98",
        "0.99",
    ]
    bad = _run(config, tmp_path, "--move-above", "0")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("spamguard: ")


def _folders(server: DovecotServer, user: str) -> set[str]:
    from imap_helpers import PASSWORD
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        return {name for _, _, name in client.list_folders()}


def test_a_dry_run_plans_moves_into_a_junk_folder_it_does_not_create(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """`create_junk = true` with no such folder yet: the review (a dry run) shows the moves
    but creates nothing on the server; the run that applies them creates the folder."""
    user = dovecot.add_user()
    append_all(dovecot, user, [make_mail(i, p) for i, p in enumerate(SCORES)])
    config = tmp_path / "c.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "c"}"\n\n'
        + account_toml(dovecot, user, extra='junk_folder = "Caught"\ncreate_junk = true\n')
    )
    dry = _run(config, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "[work] SpamGuard would move 4 and flag 2 of 8 messages" in dry.stderr, dry.stderr
    assert "Caught" not in _folders(dovecot, user)
    done = _run(config, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Caught" in _folders(dovecot, user)
    assert done.stdout.count("move_junk INBOX -> Caught") == 4, done.stdout
