"""Padding-proof scoring (issue 21): a message is also read as its most spam-like part."""

from __future__ import annotations

import dataclasses

import pytest

from spamguard.message import parse_message
from spamguard.scoring.views import ViewConfig, message_views, subject_chars, view_traits

LONG_TEXT = " ".join(f"word{i}" for i in range(1500))  # about 12,000 characters


def mail(body: str, subject: str = "Hello", links: int = 0) -> bytes:
    urls = "\n".join(f"http://site{i}.example.org/page" for i in range(links))
    return (
        f"From: A <a@example.com>\nTo: b@example.org\nSubject: {subject}\n\n{body}\n\n{urls}\n"
    ).encode()


def test_views_cut_the_text_and_the_links_and_drop_the_subject() -> None:
    msg = parse_message(mail(LONG_TEXT, links=30))
    cfg = ViewConfig(enabled=True, openings=(500, 2000), trims=(1,), max_links=10)
    views = dict(message_views(msg, cfg))
    assert list(views) == ["opening-500", "opening-2000", "trimmed-1", "body"]
    opening = views["opening-500"]
    assert 250 < len(opening.text) <= 500 and msg.text.startswith(opening.text)
    assert opening.text.endswith(opening.text.split()[-1])  # cut between words
    assert msg.text[len(opening.text)] == " "
    assert opening.urls == () and opening.url_domains == ()  # its links come later
    assert opening.subject == msg.subject
    # The 30 bare links are one paragraph: trimming one leaves the words and no link.
    trimmed = views["trimmed-1"]
    assert trimmed.text.strip() == LONG_TEXT and trimmed.urls == ()
    body = views["body"]
    assert body.subject == "" and body.text == msg.text and body.urls == msg.urls
    assert dict(body.headers)["Subject"] == ""  # the header stays, its words go


def test_an_opening_ends_at_a_paragraph_and_keeps_its_own_links() -> None:
    first = "Cheap meds at http://pills.example.biz/buy now.\n\nOrder today, ships fast."
    padding = "\n\n".join(f"http://site{i}.example.org/" for i in range(50))
    msg = parse_message(mail(first + "\n\n" + padding))
    views = dict(message_views(msg, ViewConfig(enabled=True, openings=(250,), trims=(1, 2))))
    assert views["opening-250"].text == first
    assert views["opening-250"].urls == ("http://pills.example.biz/buy",)
    # Without its last paragraph (the run of bare links is one) it is the same as that
    # opening, so it is not scored twice.
    assert "trimmed-1" not in views
    assert views["trimmed-2"].text == "Cheap meds at http://pills.example.biz/buy now."
    assert len(msg.urls) == 51


def test_a_short_message_has_no_view_that_repeats_it() -> None:
    on = ViewConfig(enabled=True)
    msg = parse_message(mail("Lunch at one?", subject=""))
    assert message_views(msg, on) == []
    # With a subject only the subject-less view differs from the message.
    msg = parse_message(mail("Lunch at one?", subject="Lunch"))
    assert [name for name, _ in message_views(msg, on)] == ["body"]
    msg = parse_message(mail("Lunch at one?\n\nOr two?", subject=""))
    assert [name for name, _ in message_views(msg, on)] == ["trimmed-1"]
    assert message_views(msg, ViewConfig()) == []  # off unless a model turns them on


def test_the_opening_view_reads_what_the_reader_sees() -> None:
    raw = (
        "From: A <a@example.com>\nSubject: Offer\nMIME-Version: 1.0\n"
        "Content-Type: text/html\n\n<html><body><p>Cheap meds here</p>"
        '<div style="display:none">' + "the committee met on tuesday " * 50 + "</div>"
        "</body></html>\n"
    ).encode()
    msg = parse_message(raw)
    assert "committee" in msg.text and msg.visible is not None
    opening = dict(message_views(msg, ViewConfig(enabled=True, openings=(250,))))["opening-250"]
    assert "committee" not in opening.text and "Cheap meds here" in opening.text


