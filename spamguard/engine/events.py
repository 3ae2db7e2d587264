"""What the account workers tell the UI and the CLI: typed events on a thread-safe bus, and
the phases a batch goes through."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PHASES",
    "ActionApplied",
    "ConnectionState",
    "Error",
    "Event",
    "EventBus",
    "MessageScored",
    "Progress",
    "Subscriber",
]

log = logging.getLogger(__name__)


# What `AccountWorker.timings` measures, in the order a batch goes through them.
PHASES = ("fetch", "parse", "score", "learn", "plan", "actions")


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageScored:
    """A message was scored and planned (in a dry run, `plan` is all that happens)."""

    account: str
    folder: str
    uid: int
    message_id: str
    subject: str
    from_addr: str
    p_spam: float
    verdict: str
    stage: str
    model_version: str
    plan: str
    cached: bool
    dry_run: bool = False
    planned: int = 0  # actions the plan holds that change the mailbox (0 for "leave")


@dataclass(frozen=True, slots=True)
class ActionApplied:
    """A journalled action reached the server (state "applied") or was refused ("failed")."""

    account: str
    journal_id: int
    action: str
    src: str
    dst: str | None
    message_id: str
    subject: str
    reason: str
    state: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    account: str
    folder: str
    done: int
    total: int
    phase: Literal["backlog", "new mail", "resync"] = "backlog"
    scope: str = ""  # what a backlog scan looks at, e.g. "the newest 500 messages"


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong; `fatal` means the worker stopped until the user acts."""

    account: str
    message: str
    kind: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionState:
    account: str
    state: Literal[
        "connecting", "connected", "idle", "polling", "reconnecting", "stopped", "failed"
    ]
    detail: str = ""


Event = MessageScored | ActionApplied | Progress | Error | ConnectionState
Subscriber = Callable[[Event], None]


class EventBus:
    """Thread-safe list of subscribers; a failing subscriber never stops a worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r failed", callback)
