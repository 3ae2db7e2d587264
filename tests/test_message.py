"""Tests for `spamguard.message`: real-looking fixtures, edge cases, bounded work, fuzzing."""

from __future__ import annotations

import base64
import dataclasses
import gc
import hashlib
import os
import quopri
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spamguard.errors import NotMailError
from spamguard.message import (
    MAX_PARSE_BYTES,
    MAX_TEXT_CHARS,
    Attachment,
    AuthSummary,
    Message,
    html_to_text,
    parse_message,
)

MAIL = Path(__file__).parent / "fixtures" / "mail"
T = TypeVar("T")


def load(name: str) -> Message:
    return parse_message((MAIL / name).read_bytes())


def all_strings(msg: Message) -> list[str]:
    """Every str a Message carries, for checks that apply to all of them."""
    out = [msg.subject, msg.from_addr, msg.from_name, msg.message_id, msg.date, msg.text]
    out += [s for pair in msg.headers for s in pair]
    out += list(msg.to) + list(msg.urls) + list(msg.url_domains) + list(msg.defects)
    out += [a.filename for a in msg.attachments] + [a.content_type for a in msg.attachments]
    return out


def assert_message_invariants(msg: Message, raw: bytes) -> None:
    assert isinstance(msg, Message)
    assert msg.size == len(raw)
    assert msg.content_hash == hashlib.sha256(raw).hexdigest()
    assert len(msg.text) <= MAX_TEXT_CHARS
    for text in all_strings(msg):
        assert isinstance(text, str)
        # No lone surrogates from 8-bit bytes: values must survive SQLite, JSON and Qt.
        text.encode("utf-8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.subject = "changed"  # type: ignore[misc]


# --- fixtures: structure and transfer encodings -------------------------------------------


def test_fixture_directory_is_small_and_complete() -> None:
    files = sorted(p.name for p in MAIL.glob("*.eml"))
    assert len(files) >= 20
    assert all((MAIL / f).stat().st_size < 4096 for f in files)


@pytest.mark.parametrize("path", sorted(MAIL.glob("*.eml")), ids=lambda p: p.name)
def test_every_fixture_parses_with_invariants(path: Path) -> None:
    raw = path.read_bytes()
    assert_message_invariants(parse_message(raw), raw)


def test_missing_closing_boundary_keeps_text_and_attachment() -> None:
    msg = load("missing_close_boundary.eml")
    assert "CloseBoundaryNotFoundDefect" in msg.defects
    assert "river is high" in msg.text
    assert [a.filename for a in msg.attachments] == ["tides.pdf"]
    assert msg.attachments[0].content_type == "application/pdf"
    assert msg.attachments[0].size > 0


def test_multipart_without_declared_boundary_keeps_its_words_as_text() -> None:
    msg = load("undeclared_boundary.eml")
    assert "NoBoundaryInMultipartDefect" in msg.defects
    assert "INV-88213" in msg.text
    # Not mistaken for a nameless attachment.
    assert msg.attachments == ()


def test_nested_missing_boundary_is_recorded() -> None:
    raw = (
        b"From: a@example.com\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="OUT"\n\n'
        b'--OUT\nContent-Type: multipart/alternative; boundary="IN"\n\n'
        b"--IN\nContent-Type: text/plain\n\ninner text\n--OUT--\n"
    )
    msg = parse_message(raw)
    assert "inner text" in msg.text
    assert "CloseBoundaryNotFoundDefect" in msg.defects


def test_bad_base64_is_a_defect_and_keeps_the_good_lines() -> None:
    msg = load("bad_base64.eml")
    assert "InvalidBase64CharactersDefect" in msg.defects
    assert msg.text.startswith("Spring is here! Plant your tomatoes")


def test_unknown_transfer_encoding_keeps_text_and_records_defect() -> None:
    msg = load("bad_transfer_encoding.eml")
    assert msg.text.strip() == "Your business card proof is ready for review."
    assert any("Content-Transfer-Encoding" in d for d in msg.defects)


def test_nested_mixed_alternative_related() -> None:
    msg = load("nested_multipart.eml")
    # The plain alternative is preferred over the HTML one.
    assert msg.text.strip() == "Hi Tom, the mockups are below. Version B uses the darker header."
    assert msg.html_chars > 0 and msg.had_html
    assert msg.text_chars == len(msg.text)
    names = {a.filename: a.content_type for a in msg.attachments}
    assert names == {"logo.png": "image/png", "mockups-v2.pdf": "application/pdf"}
    assert msg.defects == ()


def test_base64_body_is_decoded_as_utf8() -> None:
    msg = load("base64_body.eml")
    assert "Your order #55120 has shipped." in msg.text
    assert "Grüße!" in msg.text
    assert msg.urls == ("https://harborbooks.example.com/track/55120",)
    assert msg.url_domains == ("harborbooks.example.com",)


def test_quoted_printable_body_and_soft_line_breaks() -> None:
    msg = load("quoted_printable.eml")
    assert "Votre réservation pour deux personnes est confirmée pour dimanche à 12h30." in msg.text
    assert "coupée par un soft line break" in msg.text
    assert "=\n" not in msg.text and "=C3" not in msg.text
    assert msg.subject == "Réservation confirmée"
    assert msg.from_name == "Café Lumière"


def test_crlf_line_endings() -> None:
    raw = (MAIL / "crlf.eml").read_bytes()
    assert b"\r\n" in raw  # the fixture really is CRLF (see tests/fixtures/.gitattributes)
    msg = parse_message(raw)
    assert msg.subject == "Nightly build passed"
    assert msg.from_addr == "robot@ci.example.com"
    assert "\r" not in msg.text
    assert msg.text.startswith("Build 9912 passed.\nDetails:")
    assert msg.urls == ("https://ci.example.com/builds/9912",)
    assert all("\r" not in value for _, value in msg.headers)


def test_message_with_no_body() -> None:
    msg = load("no_body.eml")
    assert msg.subject == "Reminder: dentist at 10:00"
    assert msg.text == ""
    assert msg.attachments == () and msg.urls == ()


def test_mbox_from_line_is_skipped() -> None:
    msg = load("mbox_from_line.eml")
    assert msg.subject == "Lunch on Thursday?"
    assert msg.from_addr == "alice@example.org"
    assert msg.header("Return-Path") == "<alice@example.org>"
    assert not any(key.startswith("From ") for key, _ in msg.headers)


def test_leading_blank_lines_before_headers() -> None:
    msg = parse_message(b"\r\n\nSubject: hello\nFrom: a@example.com\n\nbody\n")
    assert msg.subject == "hello"
    assert msg.from_addr == "a@example.com"
    assert msg.text == "body\n"


def test_attachments_names_and_types() -> None:
    msg = load("attachments.eml")
    assert [(a.filename, a.content_type) for a in msg.attachments] == [
        ("invoice-2025-03.pdf", "application/pdf"),
        ("line-items.csv", "text/csv"),
        ("Rechnung März.zip", "application/zip"),  # RFC 2231 encoded name
        ("", "image/jpeg"),  # no name: still an attachment
    ]
    assert msg.text.strip() == "Please find the March documents attached."
    assert "sku,qty" not in msg.text  # an attached CSV is not body text


def test_raw_8bit_attachment_name_survives() -> None:
    raw = (
        b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nsee attached\n"
        b"--b\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="Gr\xc3\xbc\xc3\x9fe.pdf"\n\n%PDF\n--b--\n'
    )
    msg = parse_message(raw)
    assert [a.filename for a in msg.attachments] == ["Grüße.pdf"]
    assert msg.text.strip() == "see attached"


# --- headers and charsets ------------------------------------------------------------------


def test_raw_utf8_headers() -> None:
    msg = load("raw_utf8_headers.eml")
    assert msg.subject == "Grüße vom Sommerfest – Fotos 📷"
    assert msg.from_name == "Jürgen Müller"
    assert msg.from_addr == "juergen@verein.example.de"
    assert msg.from_domain == "verein.example.de"
    assert msg.to == ("zoe@example.com",)
    assert "Schöne Grüße!" in msg.text


def test_raw_latin1_headers_and_body() -> None:
    msg = load("raw_latin1_headers.eml")
    assert msg.subject == "Devis pour la fenêtre du salon"
    assert msg.from_name == "Françoise Duval"
    assert "détaillé" in msg.text and "À bientôt." in msg.text


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("encoded_subject_utf8_b.eml", "🎉 Welcome to Göteborg"),
        ("encoded_subject_utf8_q.eml", "Café au lait ☕ for two"),
        ("encoded_subject_latin1.eml", "Préavis de résiliation"),
    ],
)
def test_rfc2047_subjects(name: str, subject: str) -> None:
    msg = load(name)
    assert msg.subject == subject
    assert msg.header("subject") == subject
    assert msg.defects == ()