def test_view_config_round_trips_and_refuses_unknown_views() -> None:
    cfg = ViewConfig(
        openings=(300,),
        trims=(),
        max_links=5,
        view_margin=0.5,
        lift_weight=0.4,
        own_embedding=False,
    )
    assert ViewConfig.from_json(cfg.to_json()) == cfg
    assert ViewConfig.from_json(None) == ViewConfig() and not ViewConfig().enabled
    with pytest.raises(ValueError, match="unknown scoring view"):
        ViewConfig.from_json({"views": ["opening", "middle"]})
    assert ViewConfig.from_json({"enabled": True}).enabled is True


def test_lift_weight_moves_the_log_odds_that_part_of_the_way_to_the_view() -> None:
    import dataclasses
    import math

    from spamguard.scoring.model import default_model_dir, load_scorer

    text = (
        "You have been selected to receive a FREE credit report and a LOW mortgage rate!\n"
        "Refinance now and SAVE thousands. Click here: http://www.lowrates-now.biz/apply\n"
    )
    msg = parse_message(mail(text, subject="Get a FREE credit report!!!", links=50))
    scorer = load_scorer(default_model_dir())
    scorer.n_neighbours = 0

    def logit(weight: float, *, enabled: bool = True) -> tuple[float, list[str]]:
        scorer.model.views = dataclasses.replace(ViewConfig(enabled=enabled), lift_weight=weight)
        s = scorer.score([msg])[0]
        return math.log(s.p_spam / (1 - s.p_spam)), [e.feature for e in s.evidence]

    whole, _ = logit(1.0, enabled=False)
    full, evidence = logit(1.0)
    assert full > whole + 1.0 and any(f.startswith("view:") for f in evidence)
    half, _ = logit(0.5)
    assert half == pytest.approx((whole + full) / 2, abs=1e-6)
    none, evidence = logit(0.0)
    assert none == pytest.approx(whole, abs=1e-9)
    assert not any(f.startswith("view:") for f in evidence)


def test_a_quote_appended_as_html_is_trimmed_as_one_paragraph() -> None:
    quote = "<br>\n".join(
        ["On Sun, 22 Sep 2002, Ann Other wrote:"]
        + [f"&gt; line {i} of a message she sent to the list" for i in range(15)]
    )
    raw = (
        "From: A <a@example.com>\nSubject: Offer\nMIME-Version: 1.0\n"
        "Content-Type: text/html\n\n<html><body><p>Cheap meds here</p><p>Order today</p>"
        f"<blockquote>{quote}</blockquote></body></html>\n"
    ).encode()
    msg = parse_message(raw)
    assert msg.text.count("\n\n>") >= 10  # HTML gives one paragraph per quoted line
    views = dict(message_views(msg, ViewConfig(enabled=True, openings=(), trims=(1,))))
    assert views["trimmed-1"].text.split() == ["Cheap", "meds", "here", "Order", "today"]
    # A reply's own text after the quote stays: only the last paragraph goes.
    reply = parse_message(mail("On Sun, Ann wrote:\n> a\n> b\n\nMy answer.\n\nThanks"))
    trimmed = dict(message_views(reply, ViewConfig(enabled=True, openings=())))["trimmed-1"]
    assert trimmed.text == "On Sun, Ann wrote:\n> a\n> b\n\nMy answer."


GATED = ViewConfig(
    gate_text_chars=300,
    enabled=True,
    gated=True,
    gate_links=10,
    gate_quote_share=0.2,
    gate_text_share=0.4,
    gate_subject_chars=100,
)


def test_gated_views_read_only_what_looks_like_padding() -> None:
    text = "Meet at noon by the station.\n\nBring the slides for the review."
    # Not padded: a short reply and a list footer of one link are read as they are.
    plain = parse_message(mail(text + "\n\n-- \nAnn"))
    footer = parse_message(mail(text, links=1))
    assert message_views(plain, GATED) == [] and message_views(footer, GATED) == []
    # The same with fifty bare links appended: without them is a view worth reading.
    padded = parse_message(mail(text, links=50))
    views = dict(message_views(padded, GATED))
    # (Its opening is the same view: read once.)
    assert [v.text for v in views.values()] == [text]
    # Ungated, every view that differs is read.
    assert "body" in dict(message_views(plain, dataclasses.replace(GATED, gated=False)))


