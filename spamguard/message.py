"""Parse RFC 822 bytes into a frozen `Message`; malformed mail gives defects, never a crash.

Over 600 lines on purpose: decoding mail (charsets, MIME, HTML to text, authentication
results) is one careful pass over hostile input; its helpers are used only by `parse_message`.

The standard library's parsers are the reference. Where their Python loops cost most, a
faster reading that gives the same objects stands in, each used only under the Python code
it copies and tested against it: mail that is not multipart skips the FeedParser
(`_message_from_bytes`), HTML start and end tags are read once per process (`_HTMLText`).
"""

from __future__ import annotations

import codecs
import email
import email.errors
import email.feedparser
import email.header
import email.message
import email.parser
import email.utils
import functools
import hashlib
import html
import html.parser
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message as EmailMessage
from email.policy import Compat32
from html.parser import HTMLParser

from spamguard.errors import NotMailError

__all__ = [
    "MAX_MULTIPARTS",
    "MAX_PARSE_BYTES",
    "MAX_TEXT_CHARS",
    "NO_AUTHSERV_ID",
    "Attachment",
    "AuthSummary",
    "Message",
    "authserv_ids",
    "flatten_mime",
    "learn_authserv_id",
    "parse_message",
    "read_auth",
    "split_header_fields",
    "with_authserv_id",
    "with_subject",
]

# A message is parsed from at most this many bytes: a 30 MB attachment must cost no more
# than a 1 MB one. Attachment names past the cap are still found by a cheap scan.
MAX_PARSE_BYTES = 1 << 20
# The decoded text body kept per message (the models read far less than this).
MAX_TEXT_CHARS = 100_000
# Headers kept per message; spam with thousands of header lines is itself a defect.
MAX_HEADERS = 500

_URL_RE = re.compile(r"""(?i)\b(?:https?://|www\.)[^\s<>"'`{}|\\^\[\]]{2,2000}""")
_TRAILING_PUNCT = ".,;:!?)]}'\""
_FILENAME_RE = re.compile(rb"""(?i)\bfilename\*?=\s*"?([^"\r\n;]{1,255})"?""")
_AUTH_METHOD_RE = re.compile(r"(?i)^\s*(spf|dkim|dmarc)\s*(?:/\s*\d+)?\s*=\s*([a-z]+)")
_AUTH_PROPERTY_RE = re.compile(
    r"(?i)\b(header\.d|header\.i|header\.from|smtp\.mailfrom)\s*=\s*(\S+)"
)
_AUTHSERV_ID_RE = re.compile(r"^\s*([^\s;]+)")
# What the stdlib decodes; anything else is kept as the raw bytes.
_KNOWN_CTES = frozenset(
    {"7bit", "8bit", "binary", "base64", "quoted-printable"}
    | {"uuencode", "x-uuencode", "uue", "x-uue"}
)


class _RawHeaderPolicy(Compat32):
    """compat32, but header values keep their surrogate-escaped 8-bit bytes.

    Stock compat32 hands 8-bit header values back as ``Header`` objects whose ``str()``
    turns every raw byte into U+FFFD, so raw UTF-8 or Latin-1 subjects, names, file
    names and boundaries were lost. `_clean_text` decodes the escapes instead.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_POLICY = _RawHeaderPolicy()


@dataclass(frozen=True, slots=True)
class Attachment:
    """A non-text MIME part (or a text part with a file name)."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class AuthSummary:
    """Results of sender authentication as the account's own receiving server recorded them.

    Read only from the Authentication-Results headers at the top of the message that carry
    ``authserv_id``, the id of the account's receiving server (learned from its Inbox, see
    `learn_authserv_id`). Without a trusted id every field is empty: anything below or under
    another id could have been written by the sender.

    Each result is a lower-case word such as ``"pass"``, ``"fail"``, ``"softfail"``,
    ``"none"``, or ``None`` when the trusted header gives no such result. ``dkim_domains``
    are the d= domains of the DKIM signatures that passed.
    """

    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    dkim_domains: tuple[str, ...] = ()
    authserv_id: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One mail message, decoded and bounded. Values cross rooms; nothing here does I/O."""

    headers: tuple[tuple[str, str], ...]
    subject: str
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    message_id: str
    date: str
    text: str
    html_chars: int
    text_chars: int
    urls: tuple[str, ...]
    url_domains: tuple[str, ...]
    attachments: tuple[Attachment, ...]
    auth: AuthSummary
    size: int
    content_hash: str
    defects: tuple[str, ...] = field(default=())
    truncated: bool = False
    # The text a reader sees, when it differs from `text`: HTML can hide words (display:none,
    # white on white, zero-size fonts) that only a filter would read. None: nothing hidden.
    visible: str | None = None
    # Characters of HTML text hidden from the reader.
    hidden_chars: int = 0

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), decoded, or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every header called ``name`` (case-insensitive), decoded, in order."""
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def from_domain(self) -> str:
        _, _, domain = self.from_addr.rpartition("@")
        return domain.lower()

    @property
    def visible_text(self) -> str:
        """The text without what HTML hides from a reader (`text` when nothing is hidden)."""
        return self.text if self.visible is None else self.visible

    @property
    def had_html(self) -> bool:
        return self.html_chars > 0


