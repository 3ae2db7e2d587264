"""Feature extraction: which headers are read, hand-made signals, the header-less variant."""

from __future__ import annotations

from spamguard.message import parse_message
from spamguard.scoring.features import (
    HAND_FEATURES,
    FeatureConfig,
    hand_features,
    header_terms,
    headerless_bytes,
    word_terms,
)

MAIL = b"""Received: from relay.example.net (relay [192.0.2.1])
List-Id: <tools.lists.example.org>
Delivered-To: me@example.org
X-Spam-Status: No
Date: Mon, 3 Nov 2025 10:00:00 +0000
Message-ID: <1@example.com>
From: "Support team" <help@example.com>
Reply-To: collect@other.example
Subject: FREE money!!! Claim now
X-Mailer: BulkBlaster 9
Authentication-Results: mx.example.org; spf=fail smtp.mailfrom=example.com; dkim=none
Content-Type: text/html; charset=utf-8

<html><body><p>Claim $500 at <a href="http://192.0.2.7/login">our site</a>
or <a href="https://bit.ly/x">here</a>.</p><script>evil()</script></body></html>
"""


def _signals(raw: bytes) -> dict[str, float]:
    # Read as the account whose server (mx.example.org) delivered it.
    values = hand_features(parse_message(raw, authserv_id="mx.example.org"))
    return dict(zip([name for name, _ in HAND_FEATURES], values, strict=True))


def test_collection_headers_are_never_read() -> None:
    terms = header_terms(parse_message(MAIL))
    read = {t.split(":")[1] for t in terms if t.startswith(("h:", "hn:"))}
    assert {"from", "reply-to", "x-mailer", "content-type", "subject"} <= read
    assert not read & {"received", "list-id", "delivered-to", "x-spam-status", "date", "message-id"}
    assert "url:192.0.2.7" in terms and "urlbase:bit.ly" in terms


def test_hand_signals_see_the_tricks() -> None:
    s = _signals(MAIL)
    assert s["html_only"] == 1.0
    assert s["url_ip_host"] == 1.0 and s["url_shortener"] == 1.0
    assert s["auth_fail"] == 1.0 and s["auth_pass"] == 0.0
    assert s["reply_to_differs"] == 1.0
    assert s["subject_money"] == 0.0 and s["body_money_log"] > 0
    assert s["subject_bang"] == 0.75


def test_words_cover_subject_and_text_but_not_script() -> None:
    terms = word_terms(parse_message(MAIL), FeatureConfig())
    assert "s:free" in terms and "w:claim" in terms and "b:claim now" in terms
    assert not any("evil" in t for t in terms)


def test_headerless_variant_keeps_only_subject_and_text() -> None:
    msg = parse_message(MAIL)
    stripped = parse_message(headerless_bytes(msg))
    assert [k.lower() for k, _ in stripped.headers] == ["subject"]
    assert stripped.subject == msg.subject
    assert "Claim $500" in stripped.text
    assert _signals(headerless_bytes(msg))["auth_fail"] == 0.0


def test_non_ascii_survives_the_headerless_round_trip() -> None:
    raw = "Subject: Grüße aus Köln\nContent-Type: text/plain; charset=utf-8\n\nSchöne Grüße\n"
    msg = parse_message(raw.encode("utf-8"))
    again = parse_message(headerless_bytes(msg))
    assert again.subject == "Grüße aus Köln" and "Schöne" in again.text


def test_unspaced_scripts_become_recurring_character_pairs() -> None:
    # Two Chinese offers that share the word 免费 ("free") but no whole sentence.
    first = parse_message("Subject: 免费试用\n\n今天免费领取礼品 visit now\n".encode())
    second = parse_message("Subject: 特价\n\n会员免费送货到家\n".encode())
    cfg = FeatureConfig()
    a, b = set(word_terms(first, cfg)), set(word_terms(second, cfg))
    assert "w:免费" in a and "w:免费" in b
    assert "s:免费" in a and "s:试用" in a
    assert "w:visit" in a and "b:visit now" in a
    # Words in spaced scripts are untouched; a word mixing scripts keeps its Latin part.
    mixed = word_terms(parse_message("Subject: x\n\nGrüße ok版本2\n".encode()), cfg)
    assert "w:grüße" in mixed and "w:ok" in mixed and "w:版本" in mixed and "w:2" in mixed