def test_rfc2047_unknown_charset_is_a_defect_not_a_crash() -> None:
    msg = load("encoded_subject_unknown_charset.eml")
    assert msg.subject == "Hidden offer inside"
    assert any("x-foo" in d for d in msg.defects)


@pytest.mark.parametrize(
    ("subject", "decoded"),
    [
        ("Grüße – =?utf-8?q?M=C3=BCller?= 📷", "Grüße – Müller 📷"),
        (
            "Pfad C:\\users\\ünter =?utf-8?q?caf=C3=A9?= \\ud800",
            "Pfad C:\\users\\ünter café \\ud800",
        ),
        ("€ =?iso-8859-1?q?=E9t=E9?= =?utf-8?b?w6k=?= fin", "€ étéé fin"),
    ],
)
def test_encoded_words_next_to_raw_8bit_text(subject: str, decoded: str) -> None:
    msg = parse_message(f"Subject: {subject}\n\nhi\n".encode())
    assert msg.subject == decoded
    assert msg.defects == ()


@pytest.mark.parametrize(
    "word",
    [b"=?utf-8?b?###?=", b"=?utf-8?b?a?=", b"=?utf-8?q?=ZZ?=", b"=?utf-8?x?abc?=", b"=??b??="],
)
def test_garbled_encoded_word_keeps_the_rest_of_the_subject(word: bytes) -> None:
    msg = parse_message(b"Subject: " + word + b" hello\n\nbody\n")
    assert msg.subject.endswith("hello")