def test_a_large_paragraph_or_quote_appended_passes_the_gate_a_small_one_not() -> None:
    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    paragraph = " ".join(["The committee met on Tuesday to review the budget."] * 6)
    assert [n for n, _ in message_views(parse_message(mail(offer + "\n\n" + paragraph)), GATED)]
    signature = parse_message(mail(offer + "\n\nThanks, Ann"))
    assert message_views(signature, GATED) == []  # 12 characters of 85: not padding
    quote = "On Mon, 3 Jun 2002, Ann wrote:\n" + "\n".join(f"> line {i} of hers" for i in range(8))
    traits = {
        n: (v, d) for n, v, d in view_traits(parse_message(mail(offer + "\n\n" + quote)), GATED)
    }
    view, dropped = traits["trimmed-1"]
    assert view.text == offer and dropped.quote_chars == len(quote) and dropped.text_chars == 0
    assert dropped.looks_like_padding(GATED)
    assert not dropped.looks_like_padding(dataclasses.replace(GATED, gate_quote_share=0.9))


def test_the_subject_less_view_needs_a_subject_far_longer_than_ordinary() -> None:
    body = "Your account is suspended. Verify your password at http://verify.example.biz/"
    short = parse_message(mail(body, subject="Re: [ILUG] Account notice"))
    assert subject_chars(short.subject) == len("Account notice")
    assert message_views(short, GATED) == []
    long = parse_message(mail(body, subject="Notes from the planning meeting " * 4))
    assert [n for n, _ in message_views(long, GATED)] == ["body"]
    cfg = dataclasses.replace(GATED, view_margin=0.5, body_margin=-1.0)
    assert cfg.margin("body") == -1.0 and cfg.margin("trimmed-1") == 0.5
    assert dataclasses.replace(cfg, body_margin=None).margin("body") == 0.5


def test_gated_config_round_trips_and_an_old_config_reads_ungated() -> None:
    cfg = dataclasses.replace(GATED, view_margin=0.25, body_margin=-1.5)
    assert ViewConfig.from_json(cfg.to_json()) == cfg
    old = ViewConfig(enabled=True, view_margin=0.5).to_json()
    assert "gated" not in old and "body_margin" not in old  # default-6's config, unchanged
    assert not ViewConfig.from_json(old).gated


def test_a_gated_model_scores_unpadded_mail_exactly_as_without_views() -> None:
    from spamguard.scoring.model import default_model_dir, load_scorer

    text = (
        "You have been selected to receive a FREE credit report and a LOW mortgage rate!\n"
        "Refinance now and SAVE thousands. Click here: http://www.lowrates-now.biz/apply\n"
    )
    plain = parse_message(mail(text, subject="Get a FREE credit report!!!"))
    ham = parse_message(mail("Lunch at one?\n\nOr two? The usual place.", subject="Lunch"))
    padded = parse_message(mail(text, subject="Get a FREE credit report!!!", links=50))
    scorer = load_scorer(default_model_dir())
    scorer.n_neighbours = 0
    scorer.model.views = ViewConfig()
    off = scorer.score([plain, ham, padded])
    scorer.model.views = dataclasses.replace(GATED, view_margin=0.0, body_margin=-3.0)
    on = scorer.score([plain, ham, padded])
    assert [s.p_spam for s in on[:2]] == [s.p_spam for s in off[:2]]
    # The padded copy is read without its links: as the message before they were added.
    assert on[2].p_spam == pytest.approx(on[0].p_spam, abs=1e-6) and off[2].p_spam < 0.95
    assert any(e.feature.startswith("view:") for e in on[2].evidence)