def test_fast_signal_scans_find_what_the_plain_patterns_find() -> None:
    """The hand signals' faster scans (`_SHOUT_FAST_RE`, `_count_money`, `_INVISIBLE_RE`,
    `_LOOKALIKE_RE`) against the patterns and sets they stand in for, on random text."""
    import random

    from spamguard.scoring import features as f

    rng = random.Random(11)
    pieces = ["FREE", "WIN", "ABCD", "AB", "x", "_", "9", "0", " ", "\n", "!", ".", "$", "€", "£"]
    pieces += ["usd", "USD", "Eur", "dollars", "million", "millions", "\u017fd", "é", "Ä", "ÉCOLE"]
    pieces += ["\u0661", "\u0663", "\u200b", "\u00ad", "\u0430", "\u043e", "\u03bf", "a", "m"]
    texts = ["", "SHOUT", "$5", "5 usd", "m\u043ertgage"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 25))) for _ in range(6000)]
    for text in texts:
        assert f._SHOUT_FAST_RE.findall(text) == f._SHOUT_RE.findall(text), text
        assert f._count_money(text) == len(f._MONEY_RE.findall(text)), text
        assert bool(f._INVISIBLE_RE.search(text)) == (not f._INVISIBLE_CHARS.isdisjoint(text))
        assert bool(f._LOOKALIKE_RE.search(text)) == (not f._LOOKALIKE_CHARS.isdisjoint(text))


def test_header_tokens_are_the_per_token_digit_substitution() -> None:
    """`header_terms` turns digits into 0 over a whole header value before splitting it into
    tokens; the tokens are those of splitting first and substituting in each token."""
    import random
    import re

    from spamguard.scoring import features as f

    rng = random.Random(41)
    pieces = ["a", "Z", "0", "7", "42", ".", "-", "_", " ", "é", "\u0663", "\u0967", "x9y", "İ"]
    for _ in range(5000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        expected = [re.sub(r"\d", "0", t) for t in f._HEADER_TOKEN_RE.findall(value.lower()[:300])]
        lowered = value.lower()[:300].translate(f._ASCII_DIGITS_TO_ZERO)
        assert f._HEADER_TOKEN_RE.findall(lowered) == expected, value
        msg = parse_message(f"From: a@example.org\nX-Test: {value}\n\nbody\n".encode())
        terms = [t for t in header_terms(msg) if t.startswith("h:x-test:")]
        parsed = dict(msg.headers)["X-Test"]
        assert terms == [
            "h:x-test:" + re.sub(r"\d", "0", t)
            for t in f._HEADER_TOKEN_RE.findall(parsed.lower()[:300])
        ]


def test_fast_word_pattern_finds_the_words_of_the_plain_one() -> None:
    import random

    from spamguard.scoring import features as f

    rng = random.Random(43)
    pieces = ["a", "bc", "Z", "9", "_", "__", "'", "’", "$", "€", "£", "%", ".", "@", "-", "!"]
    pieces += [" ", "\n", ",", "é", "ß", "日本", "\u0663", "ǅ", "--", "..", "a_b", "x'", ":"]
    texts = ["", "it's a $5 deal!", "e-mail@x.example.", "_x_", "__a__b__"]
    texts += ["".join(rng.choices(pieces, k=rng.randrange(1, 30))) for _ in range(20000)]
    for text in texts:
        assert f._WORD_FAST_RE.findall(text) == f._WORD_RE.findall(text), text
