"""The lean parse of mail that is not multipart (`message._lean_headers`) against the standard
library's parser it stands in for: the same `email.message.Message`, field for field, on
real mail, fixtures and hostile input (malformed headers, envelope lines, every kind of line
end, huge headers, 8-bit bytes, deep nesting), and the same parsed `Message`."""

from __future__ import annotations

import csv
import email
import os
import random
from email.message import Message as EmailMessage
from pathlib import Path

import pytest
from hypothesis import given

from spamguard import message as m
from tests.conftest import ROOT, SHARED_SPLIT, shared_corpus_dir
from tests.test_message import FUZZ, MAIL, messages

FIXTURE_CORPUS = ROOT / "tests" / "fixtures" / "corpus"
MODERN_MANIFEST = ROOT / "data" / "modern" / "manifest.tsv"
MODERN_CORPUS = Path.home() / ".cache" / "spamguard" / "corpora" / "modern"


def snapshot(msg: EmailMessage) -> tuple[object, ...]:
    """Everything a parsed `email.message.Message` holds (defects by kind and text, parts
    recursively): two messages with equal snapshots answer every method alike."""
    fields = dict(vars(msg))
    fields["defects"] = [(type(d), d.args, getattr(d, "line", None)) for d in msg.defects]
    fields["policy"] = type(msg.policy)
    payload = fields.get("_payload")
    if isinstance(payload, list):
        fields["_payload"] = [snapshot(part) for part in payload]
    return type(msg), sorted(fields.items())


def standard(body: bytes) -> EmailMessage:
    return email.message_from_bytes(body, policy=m._POLICY)


def check(body: bytes) -> str:
    """Compares the lean parse of ``body`` with the standard library's; says which way the
    lean parse went: 'plain' (`_plain_fields`), 'lines' (the line by line reading) or
    'parser' (multipart or message/*: the standard library's parser is used)."""
    expected = standard(body)
    text = body.decode("ascii", "surrogateescape")
    lean = m._lean_headers(text)
    if lean is None:
        assert expected.get_content_maintype() in ("multipart", "message"), body[:300]
        way = "parser"
    else:
        assert snapshot(lean) == snapshot(expected), body[:300]
        plain = m._plain_fields(EmailMessage(policy=m._POLICY), text) is not None
        way = "plain" if plain else "lines"
    assert snapshot(m._message_from_bytes(body)) == snapshot(expected), body[:300]
    return way


def test_the_lean_parse_is_used_under_this_python() -> None:
    # Its bytecode guard matches the standard library it copies (Python 3.11.7's): if this
    # fails after a Python upgrade, re-read FeedParser and renew _COPIED_FEEDPARSER.
    assert m._LEAN_PARSE_OK


def test_fixture_mail_parses_as_the_standard_library_parses_it() -> None:
    paths = sorted(MAIL.glob("*.eml")) + sorted(p for p in FIXTURE_CORPUS.rglob("*") if p.is_file())
    ways = [check(p.read_bytes()[m._body_start(p.read_bytes()) :]) for p in paths]
    assert {"plain", "parser"} <= set(ways)


HOSTILE = [
    b"",
    b"\n",
    b"\r\n",
    b"\r",
    b"Subject: no body",
    b"Subject: no body\n",
    b"Subject: no body\r\n",
    b"Subject: x\n\n",
    b"Subject: x\r\n\r\nbody\r\n",
    b"Subject: x\r\nTo: y\n\nmixed line ends\n",
    b"Subject: x\rTo: y\r\rCR only\r",
    b"Subject: x\n\r\nbody",
    b"Subject: x\r\n\nbody",
    b"Subject: x\r\r\nbody",
    b"Subject:\n\n",
    b"Subject:   \t\n\tfolded\n\n",
    b"Subject: a\n \n\nblank continuation",
    b"Subject: a\n\t\n\n",
    b"Subject: a\r\n \r\n\r\nb",
    b" leading continuation\nSubject: x\n\nbody",
    b"\tleading tab\n\nbody",
    b": no name\nSubject: x\n\nbody",
    b"Subject: x\n: no name\n\nbody",
    b"From sender Mon Jan 1\nSubject: x\n\nbody",
    b"From sender Mon Jan 1\r\nSubject: x\r\n\r\nbody",
    b"From sender\n\nbody",
    b"From sender",
    b"From sender\n From continued\nSubject: x\n\n",
    b"Subject: x\nFrom sender\n\nbody",
    b"Subject: x\nFrom sender\nTo: y\n\nbody",
    b"Subject: x\nFrom sender\n",
    b"Subject: x\nnot a header line\nmore\n",
    b"Subject: x\nnot a header\r\n\r\n",
    b"Subject: x\nX-Bad Name: y\n\nbody",
    b"Subject: x\nX-\x01: control\n\nbody",
    b"Subject: x\x00y\n\nnul",
    b"Subject: \xe9t\xe9\nFrom: \xff\xfe <a@b.example>\n\n\xc3\xa9 \x80\x81",
    b"Subject: x\x0bvertical tab\x0c form feed\x1c\x1d\x1e\n\nbody\x0bhere",
    b"Subject: x\nContent-Type: multipart/mixed\n\nno boundary",
    b"Subject: x\nContent-Type: MULTIPART/Alternative; boundary=b\n\n--b\n\nx\n--b--\n",
    b"Subject: x\nContent-Type: message/rfc822\n\nSubject: inner\n\nbody",
    b"Subject: x\nContent-Type: message/delivery-status\n\nA: b\n\nC: d\n",
    b"Subject: x\nContent-Type: multipart\n\nno slash: text/plain",
    b"Subject: x\nContent-Type: text/html; charset=utf-8\n\n<p>hi</p>",
    b"Subject: x\nContent-Type:\n\nempty type",
    b"Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nx\n--q--",
    b"Content-Type: multipart/mixed;\n boundary=q\n\n--q\n\nx\n--q--",
    b"Subject: x\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n",
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_headers_parse_as_the_standard_library_parses_them(body: bytes) -> None:
    check(body)


def test_huge_headers_and_deep_nesting() -> None:
    many = b"".join(b"X-H%d: %s\n" % (i, b"v" * (i % 50)) for i in range(20_000))
    long_line = b"Subject: " + b"x" * 2_000_000 + b"\n"
    folded = b"Subject: a\n" + b"\tb\n" * 50_000
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(80)
    )
    for body in (many + b"\nbody", long_line + b"\n", folded + b"\nbody", nested + b"x\n"):
        check(body)
        check(body.replace(b"\n", b"\r\n"))


