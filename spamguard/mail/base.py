"""The `MailStore` protocol every mail backend (IMAP, Maildir) implements, and its values."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "JUNK_NAMES",
    "SENT_NAMES",
    "FetchedMessage",
    "FolderInfo",
    "FolderStatus",
    "MailStore",
    "MoveResult",
    "content_hash",
]

# Tried in order when no folder carries the SPECIAL-USE flag (RFC 6154).
JUNK_NAMES = (
    "Junk",
    "Spam",
    "[Gmail]/Spam",
    "[Google Mail]/Spam",
    "Junk E-mail",
    "Junk Email",
    "Junk-E-Mail",
    "Bulk Mail",
    "Bulk",
    "Spamverdacht",
    "INBOX.Junk",
    "INBOX.Spam",
    "INBOX/Junk",
    "INBOX/Spam",
)
SENT_NAMES = (
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "[Gmail]/Sent Mail",
    "[Google Mail]/Sent Mail",
    "Gesendet",
    "Gesendete Elemente",
    "INBOX.Sent",
    "INBOX/Sent",
)

DELETED = "\\Deleted"
SEEN = "\\Seen"
FLAGGED = "\\Flagged"


def content_hash(raw: bytes) -> str:
    """The same hash `parse_message` gives: identity of the bytes we fetched."""
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    flags: tuple[str, ...] = ()  # e.g. ("\\Junk", "\\HasNoChildren")


@dataclass(frozen=True, slots=True)
class FolderStatus:
    name: str
    uidvalidity: int
    uidnext: int
    exists: int = 0
    highestmodseq: int | None = None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """At most `max_bytes` of one message, fetched without setting \\Seen."""

    uid: int
    raw: bytes
    flags: frozenset[str]
    size: int  # the full size on the server

    @property
    def truncated(self) -> bool:
        return len(self.raw) < self.size


@dataclass(frozen=True, slots=True)
class MoveResult:
    """How a move went. `source_removed` is False when the copy is left marked \\Deleted."""

    method: Literal["move", "copy+expunge", "copy+deleted", "rename"]
    dst_uid: int | None
    dst_uidvalidity: int | None
    source_removed: bool


@runtime_checkable
class MailStore(Protocol):
    """A mailbox we can sync, read and change. One owner (thread) per instance.

    Errors: `AuthError`/`TLSError`/`CredentialError` are permanent until the user acts;
    `ConnectionLostError` is transient (reconnect); `FolderMissingError` names the folder.
    """

    @property
    def capabilities(self) -> frozenset[str]: ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def list_folders(self) -> list[FolderInfo]: ...

    def create_folder(self, name: str) -> None: ...

    def select(self, folder: str) -> FolderStatus: ...

    def status(self, folder: str) -> FolderStatus: ...

    def uids(self, folder: str, *, min_uid: int = 1, since: date | None = None) -> list[int]: ...

    def fetch(self, folder: str, uids: Sequence[int], max_bytes: int) -> list[FetchedMessage]: ...

    def search_message(self, folder: str, message_id: str, subject: str = "") -> list[int]: ...

    def move(self, folder: str, uid: int, dst: str) -> MoveResult: ...

    def add_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None: ...

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None: ...

    def expunge_one(self, folder: str, uid: int) -> bool:
        """Mark ``uid`` \\Deleted and expunge exactly it when the server allows (UIDPLUS)."""
        ...

    def wait(
        self,
        folder: str,
        timeout: float,
        should_stop: Callable[[], bool],
        on_ready: Callable[[], None] | None = None,
    ) -> bool:
        """Block until ``folder`` may have new mail (True), ``timeout`` or ``should_stop()``
        (False). ``on_ready`` is called once the store is watching (IDLE accepted): mail that
        arrives after that call wakes the wait, mail from before it does not."""
        ...

    def noop(self) -> None: ...
