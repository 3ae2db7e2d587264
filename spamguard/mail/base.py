"""The `MailStore` protocol every mail backend (IMAP, Maildir) implements, and its values."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "JUNK_NAMES",
    "MAX_SEARCH_CHARS",
    "SENT_NAMES",
    "BatchMoveResult",
    "BatchMoves",
    "FetchedMessage",
    "FolderInfo",
    "FolderStatus",
    "MailStore",
    "MoveResult",
    "content_hash",
    "failpoint",
    "search_prefix",
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


def failpoint(name: str) -> None:
    """Test-only crash injection (SPAMGUARD_FAILPOINT=name[:n]): die like a SIGKILL here."""
    import os

    spec = os.environ.get("SPAMGUARD_FAILPOINT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    left = int(count or "1") - 1
    os.environ["SPAMGUARD_FAILPOINT"] = f"{point}:{left}"
    if left <= 0:
        os._exit(137)


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


@dataclass(frozen=True, slots=True)
class BatchMoveResult:
    """How a move of many messages went. ``dst_uids`` maps source UID -> destination UID for
    the messages the server's COPYUID (UIDPLUS) named; ``copyuid`` says whether the server
    answered with one at all (without it, nothing maps and the messages are found by
    Message-ID when needed)."""

    method: Literal["move", "copy+expunge", "copy+deleted"]
    dst_uids: dict[int, int]
    dst_uidvalidity: int | None
    copyuid: bool
    source_removed: bool


@runtime_checkable
class BatchMoves(Protocol):
    """A `MailStore` that moves and flags many messages of one folder in one command."""

    def move_many(self, folder: str, uids: Sequence[int], dst: str) -> BatchMoveResult: ...

    def add_flags_many(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None: ...


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


#: Longest Message-ID or Subject text sent in a SEARCH (servers cap a command line at 8-64 KB).
MAX_SEARCH_CHARS = 200


def search_prefix(text: str) -> str:
    """At most `MAX_SEARCH_CHARS` of a sender-chosen header value, for a substring search."""
    # Cut at a line break or other control character: folding may differ on the server.
    text = text[:MAX_SEARCH_CHARS]
    for i, ch in enumerate(text):
        if ch in "\r\n\t" or ord(ch) < 32:
            return text[:i].rstrip()
    return text
