"""A look before the first moves: a new account's first scan as a review, then the user's choice.

The review is a dry run of the account's first scan (nothing on the server changes, nothing is
journalled) whose plans a `ReviewRecorder` keeps: "SpamGuard would move 15 and flag 12 of 41
messages". The user then chooses (`Choice`): apply the plans as they are, move to Junk only
above a score they pick (the rest of the would-be moves are flagged instead), or flag only
(nothing moves). The choice is applied by the real first scan, through the worker's plan hook,
so the moves and flags are journalled like every other action. Later scans use the account's
thresholds as always: the choice is for the backlog the user looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from spamguard.config import AccountSettings
from spamguard.message import Message
from spamguard.policy import Action, Plan, flag_flags
from spamguard.store import Store

__all__ = [
    "Choice",
    "PlanHook",
    "Review",
    "ReviewItem",
    "ReviewRecorder",
    "chain",
    "needs_review",
]

ReviewAction = Literal["move", "flag", "leave"]
# The worker's plan hook: (folder, uid, message, plan) -> the plan to carry out.
PlanHook = Callable[[str, int, Message, Plan], Plan]


def needs_review(store: Store, settings: AccountSettings) -> bool:
    """True for an account SpamGuard has never scanned: no watched folder has a state yet
    (and it was not reset to "act on new mail only", which scans no backlog)."""
    if store.starts_from_new_mail(settings.name):
        return False
    return all(store.folder_state(settings.name, f) is None for f in settings.watch_folders)


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One message of the review and what the first scan would do with it."""

    folder: str
    uid: int
    message_id: str
    content_hash: str
    subject: str
    from_addr: str
    p_spam: float
    action: ReviewAction  # "move": to Junk (or a rule's folder); "flag"; "leave"
    plan: str  # the plan in words, as the dry run prints it
    protected: str = ""


@dataclass(frozen=True, slots=True)
class Review:
    """What the first scan of ``account`` would do, message by message."""

    account: str
    items: tuple[ReviewItem, ...]
    model_version: str = ""  # the head model that scored them

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def moves(self) -> int:
        return sum(i.action == "move" for i in self.items)

    @property
    def flags(self) -> int:
        return sum(i.action == "flag" for i in self.items)

    @property
    def acted(self) -> list[ReviewItem]:
        """The messages the scan would move or flag, highest score first."""
        return sorted(
            (i for i in self.items if i.action != "leave"), key=lambda i: i.p_spam, reverse=True
        )

    def counts(self, choice: Choice) -> tuple[int, int]:
        """(moved, flagged) if ``choice`` is applied to these messages."""
        moved = flagged = 0
        for item in self.items:
            action = choice.action_for(item.action, item.p_spam)
            moved += action == "move"
            flagged += action == "flag"
        return moved, flagged

    def summary(self) -> str:
        """ "SpamGuard would move 15 and flag 12 of 41 messages"."""
        return (
            f"SpamGuard would move {self.moves} and flag {self.flags} of {self.total} "
            f"{'message' if self.total == 1 else 'messages'}"
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """What the user chose after the review.

    ``mode``: "apply" does what the review showed; "above" moves to Junk only messages scored
    at or above ``move_above`` and flags the other would-be moves; "flag" moves nothing and
    flags what would have gone to Junk (a rule's move to another folder is left undone).
    """

    mode: Literal["apply", "above", "flag"] = "apply"
    move_above: float | None = None

    def __post_init__(self) -> None:
        if self.mode == "above" and (self.move_above is None or not 0 < self.move_above <= 1):
            raise ValueError(f"move_above must be in (0, 1], not {self.move_above!r}")

    def describe(self) -> str:
        if self.mode == "above":
            assert self.move_above is not None
            return f"moves only at or above {self.move_above:.0%}"
        return "flag only" if self.mode == "flag" else "apply"

    def action_for(self, action: ReviewAction, p_spam: float) -> ReviewAction:
        """What becomes of a reviewed message's action under this choice."""
        if action != "move" or self.mode == "apply":
            return action
        if self.mode == "above":
            assert self.move_above is not None
            return "move" if p_spam >= self.move_above else "flag"
        return "flag"

    def adjust(self, plan: Plan, settings: AccountSettings) -> Plan:
        """``plan`` as this choice has it: moves to Junk below the chosen score (or all of
        them, for "flag") become flags; in "flag" a rule's move to a folder is left undone."""
        if self.mode == "apply" or not plan.moves:
            return plan
        why = f"first scan: {self.describe()}"
        actions: list[Action] = []
        flagged = False
        for action in plan.actions:
            if action.kind == "junk" and self.action_for("move", plan.p_spam) == "flag":
                actions.append(
                    Action("flag", f"{action.reason}; {why}", flags=flag_flags(settings))
                )
                flagged = True
            elif action.kind == "move" and self.mode == "flag":
                actions.append(Action("leave", f"{action.reason}; {why}"))
            else:
                actions.append(action)
        verdict = "flag" if flagged and plan.verdict == "spam" else plan.verdict
        return replace(plan, actions=tuple(actions), verdict=verdict)

    def hook(self, settings: AccountSettings) -> PlanHook:
        """The worker's plan hook that applies this choice."""

        def adjust(folder: str, uid: int, message: Message, plan: Plan) -> Plan:
            return self.adjust(plan, settings)

        return adjust


def chain(*hooks: PlanHook | None) -> PlanHook | None:
    """One plan hook that runs ``hooks`` in order (None ones left out)."""
    given = [h for h in hooks if h is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def run(folder: str, uid: int, message: Message, plan: Plan) -> Plan:
        for hook in given:
            plan = hook(folder, uid, message, plan)
        return plan

    return run


class ReviewRecorder:
    """The worker's plan hook during the review's dry run: keeps each plan, changes none."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.model_version = ""  # set by whoever ran the dry run
        self._items: dict[tuple[str, int], ReviewItem] = {}

    def __call__(self, folder: str, uid: int, message: Message, plan: Plan) -> Plan:
        if plan.moves:
            action: ReviewAction = "move"
        elif any(a.kind in ("flag", "keyword") for a in plan.actions):
            action = "flag"
        else:
            action = "leave"
        self._items[(folder, uid)] = ReviewItem(
            folder=folder,
            uid=uid,
            message_id=message.message_id,
            content_hash=message.content_hash,
            subject=message.subject,
            from_addr=message.from_addr,
            p_spam=plan.p_spam,
            action=action,
            plan=plan.describe(),
            protected=plan.protected,
        )
        return plan

    def review(self) -> Review:
        return Review(self.account, tuple(self._items.values()), self.model_version)
