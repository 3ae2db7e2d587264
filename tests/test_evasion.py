"""Spammers' cheap tricks (issue 21, items 4 and 5): deep MIME nesting, link and word padding,
hidden text, invisible characters and look-alike letters.

The parser is checked against the standard library where it is the reference (the top
headers, the leaves of a shallow tree); the features at the feature level; the shipped model
where the item is about what it does with a real spam.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import json
from pathlib import Path
from typing import Any

import pytest

from spamguard.message import MAX_MULTIPARTS, Message, flatten_mime, parse_message
from spamguard.scoring.features import (
    DEFAULT_HAND_FEATURES,
    HAND_FEATURES,
    FeatureConfig,
    char_terms,
    hand_features,
    header_terms,
    word_terms,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mail"


def hand_signals(msg: Message, cfg: FeatureConfig) -> dict[str, float]:
    return dict(zip([n for n, _ in HAND_FEATURES], hand_features(msg, cfg), strict=True))


SPAM_TEXT = (
    "Dear Friend,\n\n"
    "You have been selected to receive a FREE credit report and a LOW mortgage rate!\n"
    "Refinance now and SAVE thousands of dollars. Our lenders compete for your business.\n"
    "Bad credit? No problem! Get approved in minutes. Act now, this offer expires soon.\n\n"
    "Click here: http://www.lowrates-mortgage-now.biz/apply.html\n\n"
    "To be removed from our mailing list reply with REMOVE in the subject.\n"
)


def spam(
    body: str = SPAM_TEXT, *, subject: str = "Get a FREE credit report and LOW rates!!!"
) -> bytes:
    return (
        "From: Mortgage Center <offers@lowrates-mortgage-now.biz>\n"
        "To: friend@example.com\n"
        f"Subject: {subject}\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n\n" + body
    ).encode()


def html_spam(extra: str = "") -> bytes:
    html = "<html><body><p>" + SPAM_TEXT.replace("\n", "<br>\n") + "</p>" + extra + "</body></html>"
    return (
        "From: Mortgage Center <offers@lowrates-mortgage-now.biz>\n"
        "To: friend@example.com\n"
        "Subject: Get a FREE credit report and LOW rates!!!\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/html; charset=utf-8\n\n" + html
    ).encode()


def nested(raw: bytes, depth: int) -> bytes:
    """``raw`` with its body wrapped in ``depth`` levels of multipart/mixed."""
    head, _, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    top = [h for h in lines if not h.lower().startswith((b"content-", b"mime-"))]
    inner = b"\n".join(h for h in lines if h.lower().startswith(b"content-")) + b"\n\n" + body
    for level in range(depth):
        b = b"level%d" % level
        inner = (
            b"Content-Type: multipart/mixed; boundary=" + b + b"\n\n--" + b + b"\n"
            + inner + b"\n--" + b + b"--\n"
        )  # fmt: skip
    return b"\n".join([*top, b"MIME-Version: 1.0"]) + b"\n" + inner


# ----------------------------------------------------------------------- item 5: deep nesting


def test_thousand_levels_of_nesting_keep_the_top_headers_and_the_text() -> None:
    raw = nested(spam(), 1000)
    assert len(raw) < 80_000
    # The standard library is the reference for the top headers.
    reference = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    msg = parse_message(raw)
    assert msg.subject == reference["Subject"]
    assert msg.from_addr == email.utils.parseaddr(reference["From"])[1]
    assert msg.to == ("friend@example.com",)
    assert msg.text.strip() == parse_message(spam()).text.strip()
    assert msg.urls == parse_message(spam()).urls
    assert any("flattened" in d for d in msg.defects)


def test_the_standard_library_alone_cannot_parse_that_depth() -> None:
    # Why the flattening exists: compat32's parser recurses once per level.
    with pytest.raises(RecursionError):
        email.message_from_bytes(nested(spam(), 1000), policy=email.policy.compat32)


@pytest.mark.parametrize(
    "name", ["nested_multipart.eml", "attachments.eml", "crlf.eml", "missing_close_boundary.eml"]
)
def test_flattening_keeps_every_leaf_the_standard_library_finds(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    flat = flatten_mime(raw)
    assert flat is not None
    leaves = [
        (p.get_content_type(), p.get_payload(decode=True))
        for p in email.message_from_bytes(raw, policy=email.policy.compat32).walk()
        if not p.is_multipart()
    ]
    flat_leaves = [
        (p.get_content_type(), p.get_payload(decode=True))
        for p in email.message_from_bytes(flat, policy=email.policy.compat32).walk()
        if not p.is_multipart()
    ]
    assert flat_leaves == leaves
    a, b = parse_message(raw), parse_message(flat)
    assert (b.subject, b.from_addr, b.text, b.urls) == (a.subject, a.from_addr, a.text, a.urls)
    assert b.attachments == a.attachments


def test_a_message_with_a_few_multiparts_is_parsed_as_it_is() -> None:
    raw = nested(spam(), 5)
    assert parse_message(raw).defects == ()
    deep = parse_message(nested(spam(), MAX_MULTIPARTS + 1))
    assert any("flattened" in d for d in deep.defects)


# ----------------------------------------------------------------------- item 4: link padding


def _links(n: int) -> str:
    return "\n".join(f"http://www.site{i}.example.org/page{i}.html" for i in range(n))


def test_link_signals_saturate_so_padding_buys_nothing() -> None:
    three = parse_message(spam(SPAM_TEXT + _links(2)))
    fifty = parse_message(spam(SPAM_TEXT + _links(52)))
    assert len(fifty.urls) == 53
    # The link signals new models train with: the same for 3 links and for 53.
    a, b = hand_signals(three, FeatureConfig()), hand_signals(fifty, FeatureConfig())
    link_signals = [n for n in DEFAULT_HAND_FEATURES if "url" in n]
    assert link_signals and all(a[n] == b[n] for n in link_signals if n != "url_offsite_share")
    assert 0.0 <= b["url_offsite_share"] <= 1.0  # a share, bounded
    # The old unbounded counts are still computed for the models that were trained on them.
    legacy = FeatureConfig(text_version=1)
    assert hand_signals(fifty, legacy)["n_urls_log"] > hand_signals(three, legacy)["n_urls_log"]
    assert "n_urls_log" not in DEFAULT_HAND_FEATURES


# ------------------------------------------------------------- hidden text and invisible marks


@pytest.mark.parametrize(
    ("open_tag", "close_tag"),
    [
        ('<div style="display:none">', "</div>"),
        ('<div style="visibility: hidden">', "</div>"),
        ('<font color="#ffffff">', "</font>"),
        ('<span style="color:#fff">', "</span>"),
        ('<span style="font-size:0px">', "</span>"),
        ('<span style="font-size: 1px">', "</span>"),
        ('<table bgcolor="#000000"><tr><td><font color="black">', "</font></td></tr></table>"),
        ("<div hidden>", "</div>"),
    ],
)
def test_hidden_html_text_is_not_what_the_reader_sees(open_tag: str, close_tag: str) -> None:
    filler = "The committee met on Tuesday to review the draft budget for the library roof."
    clean = parse_message(html_spam())
    padded = parse_message(html_spam(open_tag + filler + close_tag + "<p>Thanks</p>"))
    assert "committee" in padded.text  # still parsed: the text as it was
    assert "committee" not in padded.visible_text
    assert padded.visible_text.replace("\n", " ").split() == [
        *clean.visible_text.replace("\n", " ").split(),
        "Thanks",
    ]
    assert padded.hidden_chars >= len(filler)
    cfg = FeatureConfig()
    assert not any("committee" in t for t in word_terms(padded, cfg))
    assert hand_signals(padded, cfg)["hidden_text"] == 1.0
    assert hand_signals(clean, cfg)["hidden_text"] == 0.0
    # Models trained before text version 2 read what the reader sees too (issue 18: hidden
    # instructions to an AI moved a phishing out of the flag band), just not normalised.
    legacy = FeatureConfig(text_version=1)
    assert not any("committee" in t for t in word_terms(padded, legacy))
    assert word_terms(padded, legacy) == word_terms(
        parse_message(html_spam("<p>Thanks</p>")), legacy
    )


def test_visible_coloured_text_is_kept() -> None:
    raw = html_spam('<p style="color:#333333">Grey but readable</p><font color=red>Red</font>')
    msg = parse_message(raw)
    assert msg.visible is None and msg.hidden_chars == 0
    assert "readable" in msg.visible_text and "Red" in msg.visible_text


def test_zero_width_and_look_alike_letters_read_as_the_word_they_hide() -> None:
    zw = "\u200b"
    disguised = (
        SPAM_TEXT.replace("FREE", zw.join("FREE"))
        .replace("mortgage", "m\u043ertg\u0430ge")  # Cyrillic o and a
        .replace("credit", "cr\u00ade\u200ddit")  # soft hyphen, zero-width joiner
    )
    subject = "Get a F\u200bR\u200bE\u200bE cr\u0435dit report"
    plain = parse_message(spam(subject="Get a FREE credit report"))
    tricked = parse_message(spam(disguised, subject=subject))
    cfg = FeatureConfig()
    assert word_terms(tricked, cfg) == word_terms(plain, cfg)
    assert char_terms(tricked, cfg) == char_terms(plain, cfg)
    assert "h:subject:free" in header_terms(tricked, cfg)
    signals = hand_signals(tricked, cfg)
    assert signals["invisible_chars"] == 1.0 and signals["lookalike_letters"] == 1.0
    assert hand_signals(plain, cfg)["invisible_chars"] == 0.0


def test_russian_and_greek_words_are_left_alone() -> None:
    text = "Привет, как дела? Встреча в пятницу. Καλημέρα σας, τα λέμε αύριο."
    msg = parse_message(spam(text, subject="Встреча"))
    words = [t for t in word_terms(msg, FeatureConfig()) if t.startswith("w:")]
    assert "w:привет" in words and "w:пятницу" in words and "w:καλημέρα" in words
    assert hand_signals(msg, FeatureConfig())["lookalike_letters"] == 0.0


# ------------------------------------------------------------------ the shipped model, as is


def _shipped() -> tuple[object, dict[str, object]]:
    from spamguard.scoring.model import default_model_dir, load_scorer

    config = json.loads((default_model_dir() / "config.json").read_text("utf-8"))
    return load_scorer(default_model_dir()), config


def test_shipped_model_still_reads_the_signals_it_was_trained_on() -> None:
    scorer, config = _shipped()
    featurizer = scorer.model.featurizer  # type: ignore[attr-defined]
    assert list(featurizer.hand_names) == config["hand_features"]
    assert list(featurizer.sender_names) == config["sender_features"]
    expected_version = config["features"].get("text_version", 1)  # type: ignore[union-attr]
    assert featurizer.config.text_version == expected_version


def test_shipped_model_scores_a_deeply_nested_spam_like_the_spam() -> None:
    scorer, _ = _shipped()
    plain, deep = scorer.score([parse_message(spam()), parse_message(nested(spam(), 1000))])  # type: ignore[attr-defined]
    assert plain.p_spam >= 0.99
    assert deep.p_spam >= 0.99


def _fifty_links_scores(views: str) -> list[Any]:
    """The plain spam, it with its own link x50, it with 50 unrelated links; ``views``:
    "shipped" (the model's own views block), "ungated" (every view read) or "off"."""
    from benchmarks.evasion import UNRELATED_SITES
    from spamguard.scoring.views import ViewConfig

    scorer, _ = _shipped()
    if views == "ungated":
        scorer.model.views = ViewConfig(enabled=True)  # type: ignore[attr-defined]
    elif views == "off":
        scorer.model.views = ViewConfig(enabled=False)  # type: ignore[attr-defined]
    unrelated = "\n".join(f"http://{site}" for site in UNRELATED_SITES)
    own = "\n".join(["http://www.lowrates-mortgage-now.biz/apply.html"] * 50)
    return scorer.score(  # type: ignore[attr-defined, no-any-return]
        [
            parse_message(spam()),
            parse_message(spam(SPAM_TEXT + "\n" + own)),
            parse_message(spam(SPAM_TEXT + "\n" + unrelated)),
        ]
    )


def test_shipped_model_is_not_talked_out_of_a_spam_by_fifty_links() -> None:
    # default-3 scored the third 0.33 (no views); default-3g reads gated views: the run of
    # links is padding, so the message is also read without it.
    scores = _fifty_links_scores(views="shipped")
    assert scores[0].p_spam >= 0.99
    assert scores[1].p_spam >= 0.90, scores[1]
    assert scores[2].p_spam >= 0.90, scores[2]
    assert any(e.feature.startswith("view:") for e in scores[2].evidence)


def test_views_keep_the_spam_that_fifty_links_talk_the_whole_message_out_of() -> None:
    scores = _fifty_links_scores(views="ungated")
    assert scores[0].p_spam >= 0.99
    assert scores[1].p_spam >= 0.90, scores[1]
    # The whole message alone (unbounded link count weighing about -3.6) is talked out of
    # it; without its last paragraph (the run of links) it still reads as the spam it is.
    assert scores[2].p_spam >= 0.90, scores[2]
    assert any(e.feature.startswith("view:") for e in scores[2].evidence)
    from spamguard.llm.explain import plain_reasons

    reasons = plain_reasons(scores[2].evidence)
    assert any(r.label == "Padding" and "padding" in r.sentence for r in reasons), reasons
    # The control: the whole message alone is talked out of it, so this is about the views.
    assert _fifty_links_scores(views="off")[2].p_spam < 0.90


@pytest.mark.parametrize("where", ["paragraph", "newsletter", "subject"])
def test_views_keep_a_spam_padded_with_ordinary_words(where: str) -> None:
    from benchmarks.evasion import LONG_SUBJECT, NEWSLETTER, PARAGRAPH
    from spamguard.scoring.views import ViewConfig

    raw = {
        "paragraph": spam(SPAM_TEXT + "\n" + PARAGRAPH * 2),
        "newsletter": spam(SPAM_TEXT + "\n" + NEWSLETTER),
        "subject": spam(subject=LONG_SUBJECT),
    }[where]
    scorer, _ = _shipped()
    scorer.model.views = ViewConfig(enabled=True)  # type: ignore[attr-defined]
    tricked = scorer.score([parse_message(raw)])[0]  # type: ignore[attr-defined]
    assert tricked.p_spam >= 0.90, tricked
    scorer.model.views = ViewConfig(enabled=False)  # type: ignore[attr-defined]
    whole = scorer.score([parse_message(raw)])[0]  # type: ignore[attr-defined]
    assert whole.p_spam < tricked.p_spam
