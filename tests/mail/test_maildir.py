"""The Maildir backend behind the same engine: moves are renames, journalled and undoable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from imap_helpers import HeaderScorer, make_mail

from spamguard.config import parse_config
from spamguard.engine.service import AccountWorker
from spamguard.mail.executor import Executor
from spamguard.mail.maildir import MaildirStore
from spamguard.store import JournalDraft, ScoredMessage, Store


def _maildir(root: Path, messages: list[bytes]) -> None:
    for folder in (root, root / ".Junk"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        (root / "new" / f"100{i}.M1P1.test").write_bytes(raw)


def _ids(folder: Path) -> list[str]:
    out = []
    for sub in ("new", "cur"):
        for path in sorted((folder / sub).iterdir()):
            out.append(path.read_bytes().split(b"Message-ID: ")[1].split(b"\r\n")[0].decode())
    return out


def test_maildir_account_moves_flags_and_undoes(tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    messages = [make_mail(i, p) for i, p in enumerate([0.99, 0.7, 0.1])]
    _maildir(root, messages)
    settings = parse_config(f'[accounts.local]\nmaildir = "{root}"\n').accounts["local"]
    with Store(tmp_path / "s.sqlite3") as store:
        scorer = HeaderScorer()
        assert AccountWorker(settings, scorer=scorer, store=store).run_once()
        spam_id = _ids(root / ".Junk")
        assert len(spam_id) == 1 and len(_ids(root)) == 2
        flagged = [
            p for p in (root / "cur").iterdir() if ":2," in p.name and "F" in p.name.split(":2,")[1]
        ]
        assert len(flagged) == 1 and "a" in flagged[0].name.split(":2,")[1]
        assert (root / "dovecot-keywords").read_text() == "0 $SpamGuardFlag\n"
        # Rescan: nothing scored again.
        again = HeaderScorer()
        assert AccountWorker(settings, scorer=again, store=store).run_once()
        assert again.scored == []
        mail = MaildirStore(root)
        executor = Executor(mail, store, settings, junk_folder="Junk")
        entries = store.journal(account="local", states=["applied"])
        assert [r.outcome for r in executor.undo(entries)] == ["undone", "undone"]
        assert len(_ids(root)) == 3 and _ids(root / ".Junk") == []
        assert not any(
            "F" in p.name.split(":2,")[-1] for p in (root / "cur").iterdir() if ":2," in p.name
        )


def test_maildir_reconcile_finishes_an_interrupted_move(tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    raw = make_mail(1, 0.99)
    _maildir(root, [raw])
    settings = dataclasses.replace(
        parse_config(f'[accounts.local]\nmaildir = "{root}"\n').accounts["local"]
    )
    mail = MaildirStore(root)
    status = mail.select("INBOX")
    import hashlib

    from spamguard.message import parse_message

    msg = parse_message(raw)
    with Store(tmp_path / "s.sqlite3") as store:
        # The engine journalled the move and died before sending it.
        scored = ScoredMessage(
            "local",
            "INBOX",
            status.uidvalidity,
            1,
            msg.message_id,
            hashlib.sha256(raw).hexdigest(),
            0.99,
            "spam",
            "test",
            "v",
            (),
        )
        store.record_plan(
            scored, [JournalDraft("move_junk", "INBOX", status.uidvalidity, 1, "Junk")]
        )
        executor = Executor(mail, store, settings, junk_folder="Junk")
        [entry] = executor.reconcile()
        assert entry.state == "applied" and entry.dst_uid == 1
        assert _ids(root / ".Junk") == [msg.message_id] and _ids(root) == []
        # A second reconcile has nothing to do.
        assert executor.reconcile() == []