def test_the_cross_validation_reads_the_same_gates_as_the_scorer() -> None:
    """benchmarks/views_cv.py applies the gates to arrays of what each view leaves out; it
    must agree with `Dropped.looks_like_padding`, which scoring uses."""
    import numpy as np

    from benchmarks.views_cv import Gates

    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    messages = [
        mail(offer, links=50),
        mail(offer, links=4),
        mail(offer + "\n\n" + "The committee met on Tuesday. " * 8),
        mail(offer + "\n\nOn Mon, Ann wrote:\n> a line\n> another line", subject="x" * 120),
        mail(LONG_TEXT + "\n\nThanks", subject="Re: [list] what we said about it"),
    ]
    rows, names, expected = [], [], []
    for raw in messages:
        for name, _, d in view_traits(parse_message(raw), dataclasses.replace(GATED, gated=False)):
            rows.append(
                (
                    d.links_chars,
                    d.quote_chars,
                    d.text_chars,
                    d.links,
                    d.subject_chars,
                    d.total_chars,
                )
            )
            names.append(name)
            expected.append(d.looks_like_padding(GATED, name) and not name.startswith("opening"))
    data = {"traits": np.asarray(rows), "view": np.asarray(names)}
    g = Gates(
        links=10,
        quote_share=0.2,
        text_share=0.4,
        text_chars=300,
        subject_chars=100,
        openings=False,
        margin=0.0,
        body_margin=0.0,
    )
    assert g.use(data).tolist() == expected and any(expected) and not all(expected)
    assert dataclasses.replace(g, openings=True).use(data).tolist() == _padding_flags(messages)


def _padding_flags(messages: list[bytes]) -> list[bool]:
    return [
        d.looks_like_padding(GATED, name)
        for raw in messages
        for name, _, d in view_traits(parse_message(raw), dataclasses.replace(GATED, gated=False))
    ]


def test_looks_padded_says_whether_a_gated_scorer_reads_a_view() -> None:
    from spamguard.scoring.views import looks_padded

    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    raws = [
        mail(offer),
        mail(offer, links=50),
        mail(offer, links=3),
        mail(offer + "\n\n" + "The committee met on Tuesday to review the budget. " * 8),
        mail(offer, subject="Notes from the planning meeting " * 4),
        mail(LONG_TEXT + "\n\n" + "http://a.example/\n" * 20),
        mail(LONG_TEXT + "\n\nThanks"),
    ]
    got = [looks_padded(parse_message(r), GATED) for r in raws]
    assert got == [bool(message_views(parse_message(r), GATED)) for r in raws]
    assert any(got) and not all(got)
    assert not any(
        looks_padded(parse_message(r), dataclasses.replace(GATED, gated=False)) for r in raws
    )


def test_an_opening_never_counts_ordinary_text_as_padding_the_trimmed_view_may() -> None:
    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    paragraph = " ".join(["The committee met on Tuesday to review the budget."] * 22)
    msg = parse_message(mail(offer + "\n\n" + paragraph))
    traits = {n: (v, d) for n, v, d in view_traits(msg, GATED)}
    # Both views read the offer alone; only the trimmed one passes the gate.
    assert traits["opening-1000"][0].text == traits["trimmed-1"][0].text == offer
    assert not traits["opening-1000"][1].looks_like_padding(GATED, "opening-1000")
    assert traits["trimmed-1"][1].looks_like_padding(GATED, "trimmed-1")
    assert [n for n, _ in message_views(msg, GATED)] == ["trimmed-1"]
    # Ungated, the two are one view, read once under its first name.
    ungated = dataclasses.replace(GATED, gated=False)
    assert [n for n, _ in message_views(msg, ungated)] == ["opening-1000", "body"]


