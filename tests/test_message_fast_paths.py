"""The parser's fast paths against the plain code they replace, on random input."""

from __future__ import annotations

import email.utils
import random

from spamguard.message import _TOP, _URL_RE, _address_list, _hides, _inside, _url_matches
from spamguard.message import _parse_address as parse_address

_COLOURS = [None, "#fff", "#ffffff", "white", "#000", "black", "rgb(250,250,250)", "#fefefe"]
_COLOURS += ["bogus", "", "#12345", "rgb(1,2)", "Snow", "#f0f0f0"]


def test_hidden_state_step_by_step_is_hides_over_the_open_elements() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        stack: list[tuple[str, bool, str | None, str | None]] = []
        state = _TOP
        for _ in range(rng.randrange(1, 8)):
            element = ("x", rng.random() < 0.1, rng.choice(_COLOURS), rng.choice(_COLOURS))
            stack.append(element)
            state = _inside(state, element)
            assert state[3] == _hides(stack), stack
    assert _TOP[3] == _hides([])


def test_url_matches_are_finditers() -> None:
    rng = random.Random(3)
    pieces = [
        "http://a.example/x",
        "HTTPS://B.example",
        "www.c.example",
        "WWW.",
        "http",
        "xhttp://d.example",
        "_www.e.example",
        "https:/",
        " ",
        "\n",
        ".",
        ",",
        "wwww.f.g",
        "httphttp://h.example",
        "ÿ",
        "İ",
        "ß",
        "http://ü.example",
        "a",
    ]
    texts = ["", "http://x.example", "no links here"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30))) for _ in range(4000)]
    for text in texts:
        ours = [(m.start(), m.group()) for m in _url_matches(text)]
        assert ours == [(m.start(), m.group()) for m in _URL_RE.finditer(text)], text


def test_cached_address_parsing_is_the_standard_librarys() -> None:
    rng = random.Random(5)
    pieces = ['"', "<", ">", ",", "@", " ", "a", "b.c", "Name", "(x)", "\\", ";", ":", "é", "="]
    values = ["", "a@b.example", "Ann <ann@example.org>", '"B, C" <bc@x.example>, d@y.example']
    for _ in range(2000):
        values.append("".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14))))
    for _ in range(2):  # the second round is answered from the cache
        for value in values:
            _, addr = email.utils.parseaddr(value)
            defects: list[str] = []
            assert parse_address(value, defects)[1] == addr.strip().lower(), value
            pairs = email.utils.getaddresses([value, value + ",x@z.example"])
            expected = tuple(a for _, a in pairs if a)[:100]
            assert _address_list([value, value + ",x@z.example"]) == expected, value


def test_hidden_state_with_mostly_uncoloured_elements() -> None:
    """Most elements set no colour (`_inside`'s short cut keeps the parent's answer)."""
    rng = random.Random(17)
    for _ in range(3000):
        stack: list[tuple[str, bool, str | None, str | None]] = []
        state = _TOP
        for _ in range(rng.randrange(1, 10)):
            fg = rng.choice(_COLOURS) if rng.random() < 0.2 else None
            bg = rng.choice(_COLOURS) if rng.random() < 0.2 else None
            element = ("x", rng.random() < 0.05, fg, bg)
            stack.append(element)
            state = _inside(state, element)
            assert state[3] == _hides(stack), stack


def test_tidy_is_the_two_plain_substitutions() -> None:
    import re

    from spamguard.message import _tidy

    rng = random.Random(19)
    pieces = [" ", "  ", "\t", "\r", "\f", "\v", "\n", "\n\n", " \n ", "a", "b c"]
    pieces += ["\u00a0", "\u2003"]
    texts = ["", " ", "a  b", "\t", "x\r\ny"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 20))) for _ in range(5000)]
    for text in texts:
        plain = re.sub(r"[ \t\r\f\v]+", " ", text)
        plain = re.sub(r"\n\s*\n+", "\n\n", plain).strip()
        assert _tidy(text) == plain, repr(text)


def test_cached_start_tags_read_html_as_the_standard_library_does() -> None:
    """`_HTMLText.parse_starttag` and `parse_endtag` (each tag's text read once, through a
    copy of the standard library's reading) against HTMLParser's own, on tag soup, read
    twice (the second time from the caches)."""
    from html.parser import HTMLParser

    from spamguard import message as m

    class Ours(m._HTMLText):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[object] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.seen.append((tag, attrs))
            super().handle_starttag(tag, attrs)

        def handle_data(self, data: str) -> None:
            self.seen.append(data)
            super().handle_data(data)

        def handle_endtag(self, tag: str) -> None:
            self.seen.append(("/", tag))
            super().handle_endtag(tag)

        def handle_comment(self, data: str) -> None:
            self.seen.append(("!", data))

    class Plain(Ours):
        parse_starttag = HTMLParser.parse_starttag
        parse_endtag = HTMLParser.parse_endtag

    rng = random.Random(23)
    pieces = ["<td>", "<br/>", "<BR>", "<p class='x'>", '<font color="#fff" size=0>', "text"]
    pieces += ["<a href=http://x.example/?a=1&amp;b=2>", "<script>", "</script>", "</p>", "<"]
    pieces += ["<style>p{}</style>", "< b>", "<a\nhref='x'\n>", "<img src=x />", "<div hidden>"]
    pieces += ["<span style='display:none'>", "<x/y>", '<a b="c" d>', "&amp;", ">", "<b <i>"]
    pieces += ["<!-- c -->", '<a href="open>', "<p/ >", "<tag attr=>", "<a $$ %%>", "</span>"]
    pieces += ["<font size=-7>", "<td bgcolor=white><font color=white>", "é", "<ä ü=ö>", " "]
    pieces += ['<A HREF="http://Y.example" Target=_blank>', "<FONT COLOR=White>", "<P/>"]
    pieces += ["<a href='&lt;x&gt;'>", "<input disabled/>", '<a title="it\'s">', "<a\t=x>"]
    # End tags, well-formed and not ("</>", "</ x>", "</3>", "</a b='>'>", unclosed, in script).
    pieces += ["</td>", "</TD >", "</ td>", "</>", "</3>", "</a b='>'>", "</font", "</style>"]
    pieces += ["</x:y>", "</a-b.c_d>", "</\ntd\n>", "</script >", "</scripts>", "</p/>", "</é>"]
    docs = ["", "<html><body><p>Hi</p></body></html>"]
    docs += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30))) for _ in range(3000)]
    for doc in docs:
        for _ in range(2):
            ours, plain = Ours(), Plain()
            for parser in (ours, plain):
                parser.feed(doc)
                parser.close()
            assert ours.seen == plain.seen, doc
            assert ours.out == plain.out, doc
            assert ours.visible == plain.visible, doc
            assert ours.hrefs == plain.hrefs, doc
            assert ours.hidden_chars == plain.hidden_chars, doc
            assert ours.get_starttag_text() == plain.get_starttag_text(), doc
            assert ours.lasttag == plain.lasttag, doc


