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
