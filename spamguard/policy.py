"""Turn a score into a plan: thresholds, allow/block lists, protections and folder rules. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from spamguard.config import AccountSettings, FolderRule
from spamguard.message import Message
from spamguard.scoring.base import Score
from spamguard.verdict import Verdict, verdict_for

__all__ = [
    "Action",
    "ActionKind",
    "Plan",
    "PolicyContext",
    "matches_address",
    "plan_for",
    "sender_authenticated",
]

ActionKind = Literal["junk", "move", "flag", "keyword", "leave"]


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do to one message; `reason` is shown in the dry run and the journal."""

    kind: ActionKind
    reason: str
    folder: str = ""  # destination for "move" ("junk" resolves to the account's Junk folder)
    flags: tuple[str, ...] = ()  # what "flag" and "keyword" set

    def describe(self) -> str:
        if self.kind == "junk":
            what = "move to Junk"
        elif self.kind == "move":
            what = f"move to {self.folder}"
        elif self.kind in ("flag", "keyword"):
            what = f"{self.kind} {' '.join(self.flags)}"
        else:
            what = "leave"
        return f"{what} ({self.reason})"


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Facts about a message the policy cannot see in it."""

    folder: str = "INBOX"
    rescued: bool = False  # the user moved it out of Junk (or undid our move)
    known_correspondent: bool = False  # its sender is someone the user has written to
    # The message authenticated as its sender's domain (aligned DKIM or DMARC pass, as the
    # account's own server recorded it) and the user kept that sender's earlier mail.
    kept_sender: bool = False
    junk_available: bool = True  # False while the account has no Junk folder: flag instead


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one message, in order."""

    p_spam: float
    verdict: Verdict
    actions: tuple[Action, ...]
    protected: str = ""  # why this message is never moved, when it is

    @property
    def moves(self) -> bool:
        return any(a.kind in ("junk", "move") for a in self.actions)

    @property
    def changes_mailbox(self) -> bool:
        return any(a.kind != "leave" for a in self.actions)

    def describe(self) -> str:
        return "; ".join(a.describe() for a in self.actions)


def plan_for(
    message: Message, score: Score, settings: AccountSettings, context: PolicyContext
) -> Plan:
    """The plan for ``message`` given its ``score`` and the account's settings.

    Order: protections (rescued, allow list, known sender) decide what may happen; then
    the first matching folder rule; then the block list; then the two thresholds.
    A rescued message is never moved by anything. Allow-listed senders are never moved to
    Junk; a user's own "move to folder" rule still applies to them. Known senders (someone
    the user wrote to, or an authenticated sender whose earlier mail the user kept) are
    flagged at most, never moved to Junk, while ``protect_known_senders`` is on (the
    default): a correspondent's hacked account still gets a warning.
    """
    p = score.p_spam
    th = settings.thresholds
    verdict = verdict_for(p, th.move, th.flag)
    sender = message.from_addr.lower()
    protected = ""
    known_sender = False
    if context.rescued:
        protected = "you rescued it from Junk"
    elif sender and matches_address(sender, settings.allow):
        protected = f"{sender} is on your allow list"
    elif sender and settings.protect_known_senders:
        known_sender = True
        if context.known_correspondent:
            protected = f"you have written to {sender}"
        elif context.kept_sender:
            protected = (
                f"{sender} is an authenticated sender (DKIM/DMARC) whose earlier mail you kept"
            )
        else:
            known_sender = False

    def plan(*actions: Action) -> Plan:
        return Plan(p, verdict, actions, protected)

    def junk(reason: str) -> Plan:
        if context.junk_available:
            return plan(Action("junk", reason))
        return plan(
            Action("flag", f"{reason}, but there is no Junk folder", flags=flag_flags(settings))
        )

    for rule in settings.rules:
        if not rule_matches(rule, message, p, context.folder):
            continue
        label = f"rule {rule.name!r}"
        if rule.action == "leave":
            return plan(Action("leave", label))
        if rule.action == "flag":
            return plan(Action("flag", label, flags=flag_flags(settings)))
        if rule.action == "keyword":
            return plan(Action("keyword", label, flags=(rule.target,)))
        if context.rescued or (rule.action == "junk" and protected):
            return plan(Action("leave", f"{label} would move it, but {protected}"))
        if rule.action == "junk":
            return junk(label)
        if rule.target == context.folder:
            return plan(Action("leave", f"{label}: already in {rule.target}"))
        return plan(Action("move", label, folder=rule.target))

    if not protected and sender and matches_address(sender, settings.block):
        return junk(f"{sender} is on your block list")

    if verdict == "spam":
        if not protected:
            return junk(f"p_spam {p:.2f} ≥ move threshold {th.move:.2f}")
        if known_sender:
            # A correspondent's hacked account is a classic spam source: warn, don't move.
            return plan(
                Action(
                    "flag",
                    f"p_spam {p:.2f} ≥ move threshold, but {protected}",
                    flags=flag_flags(settings),
                )
            )
        return plan(Action("leave", f"p_spam {p:.2f} ≥ move threshold, but {protected}"))
    if verdict == "flag":
        if protected and not known_sender:
            return plan(Action("leave", f"p_spam {p:.2f} in the flag band, but {protected}"))
        return plan(
            Action(
                "flag", f"p_spam {p:.2f} ≥ flag threshold {th.flag:.2f}", flags=flag_flags(settings)
            )
        )
    return plan(Action("leave", f"p_spam {p:.2f} < flag threshold {th.flag:.2f}"))


def sender_authenticated(message: Message) -> bool:
    """The account's own server vouched for the sender's domain: DMARC passed, or a DKIM
    signature of the From domain verified (`Message.auth` holds only trusted results)."""
    from spamguard.scoring.features import dkim_aligned

    return bool(message.from_addr) and (message.auth.dmarc == "pass" or dkim_aligned(message))


def flag_flags(settings: AccountSettings) -> tuple[str, ...]:
    if settings.flag_style == "keyword":
        return (settings.flag_keyword,)
    if settings.flag_style == "flagged":
        return ("\\Flagged",)
    return ("\\Flagged", settings.flag_keyword)


def rule_matches(rule: FolderRule, message: Message, p_spam: float, folder: str) -> bool:
    """Every condition the rule gives must hold; a rule with no conditions always matches."""
    if rule.min_score is not None and p_spam < rule.min_score:
        return False
    if rule.max_score is not None and p_spam > rule.max_score:
        return False
    if rule.source_folder and rule.source_folder != folder:
        return False
    if rule.senders and not matches_address(message.from_addr.lower(), rule.senders):
        return False
    if rule.list_id and rule.list_id not in (message.header("List-Id") or "").lower():
        return False
    if rule.header:
        values = message.header_all(rule.header)
        if not any(re.search(rule.header_regex, v, re.IGNORECASE) for v in values):
            return False
    return True


def matches_address(address: str, patterns: Iterable[str]) -> bool:
    """``alice@example.com`` matches itself; ``example.com``, ``@example.com`` and
    ``*.example.com`` match that domain and its subdomains."""
    address = address.lower()
    _, _, domain = address.rpartition("@")
    for pattern in patterns:
        pat = pattern.lower().strip()
        if "@" in pat and not pat.startswith("@"):
            if address == pat:
                return True
            continue
        pat = pat.lstrip("*").lstrip("@").lstrip(".")
        if pat and (domain == pat or domain.endswith("." + pat)):
            return True
    return False