def test_encoded_display_names_with_commas_do_not_split_addresses() -> None:
    raw = (
        b"From: =?utf-8?q?M=C3=BCller=2C_Hans?= <hans@example.de>\n"
        b"To: =?utf-8?q?Doe=2C_Jane?= <jane@example.com>, bob@example.com\n"
        b"Cc: carol@example.org\nSubject: x\n\nhi\n"
    )
    msg = parse_message(raw)
    assert msg.from_name == "Müller, Hans"
    assert msg.from_addr == "hans@example.de"
    assert msg.to == ("jane@example.com", "bob@example.com", "carol@example.org")


def test_unknown_body_charset_falls_back_and_records_defect() -> None:
    msg = load("unknown_body_charset.eml")
    assert "café budget approved" in msg.text
    assert any("x-unheard-of-8" in d for d in msg.defects)


CHINESE = "純商業辦公室出租，交通便利，歡迎來電洽詢。我們提供最優惠的價格與最好的服務。" * 3
JAPANESE = (
    "ももがはじけてぶどうがゆれる。ご注文はお早めにお願いいたします。営業時間は未定です。" * 3
)
THAI = "เตรียมตัวกับการเปลี่ยนแปลงครั้งใหญ่ พบกับรูปแบบของงานแห่งอนาคต สำหรับคุณ" * 3


