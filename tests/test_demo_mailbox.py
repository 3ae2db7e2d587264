"""The bundled demo Maildir: every message parses, the hand labels match the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spamguard.demo import demo_labels, demo_mailbox_path
from spamguard.message import learn_authserv_id, parse_message

MAILBOX = demo_mailbox_path()
FILES = sorted(p for p in (MAILBOX / "cur").iterdir() if not p.name.startswith("."))


def test_mailbox_is_a_maildir() -> None:
    assert MAILBOX.is_dir()
    for sub in ("cur", "new", "tmp"):
        assert (MAILBOX / sub).is_dir()
    assert 30 <= len(FILES) <= 50
    # Maildir names: <seconds>.<unique>.<host>:2,<flags>
    for path in FILES:
        stem, _, info = path.name.partition(":")
        assert info.startswith("2,"), path.name
        assert stem.split(".")[0].isdigit() and stem.endswith(".demo"), path.name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_demo_message_parses(path: Path) -> None:
    msg = parse_message(path.read_bytes())  # never NotMailError
    assert msg.subject and msg.from_addr and msg.message_id and msg.date
    assert msg.text.strip()
    assert msg.defects == ()


def test_labels_cover_exactly_the_files() -> None:
    labels = demo_labels()
    assert labels == json.loads((MAILBOX.parent / "labels.json").read_text("utf-8"))
    assert set(labels) == {p.name for p in FILES}
    assert set(labels.values()) == {"spam", "ham"}
    counts = {label: list(labels.values()).count(label) for label in ("spam", "ham")}
    assert counts["spam"] >= 12 and counts["ham"] >= 16


def test_demo_mail_is_modern_and_uses_example_domains() -> None:
    for path in FILES:
        msg = parse_message(path.read_bytes())
        assert any(year in msg.date for year in ("2024", "2025", "2026")), path.name
        for domain in (msg.from_domain, *msg.url_domains):
            assert ".example." in f".{domain}." or domain.endswith(".example"), (path, domain)


def test_demo_covers_the_cases_the_ui_shows() -> None:
    labels = demo_labels()
    # Read as the account holding the mailbox reads it: its server's results only.
    server = learn_authserv_id(parse_message(p.read_bytes()) for p in FILES)
    assert server == "mx1.example.com"
    msgs = {p.name: parse_message(p.read_bytes(), authserv_id=server) for p in FILES}
    spam = [m for name, m in msgs.items() if labels[name] == "spam"]
    ham = [m for name, m in msgs.items() if labels[name] == "ham"]
    assert all(m.auth.dkim == "pass" for m in ham if m.auth.dkim is not None)
    assert any(m.auth.spf == "fail" for m in spam)
    assert any(m.header("List-Id") for m in ham)
    assert any(m.text_chars == 0 and m.had_html for m in ham + spam)  # HTML-only
    assert any(m.text_chars and m.had_html for m in ham + spam)  # multipart/alternative
    names = {a.filename for m in spam for a in m.attachments}
    assert any(n.endswith(".html") for n in names) and any(n.endswith(".zip") for n in names)
    assert any("ignore your" in m.text.lower() for m in spam)