def test_the_unpadded_view_drops_every_run_of_links_wherever_it_is() -> None:
    from spamguard.scoring.views import ALL_VIEWS, looks_padded

    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    links = "\n".join(f"http://site{i}.example.org/page" for i in range(50))
    quote = "On Mon, 3 Jun 2002, Ann wrote:\n> the budget\n> the roof"
    # Links followed by a line of the spammer's own: not its last paragraph.
    msg = parse_message(mail(f"{offer}\n\n{links}\n\nxqzvbnmtrewq\n\n{quote}\n\nbye now"))
    cfg = dataclasses.replace(GATED, views=("unpadded",))
    views = {n: (v, d) for n, v, d in view_traits(msg, cfg)}
    view, dropped = views["unpadded"]
    assert view.text == f"{offer}\n\nxqzvbnmtrewq\n\n{quote}\n\nbye now"  # quotes stay
    assert view.urls == ("http://pills.example.biz/buy",)
    assert dropped.links == 50 and not dropped.quote_chars and not dropped.text_chars
    assert message_views(msg, cfg) == [("unpadded", view)] and looks_padded(msg, cfg)
    # A run shorter than gate_links stays (and with nothing else to drop there is no view).
    short = parse_message(mail(offer + "\n\nhttp://a.example/\nhttp://b.example/\n\nbye now"))
    assert view_traits(short, cfg) == [] and not looks_padded(short, cfg)
    full = dataclasses.replace(GATED, views=ALL_VIEWS)
    assert ViewConfig.from_json(full.to_json()) == full
    assert "unpadded" not in ViewConfig.from_json(None).views  # not read by default


def test_a_gated_trimmed_view_drops_every_copy_of_the_padding_it_drops() -> None:
    """The same padding appended to each part of a message (plain text and HTML) can come
    out twice in its text: dropping only the last copy would leave the other."""
    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    quote = "On Mon, 3 Jun 2002, Ann wrote:\n" + "\n".join(f"> line {i} of hers" for i in range(12))
    footer = "Thanks,\nAnn"
    msg = parse_message(mail(f"{offer}\n\n{quote}\n\n{footer}\n\n{quote}"))
    view, dropped = {n: (v, d) for n, v, d in view_traits(msg, GATED)}["trimmed-1"]
    assert view.text == f"{offer}\n\n{footer}"
    assert dropped.quote_chars == 2 * len(quote) and dropped.looks_like_padding(GATED)
    # Ungated (default-6's views) only the last paragraph goes, as before.
    ungated = dict(message_views(msg, dataclasses.replace(GATED, gated=False, openings=())))
    assert ungated["trimmed-1"].text == f"{offer}\n\n{quote}\n\n{footer}"
    # A short paragraph that repeats stays where it is.
    short = parse_message(mail(f"{offer}\n\nThanks\n\n{quote}\n\nThanks"))
    assert {n: v for n, v, _ in view_traits(short, GATED)}["trimmed-1"].text.count("Thanks") == 1


def test_a_copy_of_the_padding_that_ran_into_the_next_quote_is_dropped_too() -> None:
    """Padding appended to two text parts in a row comes out as two quotes in a row, which
    read as one paragraph: the copy inside it goes with the one dropped."""
    offer = "Cheap meds at http://pills.example.biz/buy now. Order today, ships fast."
    quote = "On Mon, 3 Jun 2002, Ann wrote:\n" + "\n".join(f"> line {i} of hers" for i in range(12))
    footer = "Thanks,\nAnn"
    msg = parse_message(mail(f"{offer}\n\n{quote}\n\n{quote}\n\n{footer}\n\n{quote}"))
    view, dropped = {n: (v, d) for n, v, d in view_traits(msg, GATED)}["trimmed-1"]
    assert view.text == f"{offer}\n\n{footer}" and dropped.looks_like_padding(GATED)


FOREIGN = dataclasses.replace(
    GATED, views=("trimmed", "inner"), gate_foreign_overlap=0.2, gate_foreign_share=0.15
)
OFFER = (
    "Your mailbox storage is full. Verify your account password today at "
    "http://verify.example.biz/login or your account will be suspended. Security team: "
    "confirm billing details within hours, otherwise access stops permanently. "
) * 2
COMMITTEE = (
    "The committee met on Tuesday afternoon to review the draft budget for next year; "
    "the library roof leaked again after October storms, and Margaret will ask builders. "
) * 3