@pytest.mark.parametrize(
    ("text", "codec", "label"),
    [
        (CHINESE, "big5", None),  # unlabelled
        (CHINESE, "big5", "iso-8859-1"),  # labelled Western
        (CHINESE, "big5", "chinesebig5"),  # a label Python does not know
        (CHINESE, "gb18030", "gb2312"),
        (JAPANESE, "cp932", None),
        (JAPANESE, "cp932", "euc-jp"),  # labelled wrong: mostly unreadable under its label
        (THAI, "cp874", "us-ascii"),
    ],
)
def test_text_in_another_script_is_read_even_when_labelled_wrong(
    text: str, codec: str, label: str | None
) -> None:
    subject = text[:12]
    ctype = b"text/plain" + (b"; charset=" + label.encode() if label else b"")
    raw = (
        b"From: a@example.com\nSubject: " + subject.encode(codec) + b"\n"
        b"MIME-Version: 1.0\nContent-Type: " + ctype + b"\n"
        b"Content-Transfer-Encoding: 8bit\n\n" + text.encode(codec) + b"\n"
    )
    msg = parse_message(raw)
    assert msg.text.strip() == text
    # Raw 8-bit subject bytes are read with the body's charset, as mail clients do.
    assert msg.subject == subject
    assert msg.defects == ()


@pytest.mark.parametrize("label", [None, "iso-8859-1", "us-ascii", "utf-8"])
def test_western_8bit_text_reads_as_windows_1252(label: str | None) -> None:
    text = "Coach’Invest – résumé of the café “deals”, naïve façade " * 4
    ctype = b"text/plain" + (b"; charset=" + label.encode() if label else b"")
    raw = b"Subject: x\nContent-Type: " + ctype + b"\n\n" + text.encode("cp1252") + b"\n"
    msg = parse_message(raw)
    # Curly quotes and dashes, not C1 control codes, and no guess at an exotic charset.
    assert msg.text.strip() == text.strip()


def test_header_lookup_is_case_insensitive_and_ordered() -> None:
    msg = load("auth_results.eml")
    assert msg.header("MESSAGE-id") == "<stmt-202503@example-bank.com>"
    assert msg.message_id == "<stmt-202503@example-bank.com>"
    assert msg.date == "Sat, 15 Mar 2025 07:29:58 +0000"
    results = msg.header_all("authentication-results")
    assert len(results) == 2 and results[0].startswith("mx.example.com;")
    assert msg.header("X-Not-There") is None and msg.header_all("X-Not-There") == []


# --- HTML ----------------------------------------------------------------------------------


def test_html_only_mail_becomes_clean_text_with_links() -> None:
    msg = load("html_only.eml")
    assert msg.had_html and msg.text_chars == 0
    assert "Save 30% on all tents this week." in msg.text
    assert "Shop tents" in msg.text
    for hidden in ("<", ">", "do-not-show-this", "font-family", "no-script-fallback", "&amp;"):
        assert hidden not in msg.text
    assert "Spring sale" in msg.text  # the <h1>, while the <title> is dropped
    assert msg.text.count("Spring sale") == 1
    assert "https://shop.trailhead-outfitters.example.com/tents?utm_source=mail" in msg.urls
    assert "http://track.mailer.example.net/c/abc123" in msg.urls
    assert {"shop.trailhead-outfitters.example.com", "track.mailer.example.net"} <= set(
        msg.url_domains
    )


def test_html_with_unclosed_head_still_shows_the_body() -> None:
    text, hrefs = html_to_text(
        "<html><head><title>Deal<body><p>Claim your prize "
        "<a href='https://prize.example.net/x'>now</a></p></body></html>"
    )
    assert "Claim your prize" in text and "now" in text
    assert hrefs == ["https://prize.example.net/x"]


