"""Helpers for the IMAP tests: mail makers, account settings, mailbox snapshots, event recorder.

A module with its own name (not conftest) so tests import it unambiguously: several
test folders have a conftest.py, and a bare `from conftest import` picks whichever
loaded first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dovecot_server import PASSWORD, DovecotServer
from header_scorer import HeaderScorer

from spamguard.config import AccountSettings, parse_config
from spamguard.engine.events import Event

__all__ = [
    "PASSWORD",
    "DovecotServer",
    "HeaderScorer",
    "Recorder",
    "account_toml",
    "append_all",
    "bodies_served",
    "mailbox_snapshot",
    "make_mail",
    "settings_for",
    "with_message_id",
]

_MESSAGE_ID = re.compile(rb"^message-id:.*(?:\r?\n[ \t].*)*\r?\n", re.IGNORECASE | re.MULTILINE)


def account_toml(server: DovecotServer, user: str, name: str = "work", extra: str = "") -> str:
    """Exactly the minimal account the team's checks write, plus test extras."""
    return (
        f'[accounts.{name}]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_command = "echo {PASSWORD}"\n{extra}'
    )


def settings_for(server: DovecotServer, user: str, **changes: Any) -> AccountSettings:
    settings = parse_config(account_toml(server, user)).accounts["work"]
    return dataclasses.replace(settings, **changes)


def make_mail(
    i: int,
    score: float | None,
    *,
    subject: str | None = None,
    body: str = "",
    sender: str = "sender@example.org",
    extra_headers: str = "",
) -> bytes:
    score_line = f"X-Test-Score: {score}\r\n" if score is not None else ""
    return (
        f"From: Sender <{sender}>\r\nTo: user@example.net\r\n"
        f"Subject: {subject or f'message {i}'}\r\nMessage-ID: <m{i}.{time.time_ns()}@test>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n{score_line}{extra_headers}"
        f"\r\n{body or f'Body of message {i}.'}\r\n"
    ).encode()


class Recorder:
    """Collects service events from any thread; tests wait on conditions, never sleep."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: type) -> list[Any]:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate: Callable[[Sequence[Event]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; events: {self.events[-15:]}")
                self._cond.wait(left)


def mailbox_snapshot(
    server: DovecotServer, user: str, folders: Sequence[str] = ("INBOX", "Junk")
) -> dict[str, list[tuple[str, str, frozenset[str]]]]:
    """{folder: [(Message-ID, sha256 of the first max bytes, flags)]} read with BODY.PEEK."""
    from imapclient import IMAPClient

    out: dict[str, list[tuple[str, str, frozenset[str]]]] = {}
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        for folder in folders:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            rows = []
            for i in range(0, len(uids), 200):
                data = client.fetch(
                    uids[i : i + 200],
                    ["BODY.PEEK[]<0.262144>", "FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"],
                )
                for uid in uids[i : i + 200]:
                    item = data[uid]
                    raw = next(v for k, v in item.items() if k.startswith(b"BODY[]"))
                    mid = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
                    message_id = mid.decode().partition(":")[2].strip()
                    rows.append(
                        (
                            message_id,
                            hashlib.sha256(raw).hexdigest(),
                            frozenset(f.decode() for f in item[b"FLAGS"]) - {"\\Recent"},
                        )
                    )
            out[folder] = rows
    return out


def append_all(
    server: DovecotServer,
    user: str,
    messages: Sequence[bytes],
    folder: str = "INBOX",
    flags: Sequence[str] = (),
) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        for raw in messages:
            client.append(folder, raw, flags=list(flags))


def junk_batch(
    mail: Any, uids: Sequence[int], uidvalidity: int, *, model: str = "test"
) -> list[tuple[Any, Any, frozenset[str]]]:
    """`Executor.apply_batch` items that send INBOX's ``uids`` to Junk, each recorded as scored
    0.99 spam by ``model`` (for the fault tests and bench_batch_moves)."""
    from spamguard.mail.base import content_hash
    from spamguard.message import parse_message
    from spamguard.policy import Action, Plan
    from spamguard.store import ScoredMessage

    plan = Plan(0.99, "spam", (Action("junk", model),))
    out = []
    for fetched in mail.fetch("INBOX", list(uids), 256 * 1024):
        msg = parse_message(fetched.raw)
        scored = ScoredMessage(
            "work",
            "INBOX",
            uidvalidity,
            fetched.uid,
            msg.message_id,
            content_hash(fetched.raw),
            0.99,
            "spam",
            model,
            f"{model}-1",
            (),
            subject=msg.subject,
            from_addr=msg.from_addr,
            plan=plan.describe(),
        )
        out.append((scored, plan, fetched.flags))
    return out


def with_message_id(raw: bytes, message_id: str) -> bytes:
    """``raw`` with its Message-ID header(s) replaced by ``<message_id>``: a corpus message
    repeated this way is new mail each time (its own Message-ID and content hash)."""
    cut = raw.find(b"\n\n")
    crlf = raw.find(b"\r\n\r\n")
    if crlf != -1 and (cut == -1 or crlf < cut):
        cut = crlf
    head, body = (raw, b"") if cut == -1 else (raw[: cut + 1], raw[cut + 1 :])
    eol = b"\r\n" if b"\r\n" in head[:2000] else b"\n"
    return b"Message-ID: <" + message_id.encode() + b">" + eol + _MESSAGE_ID.sub(b"", head) + body


def bodies_served(server: DovecotServer, user: str) -> int:
    """Message bodies Dovecot sent to ``user`` over all its sessions, from Dovecot's log
    (each session's logout line counts them). The log is written by another process, and a
    session that just ended may have neither its login nor its logout line there yet, so
    every login must have its logout line AND the log must have stopped growing for a
    moment (a loaded machine delayed a whole session's two lines past the first check)."""
    deadline = time.monotonic() + 10
    last: tuple[str, float] | None = None
    while True:
        log = (server.root / "dovecot.log").read_text()
        logins = len(re.findall(rf"Login: user=<{user}>", log))
        counts = re.findall(rf"imap\({user}\)[^\n]*?Logged out [^\n]*?body_count=(\d+)", log)
        now = time.monotonic()
        if last is None or last[0] != log:
            last = (log, now)
        settled = len(counts) >= logins and now - last[1] >= 0.3
        if settled or now > deadline:
            assert len(counts) == logins, f"{logins} logins, {len(counts)} logouts:\n{log[-2000:]}"
            return sum(int(c) for c in counts)
        time.sleep(0.05)  # bounded poll of another process's log file
