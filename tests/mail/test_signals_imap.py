"""Against a real Dovecot: each account learns its receiving server's authserv-id from its
Inbox and trusts only that server's Authentication-Results; known senders are flagged at
most, never moved to Junk, and the explanation says why."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from dovecot_server import DovecotServer
from imap_helpers import HeaderScorer, account_toml, append_all, mailbox_snapshot, settings_for

from spamguard.engine.service import AccountWorker
from spamguard.message import AuthSummary, Message
from spamguard.scoring.base import Score
from spamguard.store import ScoredMessage, Store

pytestmark = pytest.mark.imap

HERE = Path(__file__).parent
REPO = HERE.parent.parent
MX = "mx.test.example"  # the receiving server that delivered the account's mail


def _mail(
    tag: str,
    score: float,
    *,
    sender: str = "news@shop.example",
    top: str = "",
    sender_written: str = "",
) -> bytes:
    """A message as the account's server delivered it: its headers above the Received line
    of the inbound hop, the sender's below."""
    return (
        f"{top}"
        f"Received: from out.example (out.example [192.0.2.7]) by {MX}; "
        "Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"{sender_written}"
        f"From: <{sender}>\r\nTo: user@test.example\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}.{time.time_ns()}@test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"X-Test-Score: {score}\r\n\r\nBody of {tag}.\r\n"
    ).encode()


def _ar(results: str, server: str = MX) -> str:
    return f"Authentication-Results: {server}; {results}\r\n"


def _mid(raw: bytes) -> str:
    return raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()