def test_url_domains_strip_userinfo_and_port() -> None:
    raw = b"From: a@example.com\n\nGo to https://paypal.com@login.evil.example:8443/x now.\n"
    msg = parse_message(raw)
    assert msg.urls == ("https://paypal.com@login.evil.example:8443/x",)
    assert msg.url_domains == ("login.evil.example",)


# --- authentication results ----------------------------------------------------------------


def test_authentication_results_of_the_trusted_server_only() -> None:
    # The receiving server's header is on top; one from a relay (another id) follows.
    raw = (MAIL / "auth_results.eml").read_bytes()
    msg = parse_message(raw, authserv_id="mx.example.com")
    assert msg.auth == AuthSummary(
        spf="pass",
        dkim="pass",
        dmarc="pass",
        dkim_domains=("example-bank.com",),
        authserv_id="mx.example.com",
    )
    assert parse_message(raw, authserv_id="relay.example.net").auth == AuthSummary()
    assert parse_message(raw).auth == AuthSummary()  # no trusted server: nothing read


def test_received_spf_is_not_read() -> None:
    # It names no server, so a sender could have written it (see `read_auth`).
    raw = (MAIL / "received_spf_only.eml").read_bytes()
    assert parse_message(raw, authserv_id="mx.example.com").auth == AuthSummary()


def test_no_auth_headers() -> None:
    assert load("no_body.eml").auth == AuthSummary()


# --- inputs that are not mail --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"\n\n\n", b"From nobody\n", b"just some words\n", b"%PDF-1.7\n\x00\x01", b"\xff\xfe"],
)
def test_not_mail(raw: bytes) -> None:
    with pytest.raises(NotMailError) as info:
        parse_message(raw)
    assert ".eml" in str(info.value)  # the message says what to give instead


def test_random_binary_is_not_mail_or_a_message() -> None:
    rng = random.Random(20250317)
    for _ in range(50):
        raw = rng.randbytes(rng.randrange(0, 20_000))
        try:
            msg = parse_message(raw)
        except NotMailError:
            continue
        assert_message_invariants(msg, raw)


def test_header_then_binary_garbage_is_a_message() -> None:
    raw = b"X-Junk: yes\n" + random.Random(7).randbytes(50_000)
    msg = parse_message(raw)
    assert_message_invariants(msg, raw)
    assert msg.header("x-junk") == "yes"


