"""Labelled corpora read authentication results per source, as an account reads its own."""

from __future__ import annotations

import pytest

from spamguard.learn.corpus import LabelledMessage, trust_receiving_servers
from spamguard.message import AuthSummary, parse_message


def _item(i: int, server: str | None, group: str = "newsletter") -> LabelledMessage:
    top = f"Authentication-Results: {server}; dkim=pass header.d=shop.example\r\n" if server else ""
    raw = (
        f"{top}Received: by {server or 'mx.none.example'}; Mon, 23 Nov 2026 10:00 +0000\r\n"
        f"From: news@shop.example\r\nSubject: issue {i}\r\n\r\nHello {i}\r\n"
    ).encode()
    return LabelledMessage(f"m{i}", False, group, parse_message(raw))


def test_each_source_trusts_its_own_receiving_server() -> None:
    a = [_item(i, "mx.a.example") for i in range(3)]
    b = [_item(10 + i, "mx.b.example") for i in range(3)]
    c = [_item(20 + i, None) for i in range(3)] + [_item(30, "mx.forged.example")]
    sources = ["a"] * 3 + ["b"] * 3 + ["c"] * 4
    out = trust_receiving_servers([*a, *b, *c], sources)
    assert [it.message.auth.authserv_id for it in out] == ["mx.a.example"] * 3 + [
        "mx.b.example"
    ] * 3 + [""] * 4
    assert all(it.message.auth.dkim == "pass" for it in out[:6])
    assert out[-1].message.auth == AuthSummary()  # one header on one message: not a server
    assert [(it.ref, it.group, it.is_spam) for it in out] == [
        (it.ref, it.group, it.is_spam) for it in [*a, *b, *c]
    ]


def test_groups_are_the_default_sources_and_lengths_must_match() -> None:
    items = [_item(i, "mx.a.example", group="g") for i in range(3)]
    assert {it.message.auth.authserv_id for it in trust_receiving_servers(items)} == {
        "mx.a.example"
    }
    with pytest.raises(ValueError, match="one source per item"):
        trust_receiving_servers(items, ["g"])
