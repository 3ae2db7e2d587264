"""Deterministic rules that decide before any model: today one, the GTUBE test line.

GTUBE (SpamAssassin's Generic Test for Unsolicited Bulk Email, also honoured by rspamd and
most filters) is a fixed string people put in a message to check that a filter is installed
and acting. A message carrying it is spam with certainty, whatever a model would say, and
it is never training data: it says nothing about what real spam looks like.
"""

from __future__ import annotations

from spamguard.message import Message
from spamguard.scoring.base import Evidence, Score

__all__ = ["GTUBE", "GTUBE_FEATURE", "gtube_score", "is_gtube"]

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_FEATURE = "rule:gtube"
_GTUBE_DETAIL = "the GTUBE anti-spam test line (a message sent to test the filter)"
# The log-odds shown for the rule in explanations; the probability is exactly 1.
_GTUBE_WEIGHT = 50.0


def is_gtube(msg: Message) -> bool:
    """Whether the message carries the GTUBE line in its subject or text (as SpamAssassin's
    rule reads the decoded body, so quoted-printable or base64 does not hide it)."""
    return GTUBE in msg.text or GTUBE in msg.subject


def gtube_score(msg: Message, model_version: str, stage: str) -> Score | None:
    """The rule's score for a GTUBE message (p = 1.0, the reason named), else None."""
    if not is_gtube(msg):
        return None
    return Score(
        p_spam=1.0,
        stage=stage,
        model_version=model_version,
        evidence=(Evidence(feature=GTUBE_FEATURE, weight=_GTUBE_WEIGHT, detail=_GTUBE_DETAIL),),
    )
