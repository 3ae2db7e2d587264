"""Authentication-Results are read only under the account's own authserv-id (message.py)."""

from __future__ import annotations

from spamguard.message import (
    NO_AUTHSERV_ID,
    AuthSummary,
    learn_authserv_id,
    parse_message,
    with_authserv_id,
)
from spamguard.scoring.features import HAND_FEATURES, hand_features

TRUSTED = "mx.receiver.example"

REAL_AR = (
    f"Authentication-Results: {TRUSTED};\r\n"
    "\tdkim=pass (2048-bit key) header.d=shop.example header.s=s1 header.b=AbCd;\r\n"
    "\tspf=pass (sender IP is 192.0.2.7) smtp.mailfrom=bounce.shop.example;\r\n"
    "\tdmarc=pass (p=REJECT) header.from=shop.example\r\n"
)


def _mail(top: str = "", sender_written: str = "", sender: str = "news@shop.example") -> bytes:
    """A message as delivered: the receiving server's headers on top, then the sender's."""
    return (
        f"{top}"
        "Received: from out.shop.example (out.shop.example [192.0.2.7])\r\n"
        f"\tby {TRUSTED} with ESMTPS; Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        f"{sender_written}"
        f"From: Shop <{sender}>\r\nTo: user@receiver.example\r\nSubject: Your receipt\r\n"
        "Message-ID: <r1@shop.example>\r\n\r\nThanks for your order.\r\n"
    ).encode()


def _signals(msg: object) -> dict[str, float]:
    return dict(zip([n for n, _ in HAND_FEATURES], hand_features(msg), strict=True))  # type: ignore[arg-type]


def test_the_real_results_are_read_under_the_trusted_id() -> None:
    msg = parse_message(_mail(top=REAL_AR), authserv_id=TRUSTED)
    assert msg.auth == AuthSummary(
        spf="pass", dkim="pass", dmarc="pass", dkim_domains=("shop.example",), authserv_id=TRUSTED
    )
    assert _signals(msg)["auth_pass"] == 1.0 and _signals(msg)["auth_fail"] == 0.0


def test_without_a_trusted_id_nothing_is_read() -> None:
    # A message file with no account: any header in it could have been written by the sender.
    msg = parse_message(_mail(top=REAL_AR))
    assert msg.auth == AuthSummary()
    assert _signals(msg)["auth_pass"] == 0.0


def test_a_forged_header_below_the_real_one_is_ignored() -> None:
    # The receiving server says DKIM failed; the spammer's own A-R (same id, written into
    # the message before it was sent, so below the server's Received line) says it passed.
    real = f"Authentication-Results: {TRUSTED}; dkim=fail header.d=shop.example; spf=softfail\r\n"
    forged = (
        f"Authentication-Results: {TRUSTED}; dkim=pass header.d=shop.example; "
        "dmarc=pass header.from=shop.example\r\n"
    )
    msg = parse_message(_mail(top=real, sender_written=forged), authserv_id=TRUSTED)
    assert msg.auth.dkim == "fail" and msg.auth.spf == "softfail"
    assert msg.auth.dmarc is None and msg.auth.dkim_domains == ()
    assert _signals(msg)["auth_fail"] == 1.0 and _signals(msg)["auth_pass"] == 0.0


def test_a_header_with_another_id_is_ignored() -> None:
    other = REAL_AR.replace(TRUSTED, "mx.attacker.example")
    msg = parse_message(_mail(top=other), authserv_id=TRUSTED)
    assert msg.auth == AuthSummary()


def test_a_header_under_another_id_on_top_is_ignored() -> None:
    forged_top = "Authentication-Results: mx.attacker.example; dkim=pass; spf=pass; dmarc=pass\r\n"
    msg = parse_message(_mail(top=forged_top + REAL_AR), authserv_id=TRUSTED)
    # The topmost A-R is not the account's server's: nothing is read, not even the real
    # one beneath (a receiving server puts its own on top).
    assert msg.auth == AuthSummary()