def parse_message(
    raw: bytes, *, max_parse_bytes: int = MAX_PARSE_BYTES, authserv_id: str | None = None
) -> Message:
    """Parse ``raw`` RFC 822 bytes.

    ``authserv_id`` names the receiving server whose Authentication-Results are trusted
    (see `read_auth`); without it ``Message.auth`` is empty.

    Never raises for malformed MIME: problems are listed in ``Message.defects``. Raises
    `NotMailError` only when the bytes have no recognisable header block at all.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_message needs bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    size = len(raw)
    content_hash = hashlib.sha256(raw).hexdigest()
    defects: list[str] = []

    start = _body_start(raw)
    if not _looks_like_mail(raw[start : start + 4096]):
        raise NotMailError(
            "this does not look like an e-mail message (no 'Name: value' header lines at "
            "the start); give SpamGuard a raw .eml/RFC 822 file"
        )

    # Slice through a memoryview so that a huge message costs one capped copy, not two
    # copies of everything: parse cost must not grow with the size of an attachment.
    view = memoryview(raw)
    end = start + max_parse_bytes
    truncated = size > end
    body = bytes(view[start:end])
    rest = view[end : end + 4 * max_parse_bytes] if truncated else memoryview(b"")
    if truncated:
        defects.append(f"message larger than {max_parse_bytes} bytes: parsed the first part only")

    # The standard library's parser recurses once per level of MIME nesting and fails on
    # deep trees (about 1,000 levels, 14 KB). Messages declaring more multiparts than any
    # real mail nests are flattened first: every leaf part under the top headers.
    # Each declaration holds the word "boundary": counting the word is the cheap bound.
    many = body.lower().count(b"boundary") > MAX_MULTIPARTS
    declared = len(_BOUNDARY_RE.findall(body)) if many else 0
    if declared > MAX_MULTIPARTS:
        flat = flatten_mime(body)
        if flat is not None:
            defects.append(f"{declared} nested multiparts: flattened")
            body = flat
    body_defects: list[str] = []
    try:
        msg = _message_from_bytes(body)
        # The body is read first: the charset its text turned out to be in is how mail
        # clients read raw 8-bit header bytes too (a Big5 subject over a Big5 body), where a
        # guess from a dozen header bytes alone is unreliable.
        walker = _BodyWalker(body_defects)
        walker.walk(msg)
    except Exception as exc:  # the stdlib parser is meant not to raise; be sure anyway
        # Keep the top headers (Subject, From: what the user and the model read first);
        # the body becomes one plain-text part.
        defects.append(f"parser failed: {type(exc).__name__}")
        body_defects = []
        msg = email.message_from_bytes(_as_plain_text(body), policy=_POLICY)
        walker = _BodyWalker(body_defects)
        walker.walk(msg)
    hint = walker.charset

    items = msg.items()
    headers = _decoded_fields(items[:MAX_HEADERS], defects, hint)
    if len(items) > MAX_HEADERS:
        defects.append(f"more than {MAX_HEADERS} header lines")
    defects.extend(body_defects)
    hmap = _HeaderMap(headers)
    # Address lists are split before names are decoded: an encoded name may hide a comma.
    # (Only the address headers' raw values are read, so only theirs are cleaned.)
    raw_map = _HeaderMap(
        [
            (name, _clean_text(str(value), hint))
            for (name, _), (_, value) in zip(headers, items, strict=False)
            if name.lower() in _ADDRESS_HEADERS
        ]
    )

    if rest:
        for match in _FILENAME_RE.finditer(rest):
            name = bytes(match.group(1)).decode("utf-8", "replace").strip()
            walker.attachments.append(Attachment(name, _guess_type(name), 0))

    text, visible = walker.texts()
    urls = _extract_urls(text, walker.hrefs)
    from_name, from_addr = _parse_address(raw_map.get("from"), defects)
    to_addrs = _address_list(raw_map.all("to") + raw_map.all("cc"))
    return Message(
        headers=tuple(headers),
        subject=hmap.get("subject"),
        from_addr=from_addr,
        from_name=from_name,
        to=to_addrs,
        message_id=hmap.get("message-id").strip(),
        date=hmap.get("date").strip(),
        text=text,
        html_chars=walker.html_chars,
        text_chars=walker.plain_chars,
        urls=urls,
        url_domains=tuple(dict.fromkeys(d for d in (_url_domain(u) for u in urls) if d)),
        attachments=tuple(walker.attachments[:200]),
        auth=read_auth(headers, authserv_id),
        size=size,
        content_hash=content_hash,
        defects=tuple(dict.fromkeys(defects)),
        truncated=truncated or walker.text_truncated,
        visible=visible,
        hidden_chars=walker.hidden_chars,
    )


def _message_from_bytes(body: bytes) -> EmailMessage:
    """``email.message_from_bytes(body, policy=_POLICY)``, the same object, built without the
    standard library's parser when the message is not multipart or message/*: a mail of
    one text part (nine in ten) needs its headers read and the rest kept as the payload,
    where the FeedParser steps through the body a line at a time in Python (a quarter of
    parsing). The headers are read as `FeedParser._parsegen` and `_parse_headers` read them
    (the copy is used only under the standard library it copies, `_LEAN_PARSE_OK`);
    tests/test_message_lean.py compares every field of both objects on both SpamAssassin
    halves, the modern corpus and hostile input."""
    if not _LEAN_PARSE_OK:
        return email.message_from_bytes(body, policy=_POLICY)
    text = body.decode("ascii", "surrogateescape")
    msg = _lean_headers(text)
    if msg is None:
        return email.message_from_bytes(body, policy=_POLICY)
    return msg


# `email.feedparser`'s header line (headerRE) and line end (NLCRE, NLCRE_eol): a run of
# header lines (each from a start that headerRE matches to its line end) in one match.
_FP_HEADER_BLOCK_RE = re.compile(
    r"(?:(?:From |[\041-\071\073-\176]*:|[\t ])[^\r\n]*(?:\r\n|\r|\n)?)*"
)
_FP_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_FP_NL_EOL_RE = re.compile(r"(\r\n|\r|\n)\Z")
# A field of such lines: (name, value), the value as `Compat32.header_source_parse` gives it
# (from the first line's blanks stripped, inner line ends kept, the last one dropped).
_FP_FIELD_RE = re.compile(
    r"([^\r\n:]*):[ \t]*([^\r\n]*(?:(?:\r\n|\r|\n)[\t ][^\r\n]*)*)(?:\r\n|\r|\n)?"
)


def _lean_headers(text: str) -> EmailMessage | None:
    """The message of ``text`` (bytes read as ASCII with surrogate escapes, as BytesParser
    reads them) when it is neither multipart nor message/*, else None.

    The FeedParser reads the text as lines split at \\r\\n, \\r or \\n, ends kept. Its
    header loop takes lines while headerRE matches them (one match of the block here) and
    drops the blank line after them; `_parse_headers` makes fields of them; a non-multipart's
    payload is the rest of the text.
    """
    msg = EmailMessage(policy=_POLICY)
    pushed_back = ""
    pos = _plain_fields(msg, text)
    if pos is None:
        pos, pushed_back = _header_lines(msg, text)
    if msg.get_content_maintype() in ("multipart", "message"):
        return None
    msg.set_payload(pushed_back + text[pos:])
    return msg


def _header_lines(msg: EmailMessage, text: str) -> tuple[int, str]:
    """The FeedParser's header loop and `_parse_headers` over the lines of ``text``: the
    fields and defects set on ``msg``; where the payload starts, and the line pushed back
    to it, if any."""
    end = _FP_HEADER_BLOCK_RE.match(text).end()  # type: ignore[union-attr]
    pos = end
    if pos < len(text):
        if text[pos] == "\r":
            pos += 2 if text.startswith("\r\n", pos) else 1  # the blank line is dropped
        elif text[pos] == "\n":
            pos += 1
        else:  # not a blank line: the body's first line
            msg.defects.append(email.errors.MissingHeaderBodySeparatorDefect())
    start = 0
    if text.startswith("From "):  # the first line: an mbox envelope
        first = _FP_LINE_RE.match(text).group()  # type: ignore[union-attr]
        start = len(first)
        eol = _FP_NL_EOL_RE.search(first)
        msg.set_unixfrom(first[: -len(eol.group(0))] if eol else first)
    block = text[start:end]
    pushed_back = ""
    if (
        block[:1] not in (" ", "\t", ":")
        and not any(piece in block for piece in ("\nFrom ", "\rFrom ", "\n:", "\r:"))
        and not block.startswith("From ")
    ):
        # Every line opens a field with "name:" or goes on with a space or a tab: the
        # fields in one scan (`Message.set_raw` appends to _headers).
        msg._headers.extend(_FP_FIELD_RE.findall(block))  # type: ignore[attr-defined]
    else:
        pushed_back = _header_fields(msg, _FP_LINE_RE.findall(block))
    return pos, pushed_back


def _plain_fields(msg: EmailMessage, text: str) -> int | None:
    """`_header_lines` for most mail, with string methods: when the text's first line ends
    in \\n (\\r\\n), the header block has no other line end, ends at a blank line, and
    every line of it opens a field with a name and a colon or goes on with a space or a tab
    (so no line is an envelope or a defect). Sets the fields on ``msg`` and says where the
    payload starts; None when any of this fails (``msg`` is as it was)."""
    newline = text.find("\n")
    eol = "\r\n" if newline > 0 and text[newline - 1] == "\r" else "\n"
    if text.startswith(eol):
        head, pos = "", len(eol)
    else:
        end = text.find(eol + eol)
        if end < 0:
            return None
        head, pos = text[:end], end + 2 * len(eol)
        if eol == "\n":
            if "\r" in head:
                return None
        elif not head.count("\r") == head.count("\n") == head.count("\r\n"):
            return None
        if head[0] in " \t" or _NOT_A_FIELD_LINE_RE.search("\n" + head):
            return None
    split = _FIELD_BREAK_RE if eol == "\n" else _FIELD_BREAK_CRLF_RE
    fields = [field.partition(":") for field in split.split(head)] if head else []
    # (`Compat32.header_source_parse` of each, appended by `Message.set_raw`.)
    msg._headers = [(name, value.lstrip(" \t")) for name, _, value in fields]  # type: ignore[attr-defined]
    return pos


# A line that is not `name:` or a continuation, and where a line's field ends.
_NOT_A_FIELD_LINE_RE = re.compile(r"\n(?![\041-\071\073-\176]+:|[\t ])")
_FIELD_BREAK_RE = re.compile(r"\n(?![\t ])")
_FIELD_BREAK_CRLF_RE = re.compile(r"\r\n(?![\t ])")


def _header_fields(msg: EmailMessage, lines: list[str]) -> str:
    """`FeedParser._parse_headers` of the header lines after an mbox envelope, if any: the
    fields set on ``msg``, the defects it notes; the last line when it is pushed back to the
    body (an envelope-like line under the headers), else ''."""
    field: list[str] = []
    for lineno, line in enumerate(lines):
        if line[0] in " \t":
            if not field:
                msg.defects.append(email.errors.FirstHeaderLineIsContinuationDefect(line))
                continue
            field.append(line)
            continue
        if field:
            msg.set_raw(*_POLICY.header_source_parse(field))
            field = []
        if line.startswith("From "):
            if lineno == len(lines) - 1:
                return line  # the body's first line, most likely
            msg.defects.append(email.errors.MisplacedEnvelopeHeaderDefect(line))
            continue
        if line[0] == ":":
            msg.defects.append(email.errors.InvalidHeaderDefect("Missing header name."))
            continue
        field = [line]
    if field:
        msg.set_raw(*_POLICY.header_source_parse(field))
    return ""


# The standard library code `_lean_headers` copies (Python 3.11.7's): under any other (its
# bytecode's hash differs) the FeedParser itself is used.
_COPIED_EMAIL_CODE = (
    (email.parser, "BytesParser.parsebytes"),
    (email.parser, "Parser.parse"),
    (email.feedparser, "FeedParser.__init__"),
    (email.feedparser, "FeedParser.close"),
    (email.feedparser, "FeedParser._new_message"),
    (email.feedparser, "FeedParser._parsegen"),
    (email.feedparser, "FeedParser._parse_headers"),
    (email.feedparser, "BufferedSubFile.push"),
    (email.feedparser, "BufferedSubFile.close"),
    (email.feedparser, "BufferedSubFile.readline"),
    (email._policybase, "Compat32.header_source_parse"),
    (email._policybase, "Compat32.handle_defect"),
    (email.message, "Message.set_raw"),
)
_COPIED_FEEDPARSER = "f2b2a00a469ec5eda32f8deae184522da7c3079dea3a1c039e9a67e0ed70c326"
_LEAN_PARSE_OK = (
    hashlib.sha256(
        b"".join(
            functools.reduce(getattr, name.split("."), module).__code__.co_code
            for module, name in _COPIED_EMAIL_CODE
        )
    ).hexdigest()
    == _COPIED_FEEDPARSER
)


# More multipart declarations than this and a message is flattened before parsing: real
# mail nests a few levels (a forwarded message inside a reply inside an alternative).
MAX_MULTIPARTS = 100
_BOUNDARY_RE = re.compile(rb"""(?i)\bboundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""")
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_PART_TYPE_RE = re.compile(rb"(?im)^content-type:\s*([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)")
_CONTENT_FIELD_RE = re.compile(rb"(?i)^(?:content-type|content-transfer-encoding)\s*:")


def _split_header_block(data: bytes) -> tuple[bytes, bytes]:
    """(header block, rest) split at the first blank line."""
    match = _HEAD_END_RE.search(data)
    if match is None:
        return data, b""
    return data[: match.start()], data[match.end() :]


def split_header_fields(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields, line ending, body) of raw bytes: the header block ends at the first
    empty line (CRLF or LF, whichever comes first in that order), and each field keeps its
    continuation lines. ``eol.join(fields) + eol + eol + body`` gives the bytes back."""
    for sep, line_end in ((b"\r\n\r\n", b"\r\n"), (b"\n\n", b"\n")):
        i = raw.find(sep)
        if i >= 0:
            head, eol, body = raw[:i], line_end, raw[i + len(sep) :]
            break
    else:
        head, eol, body = raw, b"\n", b""
    fields: list[bytes] = []
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += eol + line
        else:
            fields.append(line)
    return fields, eol, body


def with_subject(raw: bytes, subject: str) -> bytes:
    """``raw`` with its Subject field(s) replaced by one ``subject`` (an RFC 2047 encoded word
    when it is not ASCII), placed last in the header; everything else byte for byte."""
    fields, eol, body = split_header_fields(raw)
    kept = [f for f in fields if not f.lower().startswith(b"subject:")]
    value = subject if subject.isascii() else email.header.Header(subject, "utf-8").encode()
    return eol.join([*kept, b"Subject: " + value.encode("ascii")]) + eol + eol + body


def _without_content_fields(head: bytes) -> list[bytes]:
    """The header lines of ``head`` minus Content-Type/-Transfer-Encoding (and their folds)."""
    out: list[bytes] = []
    dropping = False
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = bool(_CONTENT_FIELD_RE.match(line))
        if not dropping:
            out.append(line)
    return out


def flatten_mime(data: bytes) -> bytes | None:
    """The message with its MIME tree flattened: the top headers over one multipart/mixed of
    every leaf part, in order; None when no leaf part is found.

    Parts are found by their delimiter lines ("--" + a boundary some part declared), so any
    depth costs one pass over the bytes and no recursion. Multipart and message/* parts
    hold nothing of their own but a preamble and are left out; so are epilogues.
    """
    head, rest = _split_header_block(data)
    boundaries = {a or b for a, b in _BOUNDARY_RE.findall(data)}
    leaves: list[bytes] = []
    current: list[bytes] | None = None  # None: between a closing delimiter and the next

    def close(segment: list[bytes] | None) -> None:
        if not segment:
            return
        part = b"".join(segment)
        # The line break before a delimiter belongs to the delimiter.
        part = part[:-2] if part.endswith(b"\r\n") else part[:-1] if part.endswith(b"\n") else part
        part_head, _ = _split_header_block(part)
        if not part.strip(b"\r\n"):
            return
        match = _PART_TYPE_RE.search(part_head) if part[:1] not in (b"\r", b"\n") else None
        kind = match.group(1).lower() if match else b"text/plain"
        if not kind.startswith((b"multipart/", b"message/")):
            leaves.append(part)

    for line in rest.splitlines(keepends=True):
        stripped = line.rstrip(b"\r\n\t ")
        if stripped.startswith(b"--"):
            name = stripped[2:]
            closing = name.endswith(b"--") and name[:-2] in boundaries
            if closing or name in boundaries:
                close(current)
                current = None if closing else []
                continue
        if current is not None:
            current.append(line)
    close(current)
    if not leaves:
        return None
    boundary = b"=_spamguard_flat_" + hashlib.sha256(data).hexdigest()[:16].encode()
    top = _without_content_fields(head)
    top.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
    out = [b"\n".join(top), b"\n\n"]
    for part in leaves:
        out += [b"--", boundary, b"\n", part, b"\n"]
    out += [b"--", boundary, b"--\n"]
    return b"".join(out)


def _as_plain_text(data: bytes) -> bytes:
    """The top headers over the rest of the bytes as one plain-text body."""
    head, rest = _split_header_block(data)
    top = _without_content_fields(head)
    top.append(b"Content-Type: text/plain")
    return b"\n".join(top) + b"\n\n" + rest


_ADDRESS_HEADERS = frozenset({"from", "to", "cc"})


class _HeaderMap:
    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self._map: dict[str, list[str]] = {}
        for key, value in headers:
            self._map.setdefault(key.lower(), []).append(value)

    def get(self, name: str) -> str:
        values = self._map.get(name)
        return values[0] if values else ""

    def all(self, name: str) -> list[str]:
        return self._map.get(name, [])


def _body_start(raw: bytes) -> int:
    """Offset of the header block: past an mbox 'From ' line and any blank lines."""
    start = 0
    if raw.startswith(b"From "):
        newline = raw.find(b"\n")
        start = newline + 1 if newline >= 0 else len(raw)
    match = _BLANK_LINES_RE.match(raw, start)
    return match.end() if match else start


_HEADER_LINE_RE = re.compile(rb"^[!-9;-~]{1,200}:")
_BLANK_LINES_RE = re.compile(rb"[\r\n]*")


def _looks_like_mail(raw: bytes) -> bool:
    """True when the first line (blank lines already skipped) is a header field."""
    first = raw[:4096].split(b"\n", 1)[0]
    return bool(_HEADER_LINE_RE.match(first))


def _clean_text(text: str, hint: str | None = None) -> str:
    """Undo surrogate escapes from raw 8-bit header bytes.

    UTF-8 where valid; else the body's charset (``hint``) if it reads them; else as
    unlabelled bytes.
    """
    if text.isascii():  # no surrogate escapes: nothing to decode
        return text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_hinted(data, hint) if hint else _decode_unlabelled(data)[0]
    return text.replace("\x00", "")


def _decode_hinted(data: bytes, hint: str) -> str:
    try:
        return data.decode(hint)
    except (UnicodeError, LookupError):
        return _decode_unlabelled(data)[0]


def _decoded_fields(
    items: Sequence[tuple[str, object]], defects: list[str], hint: str | None
) -> list[tuple[str, str]]:
    """``[(_clean_text(str(name)), _decode_header(value, defects, hint)) ...]``, with the
    plain ASCII fields without an encoded word (nearly all, ~25 a message) read without
    those calls. Exact: an ASCII str holds no surrogate escape, so cleaning it only drops
    its NULs, and "=?" is looked for after they are dropped, as `_decode_header` does."""
    headers: list[tuple[str, str]] = []
    for name, value in items:
        if type(name) is str and name.isascii():
            name = name.replace("\x00", "")
        else:
            name = _clean_text(str(name))
        plain = value.replace("\x00", "") if type(value) is str and value.isascii() else None
        if plain is not None and "=?" not in plain:
            headers.append((name, " ".join(plain.split())))
        else:
            headers.append((name, _decode_header(value, defects, hint)))
    return headers


def _decode_header(value: object, defects: list[str], hint: str | None = None) -> str:
    if isinstance(value, email.header.Header):
        value = str(value)
    raw = _clean_text(str(value), hint)
    if "=?" not in raw:
        return " ".join(raw.split())
    try:
        parts = email.header.decode_header(raw)
    except Exception:
        defects.append("undecodable encoded-word header")
        return " ".join(raw.split())
    if not raw.isascii():
        # decode_header turns the plain text between encoded words into bytes with
        # raw-unicode-escape; decoding those as ASCII would lose raw 8-bit text.
        parts = [
            (_unescape_plain(chunk) if isinstance(chunk, bytes) and not charset else chunk, charset)
            for chunk, charset in parts
        ]
    # Encoded words go through the same charset aliases as bodies; one labelled Latin-1
    # holds Windows-1252 quotes and (TM) signs as often as a body does.
    parts = [(chunk, _encoded_word_codec(charset)) for chunk, charset in parts]
    try:
        # make_header restores the spaces decode_header drops between encoded words and text.
        return " ".join(str(email.header.make_header(parts)).split())
    except Exception:
        defects.append("unknown charset in encoded-word header")
    out = [
        chunk if isinstance(chunk, str) else _decode_bytes(chunk, charset, defects)
        for chunk, charset in parts
    ]
    return " ".join("".join(out).split())


def _encoded_word_codec(charset: str | None) -> str | None:
    if not charset:
        return charset
    cs = _charset_label(charset)
    return "cp1252" if cs in _WESTERN_LABELS else cs


_UNICODE_ESCAPE_RE = re.compile(r"\\u[0-9a-fA-F]{4}|\\U000[0-9a-fA-F]{5}|\\U0010[0-9a-fA-F]{4}")


def _unescape_plain(data: bytes) -> str:
    """Undo raw-unicode-escape (Latin-1 bytes plus \\uXXXX), leaving other backslashes."""

    def char(match: re.Match[str]) -> str:
        code = int(match.group()[2:], 16)
        return match.group() if 0xD800 <= code <= 0xDFFF else chr(code)

    return _UNICODE_ESCAPE_RE.sub(char, data.decode("latin-1"))


# Charset labels found in mail that Python does not know or decodes too strictly, mapped as
# the WHATWG Encoding Standard maps them (what browsers and Thunderbird do): a label names
# the superset mail software actually writes (GB2312 mail is GBK, Shift_JIS is Windows-31J).
_CHARSET_ALIASES = {
    "chinesebig5": "big5",
    "x-x-big5": "big5",
    "big5-hkscs": "big5hkscs",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "x-euc-jp": "euc_jp",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "windows-874": "cp874",
    "iso-8859-9": "cp1254",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "iso-8859-8-i": "iso8859_8",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
}
# Labels that say "Western" or nothing at all. Their 8-bit bytes are read as Windows-1252
# (curly quotes and dashes, not C1 control codes), as every browser reads ISO-8859-1.
_WESTERN_LABELS = frozenset(
    {"", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1"}
    | {"l1", "windows-1252", "cp1252", "x-ansi", "unknown-8bit", "x-unknown", "unknown"}
    | {"8bit", "default", "x-user-defined"}
)
# Western text has a few 8-bit bytes in a hundred (accents); text in another script that
# arrives unlabelled or labelled Western (Chinese, Japanese, Thai, Cyrillic spam) is mostly
# 8-bit. Past this share the encoding is guessed from the bytes instead.
_FOREIGN_8BIT_SHARE = 0.3
_DETECT_SAMPLE = 8192
_ASCII = bytes(range(0x80))
_ASCII_SPACE_AND_CONTROLS = bytes(range(0x21))


def _charset_label(charset: str | None) -> str:
    """A declared charset, normalised and through the aliases ('' when none)."""
    cs = (charset or "").strip().strip("\"'").lower()
    return _CHARSET_ALIASES.get(cs, cs)


def _decode_bytes(data: bytes, charset: str | None, defects: list[str]) -> str:
    return _decode_text(data, charset, defects)[0]


def _decode_text(data: bytes, charset: str | None, defects: list[str]) -> tuple[str, str]:
    """Text of ``data`` and the codec that read it, given the declared ``charset``."""
    cs = _charset_label(charset)
    if cs in _WESTERN_LABELS:
        return _decode_unlabelled(data)
    try:
        text = data.decode(cs, "replace")
    except LookupError:
        defects.append(f"unknown charset {cs[:40]!r}")
        return _decode_unlabelled(data)
    except Exception:
        defects.append(f"charset {cs[:40]!r} failed")
        return _decode_unlabelled(data)
    bad = text.count("\ufffd")
    if bad > 8 and bad * 50 > len(text):
        # Mostly unreadable under its label (Latin-1 bytes labelled UTF-8, Shift_JIS
        # labelled EUC-JP): the label is wrong, so read the bytes as if unlabelled.
        return _decode_unlabelled(data)
    return text, cs


def _decode_unlabelled(data: bytes) -> tuple[str, str]:
    """8-bit bytes without a usable label: UTF-8 if valid, else Windows-1252 or a guess.

    Undeclared 8-bit text is UTF-8 today and Windows-1252 in older mail. Text in another
    script is mostly 8-bit bytes; only then is the charset guessed from the bytes (a guess
    on a few accented letters is worse than Windows-1252).
    """
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    sample = data[:_DETECT_SAMPLE]
    letters = len(sample.translate(None, _ASCII_SPACE_AND_CONTROLS))
    high = len(sample.translate(None, _ASCII))
    if letters and high / letters > _FOREIGN_8BIT_SHARE:
        guessed = _detect_charset(sample)
        if guessed:
            try:
                return data.decode(guessed, "replace"), guessed
            except LookupError:  # a guessed name this Python has no codec for
                pass
    return data.decode("cp1252", "replace"), "cp1252"


def _detect_charset(data: bytes) -> str | None:
    """The charset ``charset_normalizer`` reads the bytes best with, or None.

    One correction: Shift_JIS bytes also decode as Korean CP949, into syllables from its
    extension block that real Korean mail (EUC-KR, CP949's core) practically never uses.
    A CP949 guess that EUC-KR cannot read yields to the next candidate.
    """
    try:
        from charset_normalizer import from_bytes

        for match in from_bytes(data):
            if match.encoding == "cp949" and not _decodes(data, "euc_kr"):
                continue
            return str(match.encoding)
    except Exception:  # a guess is optional; the caller falls back to Windows-1252
        return None
    return None


def _decodes(data: bytes, codec: str) -> bool:
    """True when ``data`` reads as ``codec`` (a character cut at the end is allowed)."""
    try:
        codecs.getincrementaldecoder(codec)().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _parse_address(value: str, defects: list[str]) -> tuple[str, str]:
    try:
        name, addr = _parseaddr(value)
    except Exception:
        return "", ""
    return _decode_header(name, defects), addr.strip().lower()


def _address_list(values: list[str]) -> tuple[str, ...]:
    try:
        return _addresses(tuple(values))
    except Exception:
        return ()


# The standard library's address parser reads character by character in Python; the same
# senders and recipients recur across a mailbox, so each header value is parsed once per
# process (results depend on the value alone; an exception is not cached and recurs).
@functools.lru_cache(maxsize=4096)
def _parseaddr(value: str) -> tuple[str, str]:
    return email.utils.parseaddr(value)


@functools.lru_cache(maxsize=4096)
def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(addr for _, addr in email.utils.getaddresses(values) if addr)[:100]


# -- Authentication-Results (RFC 8601) -----------------------------------------------------------
#
# Anyone can write an Authentication-Results header into the mail they send. Only the one the
# account's own receiving server added is evidence: it carries that server's authserv-id and
# sits at the top, above everything the sender wrote (RFC 8601 section 5; a conforming server
# also removes A-R headers bearing its own id from incoming mail, but not every server does).
# Received-SPF carries no id at all and is not read.


def _strip_comments(value: str) -> str:
    """The header value without RFC 5322 (comments), which may nest."""
    out: list[str] = []
    depth = 0
    quoted = False
    for ch in value:
        if ch == '"' and not depth:
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
            continue
        if not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if not depth:
            out.append(ch)
    return "".join(out)


#: What stands for the id of a header written without one. Microsoft 365 and Outlook.com
#: write theirs so ("Authentication-Results: spf=pass (sender IP is ...) ..."), so for
#: their accounts this is the receiving server's id.
NO_AUTHSERV_ID = "(none)"


def _authserv_id(value: str) -> str:
    text = _strip_comments(value)
    if _AUTH_METHOD_RE.match(text.split(";", 1)[0]):
        return NO_AUTHSERV_ID
    match = _AUTHSERV_ID_RE.match(text)
    return match.group(1).strip('"').lower() if match else ""


def _resinfos(value: str) -> list[str]:
    """The result parts of an A-R value (what follows the authserv-id, when it has one)."""
    parts = _strip_comments(value).split(";")
    return parts if _AUTH_METHOD_RE.match(parts[0]) else parts[1:]


def authserv_ids(headers: Sequence[tuple[str, str]]) -> list[str]:
    """The authserv-id of every Authentication-Results header, top to bottom."""
    return [_authserv_id(v) for k, v in headers if k.lower() == "authentication-results"]


def read_auth(headers: Sequence[tuple[str, str]], authserv_id: str | None) -> AuthSummary:
    """Results from the Authentication-Results the trusted server ``authserv_id`` added.

    Read: the topmost Authentication-Results header, if it carries ``authserv_id``, and the
    A-R headers with the same id directly beneath it (servers that run one milter per method
    write one header each, one after another). Everything else is ignored: a header under
    another id, and any A-R further down, past some other header, which is where the
    sender's own headers start. Each method is read from the first header reporting it.

    Limit: a server that adds no A-R to some message leaves a sender's header bearing its
    id on top of that message. RFC 8601 section 5 has servers remove such headers; the
    account's id is only learnt from a server that adds A-R to most of its mail.
    """
    trusted = (authserv_id or "").strip().lower()
    if not trusted:
        return AuthSummary()
    block: list[str] = []
    started = False
    for name, value in headers:
        is_ar = name.lower() == "authentication-results"
        if not started:
            if not is_ar:
                continue
            if _authserv_id(value) != trusted:
                return AuthSummary()  # the topmost A-R is someone else's
            started = True
            block.append(value)
            continue
        if not is_ar or _authserv_id(value) != trusted:
            break
        block.append(value)
    if not block:
        return AuthSummary()
    found: dict[str, str] = {}
    reported_in: dict[str, int] = {}  # method -> the header that first reported it
    dkim_domains: list[str] = []
    for index, value in enumerate(block):
        for resinfo in _resinfos(value):
            match = _AUTH_METHOD_RE.match(resinfo)
            if not match:
                continue
            method, result = match.group(1).lower(), match.group(2).lower()
            # A method counts from the first header that reports it (several DKIM
            # signatures in it included); a later header cannot add to it.
            if reported_in.setdefault(method, index) != index:
                continue
            found.setdefault(method, result)
            if method == "dkim" and result == "pass":
                found["dkim"] = "pass"  # one verified signature is a DKIM pass
                props = {
                    k.lower(): v.strip('"').lower() for k, v in _AUTH_PROPERTY_RE.findall(resinfo)
                }
                domain = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
                domain = domain.strip(".")
                if domain and domain not in dkim_domains:
                    dkim_domains.append(domain)
    return AuthSummary(
        spf=found.get("spf"),
        dkim=found.get("dkim"),
        dmarc=found.get("dmarc"),
        dkim_domains=tuple(dkim_domains[:10]),
        authserv_id=trusted,
    )


def with_authserv_id(message: Message, authserv_id: str | None) -> Message:
    """``message`` with its authentication results read under ``authserv_id`` (no re-parse)."""
    auth = read_auth(message.headers, authserv_id)
    return message if auth == message.auth else replace(message, auth=auth)


#: Messages the id must be topmost on before it is trusted, and the share of the sample.
MIN_AUTHSERV_MESSAGES = 3
MIN_AUTHSERV_SHARE = 0.5


def learn_authserv_id(
    messages: Iterable[Message],
    *,
    min_messages: int = MIN_AUTHSERV_MESSAGES,
    min_share: float = MIN_AUTHSERV_SHARE,
) -> str | None:
    """The authserv-id of the account's receiving server, from mail it delivered.

    A server that writes Authentication-Results writes one at the top of every message it
    accepts, so its id is the most common topmost id in the account's Inbox. Required: on at
    least ``min_messages`` messages and ``min_share`` of all of them, so a few spams that
    arrived with a forged header of their own cannot make their id the trusted one.
    None when the sample says nothing (a server that adds no A-R, or too little mail).
    """
    counts: dict[str, int] = {}
    total = 0
    for msg in messages:
        total += 1
        ids = authserv_ids(msg.headers)
        if ids and ids[0]:
            counts[ids[0]] = counts.get(ids[0], 0) + 1
    if not counts:
        return None
    best, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    if n < min_messages or n < min_share * total:
        return None
    return best


def _guess_type(filename: str) -> str:
    import mimetypes

    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


class _BodyWalker:
    """Collects text, HTML-as-text, hrefs and attachments from a MIME tree."""

    def __init__(self, defects: list[str]) -> None:
        self.defects = defects
        self.plain: list[str] = []
        self.html: list[str] = []
        self.hrefs: list[str] = []
        self.attachments: list[Attachment] = []
        self.plain_chars = 0
        self.html_chars = 0
        # The visible text of each HTML part, in order (None for the plain parts).
        self.html_visible: list[str | None] = []
        self.hidden_chars = 0
        self.text_truncated = False
        # The first charset that read 8-bit text in a text part: the hint for raw headers.
        self.charset: str | None = None
        self._kept = 0

    def walk(self, msg: EmailMessage) -> None:
        for count, part in enumerate(msg.walk(), 1):
            if count > 1000:
                self.defects.append("more than 1000 MIME parts")
                break
            if part.is_multipart():
                if not part.get_payload():
                    self.defects.append("empty multipart")
            else:
                try:
                    self._part(part)
                except Exception as exc:  # a single broken part must not lose the rest
                    self.defects.append(f"unreadable part: {type(exc).__name__}")
            # Every part keeps its own defects (a nested part's missing boundary, bad
            # base64 found while decoding): read them after decoding, from each part.
            self.defects.extend(type(defect).__name__ for defect in part.defects)

    def _part(self, part: EmailMessage) -> None:
        ctype = _clean_text(part.get_content_type()).lower()
        if ctype.startswith("multipart/"):
            # A multipart the parser could not split (no boundary declared): keep its
            # bytes as text so the words still count, rather than as a nameless attachment.
            ctype = "text/plain"
        cte = str(part.get("Content-Transfer-Encoding") or "").strip().lower()
        if cte and cte not in _KNOWN_CTES:
            self.defects.append(f"unknown Content-Transfer-Encoding {cte[:40]!r}")
        disposition = (part.get("Content-Disposition") or "").lower()
        filename = _filename(part)
        payload = part.get_payload(decode=True)
        if payload is None:
            payload = b""
        if not isinstance(payload, bytes):
            payload = str(payload).encode("utf-8", "replace")
        is_text = ctype in ("text/plain", "text/html") or ctype.startswith("text/")
        if filename or (not is_text and ctype != "message/rfc822") or "attachment" in disposition:
            name = _clean_text(str(filename)) if filename else ""
            self.attachments.append(Attachment(name, ctype, len(payload)))
            if not is_text or "attachment" in disposition:
                return
        charset = _declared_charset(part.get("Content-Type"))
        text, codec = _decode_text(payload, charset, self.defects)
        if self.charset is None and not payload.isascii():
            self.charset = codec
        if ctype == "text/html" or (ctype.startswith("text/") and _looks_like_html(text)):
            converted, visible, hrefs = html_to_texts(text)
            self.html_chars += len(text)
            self.hrefs.extend(hrefs[:500])
            if self._keep(self.html, converted):
                self.html_visible.append(visible[: len(self.html[-1])])
                self.hidden_chars += len(converted) - len(visible)
        else:
            self.plain_chars += len(text)
            if self._keep(self.plain, text):
                self.html_visible.append(None)

    def _keep(self, sink: list[str], text: str) -> bool:
        room = MAX_TEXT_CHARS - self._kept
        if room <= 0:
            self.text_truncated = True
            return False
        if len(text) > room:
            text = text[:room]
            self.text_truncated = True
        self._kept += len(text)
        sink.append(text)
        return True

    def texts(self) -> tuple[str, str | None]:
        """(the text, the text a reader sees or None when nothing was hidden)."""
        # Prefer the plain alternative; fall back to HTML converted to text.
        use_plain = any(t.strip() for t in self.plain)
        text = self._join(self.plain if use_plain else self.html)
        if use_plain or not self.hidden_chars:
            return text, None
        return text, self._join([t for t in self.html_visible if t is not None])

    def _join(self, chosen: list[str]) -> str:
        text = "\n".join(chosen).replace("\r\n", "\n").replace("\x00", "")
        if len(text) > MAX_TEXT_CHARS:  # the newlines joining the parts can pass the cap
            self.text_truncated = True
            text = text[:MAX_TEXT_CHARS]
        return text


@functools.lru_cache(maxsize=1024)
def _declared_charset(content_type: str | None) -> str | None:
    """The charset of a part whose (first) Content-Type is ``content_type``: its
    ``get_content_charset()``, else its charset parameter when that is a plain string. Both
    read that header alone; its parameter parsing runs once per value a process meets (the
    same few values recur in every mailbox)."""
    probe = EmailMessage(policy=_POLICY)
    if content_type is not None:
        probe.set_raw("Content-Type", content_type)
    charset = probe.get_content_charset()
    if charset is None:
        param = probe.get_param("charset")
        charset = param if isinstance(param, str) else None
    return charset


def _filename(part: EmailMessage) -> str | None:
    """``part.get_filename()``. It reads Content-Disposition's filename, else Content-Type's
    name (any case, RFC 2231 pieces too): without the one header or the word in the other
    there is none, and its header scans and parameter parsing are spared."""
    if (
        part.get("Content-Disposition") is None
        and "name" not in str(part.get("Content-Type") or "").lower()
    ):
        return None
    name: str | None = part.get_filename()
    return name


def _looks_like_html(text: str) -> bool:
    head = text[:2000].lower()
    return "<html" in head or "<body" in head or ("<br" in head and "<p" in head)


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "tr",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "hr",
            "blockquote",
            "pre",
            "ul",
            "ol",
            "center",
        }
    )

    # Elements without content: they never close, so they never hide what follows.
    _VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
        | {"source", "track", "wbr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hrefs: list[str] = []
        # The same text without what a reader does not see (`_Style.hides`).
        self.visible: list[str] = []
        self.hidden_chars = 0
        self._skip = 0
        # Open elements and the style each one sets: (tag, hides, foreground, background).
        self._open: list[tuple[str, bool, str | None, str | None]] = []
        # What `_hides` says of each prefix of `_open`, kept as elements open and close
        # (`_inside`): one step per tag instead of a walk over every open element.
        self._state: list[_State] = []
        self._hidden = False

    def updatepos(self, i: int, j: int) -> int:
        # HTMLParser counts the lines and columns it passes, for getpos(), which nothing
        # here reads: 5% of its time on mail.
        return j

    def parse_starttag(self, i: int) -> int:
        """`HTMLParser.parse_starttag`, with each start tag's text read once per process:
        mail repeats its tags (<td>, <br>, <font face=...>) and their attribute parsing was
        a fifth of HTML's cost. What a tag gives depends on its text alone (`_start_tag`, a
        copy of the standard library's reading, used only under the version it copies)."""
        if not _START_TAG_COPY_OK:
            return super().parse_starttag(i)
        self._HTMLParser__starttag_text = None
        endpos = self.check_for_whole_start_tag(i)
        if endpos < 0:
            return endpos
        text = self.rawdata[i:endpos]
        parsed = _START_TAGS.get(text)
        if parsed is None:
            parsed = _start_tag(text)
            if len(text) <= _MAX_CACHED_TAG:
                if len(_START_TAGS) >= _MAX_START_TAGS:
                    _START_TAGS.clear()
                _START_TAGS[text] = parsed
        tag, attrs, kind = parsed
        self._HTMLParser__starttag_text = text
        self.lasttag = tag
        if kind == _TAG_DATA:
            self.handle_data(text)
        elif kind == _TAG_STARTEND:
            self.handle_startendtag(tag, list(attrs))
        else:
            self.handle_starttag(tag, list(attrs))
            if tag in self.CDATA_CONTENT_ELEMENTS:
                self.set_cdata_mode(tag)
        return endpos

    def parse_endtag(self, i: int) -> int:
        """`HTMLParser.parse_endtag` for a well-formed end tag ("</td>", "</font >"), its name
        read once per process (a copy of the standard library's reading, used only under the
        version it copies); any other end tag is the standard library's to read."""
        rawdata = self.rawdata
        gtpos = rawdata.find(">", i + 1)  # endendtag.search(rawdata, i + 1)
        if not _END_TAG_COPY_OK or gtpos < 0:
            return super().parse_endtag(i)
        text = rawdata[i : gtpos + 1]
        elem = _END_TAGS.get(text)
        if elem is None:
            match = _ENDTAGFIND.match(text)  # ends at the first ">", wherever it matches
            if not match:
                return super().parse_endtag(i)
            elem = match.group(1).lower()
            if len(_END_TAGS) >= _MAX_START_TAGS:
                _END_TAGS.clear()
            _END_TAGS[text] = elem
        if self.cdata_elem is not None and elem != self.cdata_elem:
            self.handle_data(text)
            return gtpos + 1
        self.handle_endtag(elem)
        self.clear_cdata_mode()
        return gtpos + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            # The body ends the head even when </head> or </title> is missing (HTML allows
            # it, spam relies on it); otherwise every visible word would be skipped.
            self._skip = 0
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self._emit("\n")
        if tag in ("a", "area", "form", "img", "iframe"):
            for key, value in attrs:
                if key in ("href", "action", "src") and value:
                    self.hrefs.append(value.strip())
        if tag not in self._VOID and len(self._open) < _MAX_OPEN:
            self._open.append((tag, *_element_style(tag, attrs)))
            self._state.append(_inside(self._state[-1] if self._state else _TOP, self._open[-1]))
            self._hidden = self._state[-1][3]

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self._emit("\n")
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:  # closes it and whatever was left open inside it
                del self._open[i:]
                del self._state[i:]
                self._hidden = self._state[-1][3] if self._state else False
                break

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._emit(data)

    def _emit(self, data: str) -> None:
        self.out.append(data)
        if self._hidden:
            self.hidden_chars += len(data.strip())
        else:
            self.visible.append(data)


# Deeper HTML than this is not tracked for hiding (the innermost elements inherit).
_MAX_OPEN = 512

# What a start tag's text gives (`_HTMLText.parse_starttag`): tag, attributes, and whether
# it is junk read as text, an XHTML empty tag or a start tag. Kept per process, bounded.
_TAG_DATA, _TAG_STARTEND, _TAG_START = 0, 1, 2
_StartTag = tuple[str, tuple[tuple[str, str | None], ...], int]
_START_TAGS: dict[str, _StartTag] = {}
_MAX_START_TAGS = 20_000
_MAX_CACHED_TAG = 400
# The bytecode of the standard library's parse_starttag that `_start_tag` copies (Python
# 3.11.7's): under any other, HTMLParser's own is used, uncached.
_COPIED_PARSE_STARTTAG = "22081c68f6a9759c35b03f2d61065deda286ef875de62da948e6aabd2665b24b"
_START_TAG_COPY_OK = (
    hashlib.sha256(HTMLParser.parse_starttag.__code__.co_code).hexdigest() == _COPIED_PARSE_STARTTAG
)


# The same for end tags: a well-formed end tag's text (up to its ">") -> its lower-cased name.
_END_TAGS: dict[str, str] = {}
_COPIED_PARSE_ENDTAG = "625e95bd427087466bdb7364cf6e8f850e966e4f4e5d537c772ca10096a77d57"
_END_TAG_COPY_OK = (
    hashlib.sha256(HTMLParser.parse_endtag.__code__.co_code).hexdigest() == _COPIED_PARSE_ENDTAG
)
_ENDTAGFIND: re.Pattern[str] = html.parser.endtagfind  # type: ignore[attr-defined]
_TAGFIND_TOLERANT: re.Pattern[str] = html.parser.tagfind_tolerant  # type: ignore[attr-defined]
_ATTRFIND_TOLERANT: re.Pattern[str] = html.parser.attrfind_tolerant  # type: ignore[attr-defined]


def _start_tag(text: str) -> _StartTag:
    """What `HTMLParser.parse_starttag` reads from a whole start tag's text (its lines after
    check_for_whole_start_tag, with i = 0 and endpos = len(text); nothing it reads lies
    outside the tag)."""
    attrs: list[tuple[str, str | None]] = []
    match = _TAGFIND_TOLERANT.match(text, 1)
    assert match, "unexpected call to parse_starttag()"
    k = match.end()
    tag = match.group(1).lower()
    endpos = len(text)
    while k < endpos:
        m = _ATTRFIND_TOLERANT.match(text, k)
        if not m:
            break
        attrname, rest, attrvalue = m.group(1, 2, 3)
        if not rest:
            attrvalue = None
        elif attrvalue[:1] == "'" == attrvalue[-1:] or attrvalue[:1] == '"' == attrvalue[-1:]:
            attrvalue = attrvalue[1:-1]
        if attrvalue:
            attrvalue = html.unescape(attrvalue)
        attrs.append((attrname.lower(), attrvalue))
        k = m.end()
    end = text[k:endpos].strip()
    if end not in (">", "/>"):
        return tag, tuple(attrs), _TAG_DATA
    return tag, tuple(attrs), _TAG_STARTEND if end.endswith("/>") else _TAG_START


_STYLE_PROP_RE = re.compile(r"(?i)([a-z-]+)\s*:\s*([^;]+)")
_FONT_SIZE_RE = re.compile(r"(?i)^\s*(\d*\.?\d+)\s*(px|pt|em|rem|%)?")
_NAMED_COLOURS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "snow": (255, 250, 250),
    "ivory": (255, 255, 240),
    "whitesmoke": (245, 245, 245),
}


@functools.lru_cache(maxsize=1024)
def _colour(value: str | None) -> tuple[int, int, int] | None:
    """An RGB triple from a CSS/HTML colour (#fff, #ffffff, rgb(...), a few names)."""
    if not value:
        return None
    v = value.strip().lower().replace(" ", "")
    if v in _NAMED_COLOURS:
        return _NAMED_COLOURS[v]
    if v.startswith("rgb(") and v.endswith(")"):
        try:
            r, g, b = (int(float(x.rstrip("%"))) for x in v[4:-1].split(",")[:3])
        except ValueError:
            return None
        return r, g, b
    v = v.lstrip("#")
    if len(v) == 3:
        v = "".join(c * 2 for c in v)
    if len(v) == 6:
        try:
            return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)
        except ValueError:
            return None
    return None


def _element_style(
    tag: str, attrs: list[tuple[str, str | None]]
) -> tuple[bool, str | None, str | None]:
    """(hides its content, foreground colour, background colour) set by one element."""
    hides = False
    fg: str | None = None
    bg: str | None = None
    for key, value in attrs:
        if key == "hidden":
            hides = True
        elif key == "color" and tag == "font":
            fg = value
        elif key == "bgcolor":
            bg = value
        elif key == "size" and tag == "font" and value and value.strip() in ("0", "-7"):
            hides = True
        elif key == "style" and value:
            for prop, val in _STYLE_PROP_RE.findall(value):
                prop, val = prop.lower(), val.strip().lower()
                if (prop == "display" and val.startswith("none")) or (
                    prop == "visibility" and val.startswith(("hidden", "collapse"))
                ):
                    hides = True
                elif prop == "font-size":
                    size = _FONT_SIZE_RE.match(val)
                    if size and _tiny(float(size.group(1)), (size.group(2) or "px").lower()):
                        hides = True
                elif prop == "opacity" and _transparent(val):
                    hides = True
                elif prop == "color":
                    fg = val
                elif prop in ("background-color", "background"):
                    bg = val.split()[0] if val else None
    return hides, fg, bg


def _transparent(opacity: str) -> bool:
    match = _FONT_SIZE_RE.match(opacity)
    if match is None:
        return False
    return float(match.group(1)) <= (5.0 if match.group(2) == "%" else 0.05)


def _tiny(size: float, unit: str) -> bool:
    """Text this small cannot be read: under 2 px (or the same in other units)."""
    limit = {"px": 2.0, "pt": 1.5, "em": 0.125, "rem": 0.125, "%": 12.5}.get(unit, 2.0)
    return size < limit


def _hides(open_elements: list[tuple[str, bool, str | None, str | None]]) -> bool:
    """Whether text inside these open elements is invisible: an element hides it, or its
    colour is (nearly) the colour of the background behind it (white by default)."""
    fg: tuple[int, int, int] | None = (0, 0, 0)
    bg: tuple[int, int, int] | None = (255, 255, 255)
    for _, hides, fg_value, bg_value in open_elements:
        if hides:
            return True
        if fg_value is not None:
            fg = _colour(fg_value)
        if bg_value is not None:
            bg = _colour(bg_value)
    if fg is None or bg is None:
        return False
    return max(abs(a - b) for a, b in zip(fg, bg, strict=True)) <= 24


# (an element hides, foreground, background, text is hidden) inside some open elements.
_State = tuple[bool, tuple[int, int, int] | None, tuple[int, int, int] | None, bool]
_TOP: _State = (False, (0, 0, 0), (255, 255, 255), False)


def _inside(parent: _State, element: tuple[str, bool, str | None, str | None]) -> _State:
    """The state inside ``element`` opened within ``parent``: `_hides` of the open elements,
    computed one element at a time."""
    hides, fg, bg, _ = parent
    _, element_hides, fg_value, bg_value = element
    if fg_value is None and bg_value is None:  # most elements: the parent's colours
        hides = hides or element_hides
        return hides, fg, bg, hides or parent[3]
    hides = hides or element_hides
    if fg_value is not None:
        fg = _colour(fg_value)
    if bg_value is not None:
        bg = _colour(bg_value)
    # (`_hides`'s max(|a - b|) <= 24, channel by channel: spam that colours every letter
    # opens thousands of elements.)
    close = (
        fg is not None
        and bg is not None
        and abs(fg[0] - bg[0]) <= 24
        and abs(fg[1] - bg[1]) <= 24
        and abs(fg[2] - bg[2]) <= 24
    )
    return hides, fg, bg, hides or close


def html_to_text(markup: str) -> tuple[str, list[str]]:
    """Text of an HTML document (outside scripts and styles) and the link targets it holds."""
    text, _, hrefs = html_to_texts(markup)
    return text, hrefs


def html_to_texts(markup: str) -> tuple[str, str, list[str]]:
    """(all text, the text a reader sees, link targets) of an HTML document.

    The text a reader sees leaves out elements that hide their content: display:none,
    visibility:hidden, the hidden attribute, fonts under 2 px, text coloured like its
    background (white on the default white, or on a set background colour).
    """
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:
        # HTMLParser is lenient, but assertion errors on broken markup exist in old versions.
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
        return text, text, parser.hrefs
    text = _tidy("".join(parser.out))
    visible = _tidy("".join(parser.visible)) if parser.hidden_chars else text
    return text, visible, parser.hrefs


# Runs of spaces and tabs become one space. A lone space already is one: only the runs
# that change are matched (the plain pattern matched, and replaced, every space of the text).
_SPACE_RUN_RE = re.compile(r"[ \t\r\f\v]{2,}|[\t\r\f\v]")
_BLANK_RUN_RE = re.compile(r"\n\s*\n+")


def _tidy(text: str) -> str:
    text = _SPACE_RUN_RE.sub(" ", text)
    text = _BLANK_RUN_RE.sub("\n\n", text)
    return text.strip()


def _extract_urls(text: str, hrefs: list[str]) -> tuple[str, ...]:
    found: list[str] = []
    for href in hrefs:
        if href.lower().startswith(("http://", "https://", "www.")):
            found.append(href)
    for match in _url_matches(text[:MAX_TEXT_CHARS]):
        found.append(match.group(0).rstrip(_TRAILING_PUNCT))
        if len(found) > 1000:
            break
    return tuple(dict.fromkeys(found))[:500]


# Where a link can start: "http" or "www." in any case. Under re's ignore-case rules these
# letters match only their ASCII capitals, and a class first lets the engine skip ahead.
_URL_START_RE = re.compile(r"[hHwW](?:(?<=[hH])[tT][tT][pP]|(?<=[wW])[wW][wW]\.)")


def _url_matches(text: str) -> Iterable[re.Match[str]]:
    """`_URL_RE.finditer(text)`, tried only where a link can start instead of at every
    offset (its leading \\b and ignore-case rule out the engine's skipping ahead)."""
    end = 0
    for start in _URL_START_RE.finditer(text):
        if start.start() < end:
            continue
        match = _URL_RE.match(text, start.start())
        if match is not None:
            yield match
            end = match.end()


_HOST_END_RE = re.compile(r"[/?#]")


def _url_domain(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else url
    host = _HOST_END_RE.split(rest, maxsplit=1)[0]
    host = host.rsplit("@", 1)[-1].split(":", 1)[0]
    return host.strip(".").lower()[:253]
