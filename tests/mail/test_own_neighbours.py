"""Issue 22 item 4: the Why pane's nearest known messages come from the user's own labelled mail
first (real Dovecot, the shipped model and its encoder)."""

from __future__ import annotations

from dovecot_server import DovecotServer
from imap_helpers import append_all, make_mail, settings_for

from spamguard.engine.session import AccountSession
from spamguard.learn.own_neighbours import OWN_REF_PREFIX, is_own
from spamguard.scoring.assemble import load_default_scorer
from spamguard.scoring.model import default_model_dir
from spamguard.store import Store

LUNCH = (
    "Hi all, shall we do the team lunch on Friday at the Italian place on Mill Street again? "
    "Table for eight at half past twelve. Tell me by Thursday if you can make it. Sam"
)
LUNCH_AGAIN = (
    "Hello team, lunch this Friday: the Italian place on Mill Street, half past twelve, table "
    "for eight as last time. Let me know by Thursday whether you are coming. Sam"
)
PILLS = (
    "Cheap meds online!!! Viagra, Cialis, weight loss pills at 80% off, no prescription "
    "needed. Order now at http://198.51.100.9/shop and get free worldwide shipping."
)


def test_the_users_own_labelled_mail_comes_first_among_the_neighbours(
    dovecot: DovecotServer, user: str, store: Store
) -> None:
    settings = settings_for(dovecot, user, junk_folder="Junk")
    append_all(
        dovecot,
        user,
        [
            make_mail(
                1, None, subject="Team lunch on Friday", body=LUNCH, sender="sam@work.example"
            ),
            make_mail(
                2, None, subject="Your pharmacy order", body=PILLS, sender="deals@pills.example"
            ),
        ],
    )
    session = AccountSession(settings, scorer=load_default_scorer(default_model_dir()), store=store)
    try:
        for _ in session.scan():
            pass
        rows = {r.subject: r for r in session.rows()}
        lunch, pills = rows["Team lunch on Friday"], rows["Your pharmacy order"]
        # Nothing labelled yet: only the model's own set, none of it the user's mail.
        before = session.explain(lunch.key)
        assert before is not None and not any(is_own(n) for n in before.neighbours)

        session.mark(lunch.key, "ham")
        session.mark(pills.key, "spam")
        append_all(
            dovecot,
            user,
            [
                make_mail(
                    3,
                    None,
                    subject="Lunch this Friday",
                    body=LUNCH_AGAIN,
                    sender="sam@work.example",
                )
            ],
        )
        for _ in session.scan():
            pass
        new = next(r for r in session.rows() if r.subject == "Lunch this Friday")
        score = session.explain(new.key)
    finally:
        session.close()
    assert score is not None
    own = [n for n in score.neighbours if is_own(n)]
    # Both labelled messages are found, the lunch one nearest, as ham, with its own subject;
    # and they come before the model's corpus neighbours.
    assert [n.subject for n in own] == ["Team lunch on Friday", "Your pharmacy order"]
    assert own[0].label == "ham" and own[1].label == "spam"
    assert own[0].ref == OWN_REF_PREFIX + lunch.content_hash
    assert own[0].similarity > 0.7 > own[1].similarity
    assert score.neighbours[: len(own)] == tuple(own)