def test_filename_short_cut_is_get_filename() -> None:
    import email

    from spamguard.message import _POLICY, _filename

    rng = random.Random(31)
    types = [None, "text/plain", 'application/pdf; name="a.pdf"', "image/png; NAME=x.png"]
    types += ["text/plain; charset=utf-8", "x/y; name*0=a; name*1=b.txt", "a/b; fname=z"]
    types += ["text/html; name*=utf-8''%E4.txt", "a/b; Name = 'q'", "a/b;name", ""]
    dispositions = [None, "", "inline", "attachment", 'attachment; filename="r.doc"']
    dispositions += ["attachment; FILENAME*=utf-8''x.zip", "inline; name=n.txt"]
    for _ in range(2000):
        head = ""
        ctype, disposition = rng.choice(types), rng.choice(dispositions)
        if ctype is not None:
            head += f"Content-Type: {ctype}\n"
        if disposition is not None:
            head += f"Content-Disposition: {disposition}\n"
        part = email.message_from_string(head + "X-A: b\n\nbody\n", policy=_POLICY)
        assert _filename(part) == part.get_filename(), head


def test_declared_charset_is_the_parts_own() -> None:
    """`_declared_charset` of a part's Content-Type against the part's own
    get_content_charset() / get_param("charset") (the same answer, or the same exception),
    read twice (the second from the cache)."""
    import email

    from spamguard.message import _POLICY, _declared_charset

    rng = random.Random(37)
    pieces = ["text/plain", "text/html", "; ", "charset=", "CHARSET=", '"', "'", "utf-8"]
    pieces += ["ISO-8859-1", "us-ascii''", "charset*=", "utf-8''%E4", "x", " ", "=", ";"]
    pieces += ["\udce9", "é", "charset*0=", "charset*1=", "name=a", "(c)", "\\"]
    values: list[str | None] = [None, "", "text/plain", "text/plain; charset=utf-8"]
    values += [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12))) for _ in range(3000)
    ]
    for _ in range(2):
        for value in values:
            part = email.message.Message(policy=_POLICY)
            if value is not None:
                part.set_raw("Content-Type", value)
                part.set_raw("Content-Type", "text/plain; charset=second")
            expected: object
            try:  # RFC 2231 pieces can make the standard library raise: so must the cache
                expected = part.get_content_charset()
                if expected is None:
                    param = part.get_param("charset")
                    expected = param if isinstance(param, str) else None
            except Exception as exc:
                expected = type(exc)
            got: object
            try:
                got = _declared_charset(part.get("Content-Type"))
            except Exception as exc:
                got = type(exc)
            assert got == expected, value


def test_decoded_fields_are_clean_text_and_decode_header() -> None:
    import email.header

    from spamguard.message import _clean_text, _decode_header, _decoded_fields

    rng = random.Random(11)
    pieces = ["a", "Subject", " ", "  ", "\t", "\r\n ", "\n\t", "\x00", "=", "?", "=?", "=\x00?"]
    pieces += ["=?utf-8?q?caf=C3=A9?=", "=?bogus-cs?q?x?=", "=?utf-8?b?w6k=?=", "?=", "é", "日本"]
    pieces += ["\udce9", "\udcc3\udca9", "\x0b", "\x0c", "\u3000", "\x85", "x\x00y"]
    for hint in (None, "utf-8", "latin-1", "big5", "no-such-charset"):
        items: list[tuple[str, object]] = []
        for _ in range(3000):
            name = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 4)))
            value: object = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
            if rng.random() < 0.02:
                value = email.header.Header("caf\u00e9 x", "utf-8")
            items.append((name, value))
        items += [("A", ""), ("B", "plain value"), ("C", " =\x00?utf-8?q?x?= ")]
        ours: list[str] = []
        reference: list[str] = []
        got = _decoded_fields(items, ours, hint)
        want = [(_clean_text(str(n)), _decode_header(v, reference, hint)) for n, v in items]
        assert got == want
        assert ours == reference
        assert reference  # the soup meets undecodable and unknown-charset words