def test_random_header_soup() -> None:
    """Random lines of every kind the header loop tells apart, with every line end."""
    rng = random.Random(41)
    lines = [
        b"Subject: x",
        b"To: a@b.example",
        b"X-A:",
        b"X-B:  spaced ",
        b" cont",
        b"\tcont",
        b"  ",
        b": x",
        b"From env",
        b"From: a@b.example",
        b"no colon",
        b"bad name: x",
        b"Content-Type: text/plain",
        b"Content-Type: multipart/mixed; boundary=z",
        b"Content-Type: message/rfc822",
        b"content-type: TEXT/HTML",
        b"\xe9\xff: raw",
        b"X: \xc3\xa9\x80",
        b"--z",
        b"",
        b"X-\x0b: y",
        b"X:\x0c",
    ]
    ends = [b"\n", b"\r\n", b"\r", b"\n", b"\r\n"]
    ways: set[str] = set()
    for _ in range(6000):
        eol = rng.choice(ends)
        body = b""
        for _ in range(rng.randrange(0, 10)):
            body += rng.choice(lines) + (eol if rng.random() < 0.9 else rng.choice(ends))
        if rng.random() < 0.8:
            body += eol + b"body" + eol + rng.choice(lines)
        ways.add(check(body))
    assert ways == {"plain", "lines", "parser"}


@FUZZ
@given(messages())
def test_fuzz_structured_mime_parses_as_the_standard_library(raw: bytes) -> None:
    check(raw)
    check(raw[m._body_start(raw) :])


def _parsed_both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[m.Message, m.Message]:
    lean = m.parse_message(raw)
    with monkeypatch.context() as patch:
        patch.setattr(m, "_LEAN_PARSE_OK", False)
        plain = m.parse_message(raw)
    return lean, plain


def test_parsed_messages_are_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sorted(MAIL.glob("*.eml")) + sorted(p for p in FIXTURE_CORPUS.rglob("*") if p.is_file())
    for raw in [p.read_bytes() for p in paths] + [b for b in HOSTILE if b.strip()]:
        try:
            lean, plain = _parsed_both_ways(raw, monkeypatch)
        except m.NotMailError:
            continue
        assert lean == plain, raw[:300]


@pytest.mark.corpus
def test_every_spamassassin_message_parses_as_the_standard_library_parses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both halves: the email objects, and the parsed `Message` of every message."""
    corpus = shared_corpus_dir()
    if corpus is None or not SHARED_SPLIT.is_file():
        pytest.skip(
            "shared SpamAssassin corpus not fetched (run shared/corpora/fetch-spamassassin)"
        )
    with SHARED_SPLIT.open(newline="", encoding="utf-8") as fh:
        paths = [corpus / row["path"] for row in csv.DictReader(fh, delimiter="\t")]
    assert len(paths) == 6046
    ways: dict[str, int] = {}
    for path in paths:
        raw = path.read_bytes()
        way = check(raw[m._body_start(raw) :][: m.MAX_PARSE_BYTES])
        ways[way] = ways.get(way, 0) + 1
        lean, plain = _parsed_both_ways(raw, monkeypatch)
        assert lean == plain, path
    assert ways.get("plain", 0) > 5000, ways  # the lean parse is what most of it takes


@pytest.mark.corpus
def test_modern_train_messages_parse_as_the_standard_library_parses_them() -> None:
    """Every 10th message of the modern corpus's train part (big multipart mail: all of them
    take a minute and a half; SPAMGUARD_LEAN_STRIDE=1 reads every one)."""
    if not (MODERN_CORPUS / ".complete").is_file():
        pytest.skip("modern corpus not fetched (scripts/fetch-modern-corpus)")
    from spamguard.learn.corpus import read_manifest

    stride = int(os.environ.get("SPAMGUARD_LEAN_STRIDE", "10"))
    entries = [e for e in read_manifest(MODERN_MANIFEST) if e.split == "train"]
    assert len(entries) > 10_000
    entries = entries[::stride]
    ways: dict[str, int] = {}
    for entry in entries:
        raw = (MODERN_CORPUS / entry.local_path).read_bytes()
        way = check(raw[m._body_start(raw) :][: m.MAX_PARSE_BYTES])
        ways[way] = ways.get(way, 0) + 1
    assert ways.get("plain", 0) > 1000 // stride, ways
