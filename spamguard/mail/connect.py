"""Opening an account's mail store: IMAP, or Maildir when the config names one."""

from __future__ import annotations

from spamguard.config import AccountSettings
from spamguard.mail.base import MailStore
from spamguard.mail.imap import ImapMailStore
from spamguard.mail.maildir import MaildirStore

__all__ = [
    "open_mailstore",
]


def open_mailstore(settings: AccountSettings, *, read_only: bool = False) -> MailStore:
    """The default backend for an account: IMAP (Maildir when the config names one).

    ``read_only``: IMAP folders are opened with EXAMINE, so the server refuses any change."""
    if settings.maildir is not None:
        return MaildirStore(settings.maildir)

    return ImapMailStore(settings, read_only=read_only)