def test_bytes_like_inputs_and_wrong_type() -> None:
    raw = (MAIL / "mbox_from_line.eml").read_bytes()
    # Typed as bytes, but any bytes-like object is accepted.
    assert parse_message(bytearray(raw)) == parse_message(raw)  # type: ignore[arg-type]
    assert parse_message(memoryview(raw)) == parse_message(raw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_message(raw.decode())  # type: ignore[arg-type]


def test_message_is_frozen_and_hash_is_stable() -> None:
    raw = (MAIL / "nested_multipart.eml").read_bytes()
    first, second = parse_message(raw), parse_message(raw)
    assert first == second
    assert first.content_hash == hashlib.sha256(raw).hexdigest()
    assert parse_message(raw + b"\n").content_hash != first.content_hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.text = ""  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.attachments[0].filename = "x"  # type: ignore[misc]


# --- bounded work ---------------------------------------------------------------------------


def test_text_is_bounded_across_many_parts() -> None:
    # Two parts of 60,000 chars each: the kept text must stop at the cap, newlines included.
    part = "a" * 60_000
    raw = (
        "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=X\n\n"
        f"--X\nContent-Type: text/plain\n\n{part}\n--X\nContent-Type: text/plain\n\n{part}\n--X--\n"
    ).encode()
    msg = parse_message(raw)
    assert len(msg.text) == MAX_TEXT_CHARS
    assert msg.truncated


def measure_peak(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` and return its result and the peak of Python memory it allocated."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, peak - base


def mail_with_attachment(attachment_bytes: int) -> bytes:
    """A message with a short text, a base64 PDF of about ``attachment_bytes``, then a note."""
    line = b"JVBERi0xLjcKJeLjz9MKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKMiAwIG9iago8\n"
    body = line * (attachment_bytes // len(line))
    return (
        b"From: Scanner <scanner@office.example.com>\nTo: you@example.com\n"
        b"Subject: Scanned document\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="scan-b"\n\n'
        b"--scan-b\nContent-Type: text/plain; charset=utf-8\n\nYour scan is attached.\n\n"
        b'--scan-b\nContent-Type: application/pdf; name="scan-0042.pdf"\n'
        b'Content-Disposition: attachment; filename="scan-0042.pdf"\n'
        b"Content-Transfer-Encoding: base64\n\n" + body + b"\n"
        b"--scan-b\nContent-Type: text/plain\n"
        b'Content-Disposition: attachment; filename="notes.txt"\n\nsee page 2\n--scan-b--\n'
    )


def test_30mb_attachment_is_bounded_in_memory_and_keeps_names() -> None:
    big = mail_with_attachment(30 * 1024 * 1024)
    small = mail_with_attachment(MAX_PARSE_BYTES + MAX_PARSE_BYTES // 2)
    assert len(big) > 30 * 1024 * 1024

    msg, peak_big = measure_peak(lambda: parse_message(big))
    _, peak_small = measure_peak(lambda: parse_message(small))

    assert msg.truncated
    assert msg.size == len(big)
    assert msg.text.strip() == "Your scan is attached."
    assert len(msg.text) <= MAX_TEXT_CHARS
    assert msg.attachments[0].filename == "scan-0042.pdf"
    assert msg.attachments[0].content_type == "application/pdf"
    assert any("larger than" in d for d in msg.defects)
    # Bounded work without a timer: the parse holds a few copies of the first
    # MAX_PARSE_BYTES (bytes, str, line list, decoded payload), never of the 30 MB.
    assert peak_big < 12 * MAX_PARSE_BYTES, peak_big
    assert peak_big <= peak_small * 1.25 + 256 * 1024, (peak_big, peak_small)


def test_30mb_text_body_keeps_text_bounded() -> None:
    raw = b"From: a@example.com\nSubject: wall of text\n\n" + b"buy cheap pills now\n" * 1_600_000
    msg, peak = measure_peak(lambda: parse_message(raw))
    assert msg.truncated
    assert 0 < len(msg.text) <= MAX_TEXT_CHARS
    assert peak < 12 * MAX_PARSE_BYTES, peak


def test_names_shortly_past_the_parse_cap_are_found_by_a_cheap_scan() -> None:
    raw = mail_with_attachment(8_000)
    msg = parse_message(raw, max_parse_bytes=4096)
    assert msg.truncated and msg.size == len(raw)
    assert [(a.filename, a.content_type) for a in msg.attachments] == [
        ("scan-0042.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),  # after the cap: name and guessed type only
    ]


# --- property-based fuzzing ----------------------------------------------------------------

# SPAMGUARD_FUZZ_EXAMPLES=20000 runs a deep fuzz; the default keeps the suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("SPAMGUARD_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    try:
        msg = parse_message(raw)
    except NotMailError:
        return
    assert_message_invariants(msg, raw)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_bytes_after_a_header_line(tail: bytes) -> None:
    raw = b"Subject: fuzz\n" + tail
    msg = parse_message(raw)  # starts with a header: always a Message
    assert_message_invariants(msg, raw)


CHARSETS = [
    "utf-8",
    "iso-8859-1",
    "windows-1252",
    "koi8-r",
    "shift_jis",
    "gb2312",
    "utf-16",
    "us-ascii",
    "x-foo",
    "idna",
    "base64",
    "",
]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "x-bogus", ""]
LEAF_TYPES = [
    "text/plain",
    "text/html",
    "text/calendar",
    "application/octet-stream",
    "application/pdf",
    "image/png",
    "message/rfc822",
    "multipart/mixed",  # a multipart leaf: no boundary, no children
]
HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "Received"]
HEADER_NAMES += ["Authentication-Results", "Received-SPF", "List-Id", "Content-Type"]

header_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=60
)
boundaries = st.text(
    st.sampled_from("abcXYZ019'()+_,-./:=? ü\"") | st.characters(exclude_categories=["Cs"]),
    min_size=1,
    max_size=30,
).filter(lambda b: "\n" not in b and "\r" not in b)


def encode_text(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset or "utf-8", "replace")
    except (LookupError, UnicodeError, TypeError):
        return text.encode("utf-8")


@st.composite
def header_values(draw: st.DrawFn) -> bytes:
    text = draw(header_text)
    style = draw(st.sampled_from(["raw-utf8", "raw-latin1", "word-b", "word-q", "mixed"]))
    charset = draw(st.sampled_from(CHARSETS))
    if style == "raw-utf8":
        return text.encode("utf-8")
    if style == "raw-latin1":
        return text.encode("latin-1", "replace")
    data = encode_text(text, charset)
    if style == "word-q":
        word = quopri.encodestring(data, header=True).replace(b"\n", b"")
    else:
        word = base64.b64encode(data)
    out = b"=?" + charset.encode() + b"?" + (b"q" if style == "word-q" else b"b") + b"?"
    out += word + b"?="
    if style == "mixed":
        out = text.encode("utf-8") + b" " + out + b" <x@example.com>"
    return out


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    names = draw(
        st.lists(
            st.sampled_from(HEADER_NAMES)
            | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True),
            min_size=1,
            max_size=8,
        )
    )
    lines = []
    for name in names:
        value = draw(header_values())
        if draw(st.booleans()) and len(value) > 10:  # fold the line
            cut = draw(st.integers(1, len(value) - 1))
            value = value[:cut] + b"\n\t" + value[cut:]
        lines.append(name.encode() + b": " + value)
    return b"\n".join(lines) + b"\n"


@st.composite
def leaf_part(draw: st.DrawFn) -> bytes:
    ctype = draw(st.sampled_from(LEAF_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    cte = draw(st.sampled_from(ENCODINGS))
    text = draw(st.text(max_size=300))
    if ctype == "text/html":
        url = draw(st.sampled_from(["https://a.example.com/x", "http://b.example.net", "www.c"]))
        text = f"<html><head><style>x{{}}</style><body><p>{text}</p><a href='{url}'>go</a>"
    data = encode_text(text, charset)
    if draw(st.booleans()):
        data += draw(st.binary(max_size=40))
    if cte == "base64":
        data = base64.encodebytes(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))] + b"!*"  # damaged base64
    elif cte == "quoted-printable":
        data = quopri.encodestring(data)
    head = b"Content-Type: " + ctype.encode()
    if charset:
        head += b"; charset=" + charset.encode()
    if cte:
        head += b"\nContent-Transfer-Encoding: " + cte.encode()
    if draw(st.booleans()):
        name = draw(header_values())
        disp = draw(st.sampled_from([b"attachment", b"inline", b"bogus"]))
        head += b"\nContent-Disposition: " + disp + b'; filename="' + name + b'"'
    return head + b"\n\n" + data


def multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "signed", "digest"]))
        boundary = draw(boundaries).encode(draw(st.sampled_from(["utf-8", "latin-1"])), "replace")
        parts = draw(st.lists(children, max_size=4))
        out = b'Content-Type: multipart/%s; boundary="%s"\n\n' % (subtype.encode(), boundary)
        if draw(st.booleans()):
            out += b"This is a multi-part message in MIME format.\n"
        for part in parts:
            out += b"--" + boundary + b"\n" + part + b"\n"
        if draw(st.booleans()):  # sometimes the closing boundary is missing
            out += b"--" + boundary + b"--\n"
        return out

    return build()


mime_trees = st.recursive(leaf_part(), multipart, max_leaves=8)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    raw = draw(headers()) + b"MIME-Version: 1.0\n" + draw(mime_trees)
    if draw(st.booleans()):
        raw = b"From sender@example.com Mon Jan  6 10:00:00 2025\n" + raw
    if draw(st.booleans()):
        raw = raw.replace(b"\n", b"\r\n")
    return raw


@FUZZ
@given(messages(), st.data())
def test_fuzz_structured_mime(raw: bytes, data: st.DataObject) -> None:
    msg = parse_message(raw)  # the full message starts with headers: always a Message
    assert_message_invariants(msg, raw)
    assert parse_message(raw) == msg  # deterministic

    cut = data.draw(st.integers(0, len(raw)), label="cut")
    truncated = raw[:cut]
    try:
        part = parse_message(truncated)
    except NotMailError:
        return
    assert_message_invariants(part, truncated)


@FUZZ
@given(messages(), st.integers(64, 4096))
def test_fuzz_small_parse_cap(raw: bytes, cap: int) -> None:
    msg = parse_message(raw, max_parse_bytes=cap)
    assert_message_invariants(msg, raw)
    assert msg.truncated or len(raw) <= cap + 100  # an mbox line is outside the cap


def test_attachment_and_auth_values_are_frozen() -> None:
    att = Attachment("a.pdf", "application/pdf", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        att.size = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        AuthSummary().spf = "pass"  # type: ignore[misc]


@pytest.mark.corpus
def test_corpus_text_has_no_wrong_charset_control_codes() -> None:
    """Every message of the shared corpus reads without C1 control codes (U+0080-U+009F).

    Those appear only when 8-bit bytes are read in the wrong charset: Big5, Shift_JIS or
    Thai spam sent unlabelled or labelled Latin-1, Windows-1252 quotes labelled ISO-8859-1.
    """
    import re

    from tests.conftest import shared_corpus_dir

    corpus = shared_corpus_dir()
    if corpus is None:
        pytest.skip(
            "shared SpamAssassin corpus not fetched (run shared/corpora/fetch-spamassassin)"
        )
    c1 = re.compile("[\x80-\x9f]")
    paths = [p for p in sorted(corpus.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    assert len(paths) > 5000
    garbled = []
    for path in paths:
        msg = parse_message(path.read_bytes())
        if c1.search(msg.subject) or len(c1.findall(msg.text)) > 3:
            garbled.append(str(path.relative_to(corpus)))
    assert garbled == []


# ------------------------------------------------- raw header fields (benchmarks and scripts)


def test_split_header_fields_keeps_folds_and_gives_the_bytes_back() -> None:
    from spamguard.message import split_header_fields

    for eol in (b"\n", b"\r\n"):
        raw = eol.join(
            [b"From: a@example.com", b"Subject: one", b"\ttwo", b"X-A: 1", b"", b"body", b""]
        )
        fields, got_eol, body = split_header_fields(raw)
        assert fields == [b"From: a@example.com", b"Subject: one" + eol + b"\ttwo", b"X-A: 1"]
        assert got_eol == eol and body == b"body" + eol
        assert got_eol.join(fields) + eol + eol + body == raw
    assert split_header_fields(b"Subject: no body") == ([b"Subject: no body"], b"\n", b"")


def test_with_subject_replaces_every_subject_field_and_nothing_else() -> None:
    from spamguard.message import with_subject

    raw = b"From: a@example.com\nSubject: old\n  folded\nSubject: again\nTo: b@example.com\n\nhi\n"
    new = with_subject(raw, "Meeting notes")
    assert new == b"From: a@example.com\nTo: b@example.com\nSubject: Meeting notes\n\nhi\n"
    assert parse_message(new).subject == "Meeting notes"
    unicode = with_subject(raw, "Réunion ✓")
    assert unicode.isascii()  # an RFC 2047 encoded word
    assert parse_message(unicode).subject == "Réunion ✓"
