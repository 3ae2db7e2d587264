"""Policy: thresholds, protections, block list, ordered folder rules; pure, so property-tested."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spamguard.config import AccountSettings, parse_config
from spamguard.message import parse_message
from spamguard.policy import PolicyContext, matches_address, plan_for
from spamguard.scoring.base import Score


def _settings(extra: str = "") -> AccountSettings:
    return parse_config(
        '[accounts.a]\nhost = "127.0.0.1"\nsecurity = "plain"\nusername = "u"\n' + extra
    ).accounts["a"]


def _msg(sender: str = "x@shop.example", list_id: str = "", extra: str = "") -> object:
    head = f"From: {sender}\r\nSubject: hi\r\nMessage-ID: <1@t>\r\n"
    if list_id:
        head += f"List-Id: <{list_id}>\r\n"
    return parse_message((head + extra + "\r\nbody\r\n").encode())


def _plan(p: float, settings: AccountSettings | None = None, msg: object = None, **ctx: object):  # type: ignore[no-untyped-def]
    return plan_for(
        msg or _msg(), Score(p, "t", "v"), settings or _settings(), PolicyContext(**ctx)
    )  # type: ignore[arg-type]


def test_two_thresholds() -> None:
    assert [a.kind for a in _plan(0.95).actions] == ["junk"]
    assert [a.kind for a in _plan(0.90).actions] == ["junk"]
    flag = _plan(0.6).actions[0]
    assert flag.kind == "flag" and flag.flags == ("\\Flagged", "$SpamGuardFlag")
    assert [a.kind for a in _plan(0.49).actions] == ["leave"]
    assert "0.95" in _plan(0.95).describe() and "move threshold" in _plan(0.95).describe()


def test_flag_style_keyword_only() -> None:
    s = _settings('flag_style = "keyword"\nflag_keyword = "$Suspect"\n')
    assert _plan(0.6, s).actions[0].flags == ("$Suspect",)


@pytest.mark.parametrize("ctx", [{"rescued": True}, {"known_correspondent": True}])
def test_rescued_and_correspondents_are_never_moved(ctx: dict[str, bool]) -> None:
    plan = _plan(0.99, **ctx)
    assert not plan.moves and plan.protected


def test_allow_list_is_never_moved_nor_flagged() -> None:
    s = _settings('allow = ["shop.example"]\n')
    assert [a.kind for a in _plan(0.99, s).actions] == ["leave"]
    assert [a.kind for a in _plan(0.6, s).actions] == ["leave"]


def test_block_list_goes_to_junk_but_allow_wins() -> None:
    s = _settings('block = ["@shop.example"]\n')
    assert [a.kind for a in _plan(0.01, s).actions] == ["junk"]
    s = _settings('block = ["shop.example"]\nallow = ["x@shop.example"]\n')
    assert [a.kind for a in _plan(0.01, s).actions] == ["leave"]


def test_without_a_junk_folder_spam_is_flagged() -> None:
    action = _plan(0.99, junk_available=False).actions[0]
    assert action.kind == "flag" and "no Junk folder" in action.reason


def test_rules_in_order_first_match_wins() -> None:
    s = _settings(
        '\n[[accounts.a.rules]]\nname = "lists"\nlist_id = "news.example.org"\n'
        'action = "move"\nfolder = "News"\n'
        '\n[[accounts.a.rules]]\nname = "shop"\nfrom = ["shop.example"]\n'
        'action = "keyword"\nkeyword = "$Shop"\n'
        '\n[[accounts.a.rules]]\nname = "high"\nmin_score = 0.5\naction = "leave"\n'
    )
    news = _plan(0.99, s, _msg(list_id="news.example.org"))
    assert news.actions[0].kind == "move" and news.actions[0].folder == "News"
    assert "rule 'lists'" in news.describe()
    shop = _plan(0.99, s)
    assert shop.actions[0].kind == "keyword" and shop.actions[0].flags == ("$Shop",)
    other = _plan(0.7, s, _msg(sender="y@other.example"))
    assert other.actions[0].kind == "leave" and "rule 'high'" in other.actions[0].reason
    # A rescued message is never moved, not even by a rule.
    assert not _plan(0.1, s, _msg(list_id="news.example.org"), rescued=True).moves


def test_rule_header_and_source_folder_conditions() -> None:
    s = _settings(
        '\n[[accounts.a.rules]]\naction = "junk"\nheader = "X-Mailer"\nheader_regex = "^bulk"\n'
        'source_folder = "INBOX"\n'
    )
    msg = _msg(extra="X-Mailer: BulkSender 2\r\n")
    assert _plan(0.0, s, msg, folder="INBOX").actions[0].kind == "junk"
    assert _plan(0.0, s, msg, folder="Lists").actions[0].kind == "leave"


def test_address_patterns() -> None:
    assert matches_address("a@b.example", ["a@b.example"])
    assert matches_address("a@mail.b.example", ["b.example"])
    assert matches_address("a@mail.b.example", ["*.b.example"])
    assert matches_address("a@b.example", ["@b.example"])
    assert not matches_address("a@notb.example", ["b.example"])
    assert not matches_address("c@b.example", ["a@b.example"])


@given(
    p=st.floats(0, 1),
    move=st.floats(0, 1),
    flag=st.floats(0, 1),
    rescued=st.booleans(),
    known=st.booleans(),
    allowed=st.booleans(),
)
def test_protected_messages_are_never_moved_to_junk(
    p: float, move: float, flag: float, rescued: bool, known: bool, allowed: bool
) -> None:
    flag, move = sorted((flag, move))
    s = _settings('allow = ["shop.example"]\n' if allowed else "")
    s = dataclasses.replace(s, thresholds=dataclasses.replace(s.thresholds, move=move, flag=flag))
    plan = _plan(p, s, rescued=rescued, known_correspondent=known)
    kinds = [a.kind for a in plan.actions]
    assert len(kinds) == 1
    if rescued or known or allowed:
        assert "junk" not in kinds and "move" not in kinds
    elif p >= move:
        assert kinds == ["junk"]
    elif p >= flag:
        assert kinds == ["flag"]
    else:
        assert kinds == ["leave"]


# -- protect_known_senders: flagged at most, never moved ------------------------------------------

TRUSTED = "mx.receiver.example"


def _authenticated(auth: str = "dkim=pass header.d=shop.example; dmarc=pass") -> object:
    raw = (
        f"Authentication-Results: {TRUSTED}; {auth}\r\n"
        "From: Shop <news@shop.example>\r\nSubject: Your statement\r\nMessage-ID: <s@t>\r\n"
        "\r\nYour statement is ready.\r\n"
    ).encode()
    return parse_message(raw, authserv_id=TRUSTED)


@pytest.mark.parametrize(
    ("ctx", "why"),
    [
        ({"known_correspondent": True}, "you have written to news@shop.example"),
        (
            {"kept_sender": True},
            "news@shop.example is an authenticated sender (DKIM/DMARC) whose earlier mail you kept",
        ),
    ],
)
def test_known_senders_are_flagged_at_most(ctx: dict[str, bool], why: str) -> None:
    msg = _authenticated()
    plan = _plan(0.99, msg=msg, **ctx)
    assert [a.kind for a in plan.actions] == ["flag"] and plan.protected == why
    assert why in plan.describe() and "move threshold" in plan.describe()
    # In the flag band they are flagged as anyone is; below it, left alone.
    assert [a.kind for a in _plan(0.6, msg=msg, **ctx).actions] == ["flag"]
    assert [a.kind for a in _plan(0.1, msg=msg, **ctx).actions] == ["leave"]
    # A rule that would send them to Junk does not either.
    rule = '[[accounts.a.rules]]\nname = "shops"\nfrom = ["shop.example"]\naction = "junk"\n'
    assert not _plan(0.2, _settings(rule), msg=msg, **ctx).moves


def test_the_protection_is_a_setting_on_by_default() -> None:
    assert _settings().protect_known_senders is True
    off = _settings("protect_known_senders = false\n")
    msg = _authenticated()
    for ctx in ({"known_correspondent": True}, {"kept_sender": True}):
        plan = _plan(0.99, off, msg=msg, **ctx)
        assert [a.kind for a in plan.actions] == ["junk"] and plan.protected == ""
    # Rescued mail and the allow list do not depend on it.
    assert not _plan(0.99, off, msg=msg, rescued=True).moves
    allow = _settings('protect_known_senders = false\nallow = ["shop.example"]\n')
    assert not _plan(0.99, allow, msg=msg).moves


def test_the_setting_must_be_true_or_false() -> None:
    from spamguard.errors import ConfigError

    with pytest.raises(ConfigError, match="protect_known_senders"):
        _settings('protect_known_senders = "yes"\n')


def test_sender_authenticated_reads_only_trusted_aligned_results() -> None:
    from spamguard.policy import sender_authenticated

    assert sender_authenticated(_authenticated())
    assert sender_authenticated(_authenticated("dkim=pass header.d=mail.shop.example"))
    assert sender_authenticated(_authenticated("dmarc=pass; dkim=fail"))
    assert not sender_authenticated(_authenticated("dkim=pass header.d=bulk.example"))
    assert not sender_authenticated(_authenticated("dkim=fail; dmarc=fail"))
    untrusted = parse_message(
        b"Authentication-Results: mx.receiver.example; dkim=pass header.d=shop.example; "
        b"dmarc=pass\r\n"
        b"From: news@shop.example\r\nSubject: s\r\n\r\nb\r\n"
    )
    assert not sender_authenticated(untrusted)  # read without the account's id: nothing trusted