def test_adjacent_headers_of_the_trusted_server_are_merged() -> None:
    # Servers running one milter per method (OpenDKIM, OpenDMARC, an SPF policy daemon)
    # write one header each, one after another.
    top = (
        f"Authentication-Results: {TRUSTED}; dmarc=pass (p=none) header.from=shop.example\r\n"
        f"Authentication-Results: {TRUSTED}; dkim=pass header.d=mail.shop.example\r\n"
        f"Authentication-Results: {TRUSTED} (comment; with semicolon); spf=pass\r\n"
    )
    msg = parse_message(_mail(top=top), authserv_id=TRUSTED.upper())
    assert (msg.auth.dmarc, msg.auth.dkim, msg.auth.spf) == ("pass", "pass", "pass")
    assert msg.auth.dkim_domains == ("mail.shop.example",)


def test_received_spf_and_arc_results_are_not_read() -> None:
    top = (
        "ARC-Authentication-Results: i=1; mx.other.example; dkim=pass; spf=pass\r\n"
        "Received-SPF: pass (mx.other.example: domain of shop.example designates 192.0.2.7)\r\n"
    )
    msg = parse_message(_mail(top=top), authserv_id=TRUSTED)
    assert msg.auth == AuthSummary()


def test_with_authserv_id_rereads_without_parsing_again() -> None:
    msg = parse_message(_mail(top=REAL_AR))
    trusted = with_authserv_id(msg, TRUSTED)
    assert trusted.auth.dkim == "pass" and trusted.content_hash == msg.content_hash
    assert with_authserv_id(trusted, None).auth == AuthSummary()


def test_learning_the_id_from_an_inbox() -> None:
    delivered = [parse_message(_mail(top=REAL_AR)) for _ in range(6)]
    # Two spams arrived with a forged header of their own on top of everything the
    # server wrote (a server that adds no A-R to some mail): they do not outvote it.
    spam = parse_message(_mail(top="Authentication-Results: mx.attacker.example; dkim=pass\r\n"))
    assert learn_authserv_id([*delivered, spam, spam]) == TRUSTED


def test_learning_needs_a_clear_majority() -> None:
    plain = [parse_message(_mail()) for _ in range(10)]  # a server that writes no A-R
    forged = parse_message(_mail(top="Authentication-Results: mx.attacker.example; spf=pass\r\n"))
    assert learn_authserv_id([*plain, forged, forged, forged]) is None
    assert learn_authserv_id([parse_message(_mail(top=REAL_AR))] * 2) is None  # too few
    assert learn_authserv_id([]) is None


def test_a_forged_header_right_beneath_cannot_add_to_a_reported_method() -> None:
    # Servers that put their A-R just above the sender's headers leave a forged one
    # adjacent; it cannot turn the server's DKIM failure into a pass for another domain.
    top = (
        f"Authentication-Results: {TRUSTED}; dkim=fail header.d=shop.example; spf=pass\r\n"
        f"Authentication-Results: {TRUSTED}; dkim=pass header.d=bank.example\r\n"
    )
    msg = parse_message(_mail(top=top), authserv_id=TRUSTED)
    assert msg.auth.dkim == "fail" and msg.auth.dkim_domains == ()


def test_microsoft_headers_without_an_id_are_read_under_the_none_id() -> None:
    # Microsoft 365 / Outlook.com write no authserv-id; for their accounts that is the id.
    top = (
        "Authentication-Results: spf=pass (sender IP is 192.0.2.7)\r\n"
        " smtp.mailfrom=shop.example; dkim=pass (signature was verified)\r\n"
        " header.d=shop.example;dmarc=pass action=none\r\n"
        " header.from=shop.example;compauth=pass reason=100\r\n"
    )
    msgs = [parse_message(_mail(top=top)) for _ in range(3)]
    assert learn_authserv_id(msgs) == NO_AUTHSERV_ID
    trusted = with_authserv_id(msgs[0], NO_AUTHSERV_ID)
    assert (trusted.auth.spf, trusted.auth.dkim, trusted.auth.dmarc) == ("pass", "pass", "pass")
    assert trusted.auth.dkim_domains == ("shop.example",)
    # An account trusting a named server does not read them, nor the reverse.
    assert with_authserv_id(msgs[0], TRUSTED).auth == AuthSummary()
    assert parse_message(_mail(top=REAL_AR), authserv_id=NO_AUTHSERV_ID).auth == AuthSummary()