def _where(server: DovecotServer, user: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    for folder, rows in mailbox_snapshot(server, user).items():
        for message_id, _, flags in rows:
            if "\\Deleted" not in flags:
                out[message_id].append(folder)
    return out


def _flags(server: DovecotServer, user: str) -> dict[str, frozenset[str]]:
    return {mid: f for mid, _, f in mailbox_snapshot(server, user, ("INBOX",))["INBOX"]}


class AuthRecorder(HeaderScorer):
    """The header scorer, remembering the authentication results the service handed it."""

    def __init__(self) -> None:
        super().__init__()
        self.auth: dict[str, AuthSummary] = {}

    def score(self, messages: Sequence[Message]) -> list[Score]:
        for msg in messages:
            self.auth[msg.subject] = msg.auth
        return super().score(messages)


def test_each_account_learns_its_servers_id_and_ignores_forged_results(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    passing = "dkim=pass header.d=shop.example; spf=pass; dmarc=pass header.from=shop.example"
    work, home = dovecot.add_user(), dovecot.add_user()
    append_all(
        dovecot,
        work,
        [
            *(_mail(f"receipt {i}", 0.05, top=_ar(passing)) for i in range(4)),
            # The server found DKIM broken; the sender wrote a passing A-R of its own, with
            # the server's id, into the headers it sent.
            _mail(
                "phish",
                0.05,
                sender="security@bank.example",
                top=_ar("dkim=fail header.d=bank.example; spf=softfail; dmarc=fail"),
                sender_written=_ar("dkim=pass header.d=bank.example; dmarc=pass"),
            ),
            # Only a header under someone else's id on top.
            _mail("other id", 0.05, top=_ar(passing, server="mx.attacker.example")),
        ],
    )
    # The other account's mail comes through another server.
    append_all(
        dovecot,
        home,
        [_mail(f"home {i}", 0.05, top=_ar(passing, server="mx.home.example")) for i in range(3)],
    )
    with Store(tmp_path / "state.sqlite3") as store:
        scorer = AuthRecorder()
        assert AccountWorker(settings_for(dovecot, work), scorer=scorer, store=store).run_once()
        home_worker = AccountWorker(
            settings_for(dovecot, home, name="home"), scorer=AuthRecorder(), store=store
        )
        assert home_worker.run_once()
        assert store.authserv_id("work") == MX
        assert store.authserv_id("home") == "mx.home.example"
    assert scorer.auth["receipt 0"] == AuthSummary(
        spf="pass", dkim="pass", dmarc="pass", dkim_domains=("shop.example",), authserv_id=MX
    )
    assert scorer.auth["phish"].dkim == "fail" and scorer.auth["phish"].dmarc == "fail"
    assert scorer.auth["phish"].dkim_domains == ()
    assert scorer.auth["other id"] == AuthSummary()


def test_an_inbox_without_a_clear_server_trusts_nothing(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    # A server that writes no A-R; three spams arrived with one of their own on top.
    forged = _ar("dkim=pass header.d=bank.example; dmarc=pass", server="mx.forged.example")
    append_all(
        dovecot,
        user,
        [
            *(_mail(f"plain {i}", 0.05) for i in range(8)),
            *(_mail(f"spam {i}", 0.05, top=forged) for i in range(3)),
        ],
    )
    scorer = AuthRecorder()
    assert AccountWorker(settings_for(dovecot, user), scorer=scorer, store=store).run_once()
    assert store.authserv_id("work") is None
    assert scorer.auth["spam 0"] == AuthSummary()


def test_an_authenticated_sender_whose_mail_you_kept_is_flagged_not_moved(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    aligned = "dkim=pass header.d=shop.example; spf=pass; dmarc=pass header.from=shop.example"
    statement = _mail("statement", 0.99, top=_ar(aligned))
    # Same From address, but the server saw no valid signature; the passing A-R is the
    # sender's own, below the server's Received line.
    forged = _mail(
        "forged",
        0.99,
        top=_ar("dkim=none; spf=fail; dmarc=fail header.from=shop.example"),
        sender_written=_ar(aligned),
    )
    stranger = _mail("stranger", 0.99, sender="promo@other.example", top=_ar(aligned))
    fillers = [_mail(f"filler {i}", 0.05, top=_ar(aligned)) for i in range(2)]
    everything = [statement, forged, stranger, *fillers]

    kept, fresh = dovecot.add_user(), dovecot.add_user()
    append_all(dovecot, kept, everything)
    append_all(dovecot, fresh, everything)
    with Store(tmp_path / "kept.sqlite3") as store:
        # Two days ago SpamGuard scored mail from the shop and left it; the user kept it.
        store.record_plan(
            ScoredMessage(
                "work",
                "INBOX",
                1,
                1,
                "<earlier@shop.example>",
                "e" * 64,
                0.2,
                "ham",
                "t",
                "v",
                from_addr="news@shop.example",
                plan="leave",
                scored_at=time.time() - 2 * 86400,
            ),
            [],
        )
        assert AccountWorker(
            settings_for(dovecot, kept), scorer=HeaderScorer(), store=store
        ).run_once()
        rows = {r.subject: r for r in store.scored_messages("work")}
    where, flags = _where(dovecot, kept), _flags(dovecot, kept)
    assert where[_mid(statement)] == ["INBOX"] and "\\Flagged" in flags[_mid(statement)]
    assert where[_mid(forged)] == ["Junk"] and where[_mid(stranger)] == ["Junk"]
    why = "news@shop.example is an authenticated sender (DKIM/DMARC) whose earlier mail you kept"
    assert rows["statement"].protected == why and why in rows["statement"].plan
    assert rows["forged"].protected == "" and rows["stranger"].protected == ""

    # The same mail in an account with no history: nothing protects the statement.
    with Store(tmp_path / "fresh.sqlite3") as store:
        assert AccountWorker(
            settings_for(dovecot, fresh), scorer=HeaderScorer(), store=store
        ).run_once()
    assert _where(dovecot, fresh)[_mid(statement)] == ["Junk"]


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env["SPAMGUARD_SCORER"] = "header_scorer:factory"
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env.pop("SPAMGUARD_FAILPOINT", None)
    return env


def test_run_once_keeps_a_correspondents_spammy_mail_in_the_inbox(
    dovecot: DovecotServer, user: str, tmp_path: Path
) -> None:
    """End to end: the user wrote to a friend; the friend's 0.99 message stays in INBOX,
    flagged, and `run --once`, the stored row (the app's Why pane) and `explain --account`
    all say why. A stranger's 0.99 message goes to Junk."""
    append_all(
        dovecot,
        user,
        [
            (
                b"From: <user@test.example>\r\nTo: Friend <friend@example.org>\r\n"
                b"Subject: lunch?\r\nMessage-ID: <sent1@test>\r\n\r\nTuesday?\r\n"
            )
        ],
        folder="Sent",
    )
    friend = _mail("from a friend", 0.99, sender="friend@example.org")
    stranger = _mail("from a stranger", 0.99, sender="promo@other.example")
    append_all(dovecot, user, [friend, stranger])
    config = tmp_path / "config.toml"
    config.write_text(account_toml(dovecot, user))
    env = _cli_env(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spamguard", "--config", str(config), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    run = cli("run", "--once")
    assert run.returncode == 0, run.stderr
    why = "you have written to friend@example.org"
    assert f"≥ move threshold, but {why}" in run.stdout, run.stdout
    where = _where(dovecot, user)
    assert where[_mid(friend)] == ["INBOX"] and where[_mid(stranger)] == ["Junk"]
    assert "\\Flagged" in _flags(dovecot, user)[_mid(friend)]
    with Store(tmp_path / "xdg-data" / "spamguard" / "spamguard.sqlite3") as store:
        rows = {r.subject: r for r in store.scored_messages("work")}
    assert rows["from a friend"].protected == why and rows["from a stranger"].protected == ""

    status = cli("status")
    # Dovecot writes no Authentication-Results, so this account has no server to trust.
    assert status.returncode == 0 and "authentication results: not read yet" in status.stdout

    eml = tmp_path / "friend.eml"
    eml.write_bytes(friend)
    explain = cli("explain", str(eml), "--account", "work")
    assert explain.returncode == 0, explain.stderr
    assert f"Protected from Junk: {why}" in explain.stdout, explain.stdout