def test_foreign_text_is_padding_at_a_smaller_share_and_in_the_middle() -> None:
    # A paragraph on something else entirely, before a footer of the spammer's own.
    footer = "click here to remove yourself from our emails list"
    msg = parse_message(mail(f"{OFFER}\n\n{COMMITTEE}\n\n{footer}"))
    traits = {n: (v, d) for n, v, d in view_traits(msg, FOREIGN)}
    assert not traits["trimmed-1"][1].looks_like_padding(FOREIGN, "trimmed-1")  # the footer
    view, dropped = traits["inner"]
    assert view.text == f"{OFFER}\n\n{footer}" and dropped.text_overlap < 0.2
    assert dropped.looks_like_padding(FOREIGN, "inner")
    assert [n for n, _ in message_views(msg, FOREIGN)] == ["inner"]
    # Off (the default), middle text is never padding and the share is the usual one.
    off = dataclasses.replace(FOREIGN, gate_foreign_overlap=-1.0)
    assert not dropped.looks_like_padding(off, "inner") and message_views(msg, off) == []
    assert ViewConfig.from_json(FOREIGN.to_json()) == FOREIGN
    assert "gate_foreign_overlap" not in GATED.to_json()  # older configs read the same
    # A long message with the paragraph at its end: 22% of the text, under the usual 40%.
    long = parse_message(mail(f"{OFFER}\n\n" * 4 + COMMITTEE))
    _, tail = {n: (v, d) for n, v, d in view_traits(long, FOREIGN)}["trimmed-1"]
    assert 0.15 < tail.share("text") < 0.4 and tail.looks_like_padding(FOREIGN)
    assert not tail.looks_like_padding(off)


def test_a_paragraph_on_the_message_own_subject_is_not_foreign() -> None:
    more = (
        "Verify the account password at the login page today; a suspended mailbox "
        "account loses its storage and every password reset needs the account owner. "
    ) * 5
    msg = parse_message(mail(f"{OFFER}\n\n{more}\n\nThanks"))
    _, dropped = {n: (v, d) for n, v, d in view_traits(msg, FOREIGN)}["inner"]
    assert dropped.text_chars >= len(more.strip()) and dropped.text_overlap > 0.2
    assert message_views(msg, FOREIGN) == []


def test_nothing_is_foreign_to_a_reply_of_a_few_words() -> None:
    """A short reply under a long quote shares no words with it: that is no padding."""
    reply = parse_message(mail(f"{OFFER}\n\n{COMMITTEE}\n\nBest regards,\nTomer"))
    # (The offer's own words make the rest long enough to tell: foreign.)
    assert [n for n, _ in message_views(reply, FOREIGN)] == ["inner"]
    short = parse_message(mail(f"Hi all,\n\n{COMMITTEE}\n\nBest regards,\nTomer", subject="Hi"))
    _, dropped = {n: (v, d) for n, v, d in view_traits(short, FOREIGN)}["inner"]
    assert dropped.text_overlap == 1.0 and message_views(short, FOREIGN) == []


def test_a_long_subject_foreign_to_the_text_gets_its_own_margin() -> None:
    """The evasion: a phishing text under a long, innocent subject about something else.
    A long subject on the message's own topic keeps the ordinary subject-less margin."""
    cfg = dataclasses.replace(
        GATED, view_margin=0.0, gate_subject_overlap=0.2, body_foreign_margin=-1.0
    )
    innocent = (
        "Notes from Tuesday's planning meeting, the revised schedule for the autumn term and "
        "a question about the shared calendar for the project review next week"
    )
    foreign = parse_message(mail(OFFER, subject=innocent))
    assert [n for n, _ in message_views(foreign, cfg)] == ["body-foreign"]
    on_topic = parse_message(
        mail(
            OFFER,
            subject="Mailbox storage full: verify your account password today or "
            "your account will be suspended, security team billing details",
        )
    )
    assert subject_chars(on_topic.subject) >= 100
    assert [n for n, _ in message_views(on_topic, cfg)] == ["body"]
    assert cfg.margin("body-foreign") == -1.0 and cfg.margin("body") == 0.0
    # Off (no foreign margin, as shipped before), the view keeps its old name and margin.
    off = dataclasses.replace(cfg, body_foreign_margin=None)
    assert [n for n, _ in message_views(foreign, off)] == ["body"]
    assert ViewConfig.from_json(cfg.to_json()) == cfg
    assert "gate_subject_overlap" not in GATED.to_json()
