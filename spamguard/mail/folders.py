"""Finding an account's Junk and Sent folders: SPECIAL-USE first, then the usual names."""

from __future__ import annotations

from spamguard.config import AccountSettings
from spamguard.errors import FolderMissingError
from spamguard.mail.base import JUNK_NAMES, SENT_NAMES, FolderInfo, MailStore

__all__ = ["find_archive_folder", "find_junk_folder", "find_sent_folder", "locate_junk_folder"]


def _pick(folders: list[FolderInfo], special: str, names: tuple[str, ...]) -> str | None:
    for info in folders:
        if any(f.lower() == special.lower() for f in info.flags):
            return info.name
    by_lower = {info.name.lower(): info.name for info in folders}
    for name in names:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    return None


def find_junk_folder(mail: MailStore, settings: AccountSettings, *, create: bool = True) -> str:
    """The Junk folder's name; created only when the config says ``create_junk = true``
    (with ``create=False``, a dry run: the name it would create, left uncreated).

    Raises `FolderMissingError` (naming what to do) when there is none.
    """
    folders = mail.list_folders()
    names = {f.name for f in folders}
    if settings.junk_folder != "auto":
        if settings.junk_folder in names:
            return settings.junk_folder
        if settings.create_junk:
            if create:
                mail.create_folder(settings.junk_folder)
            return settings.junk_folder
        raise FolderMissingError(
            f"the Junk folder {settings.junk_folder!r} set in the config does not exist on "
            f"{settings.host}; create it, fix junk_folder, or set create_junk = true",
            folder=settings.junk_folder,
        )
    found = _pick(folders, "\\Junk", settings.junk_candidates + JUNK_NAMES)
    if found:
        return found
    if settings.create_junk:
        if create:
            mail.create_folder("Junk")
        return "Junk"
    raise FolderMissingError(
        f"account {settings.name!r} has no Junk folder (none is marked \\Junk and none has a "
        'usual name such as Junk or Spam); set junk_folder = "..." or allow SpamGuard to '
        "create one with create_junk = true. Until then spam is only flagged",
        folder="Junk",
    )


def find_sent_folder(mail: MailStore, settings: AccountSettings) -> str | None:
    folders = mail.list_folders()
    if settings.sent_folder != "auto":
        return (
            settings.sent_folder if any(f.name == settings.sent_folder for f in folders) else None
        )
    return _pick(folders, "\\Sent", SENT_NAMES)


ARCHIVE_NAMES = ("Archive", "Archives", "INBOX/Archive", "INBOX.Archive", "Archiv")


def locate_junk_folder(mail: MailStore, settings: AccountSettings) -> str | None:
    """The Junk folder's name, or None when there is none; never creates one."""
    folders = mail.list_folders()
    if settings.junk_folder != "auto":
        known = any(f.name == settings.junk_folder for f in folders)
        return settings.junk_folder if known else None
    return _pick(folders, "\\Junk", settings.junk_candidates + JUNK_NAMES)


def find_archive_folder(mail: MailStore) -> str | None:
    """The folder marked \\Archive (RFC 6154), else one with a usual name; None without."""
    return _pick(mail.list_folders(), "\\Archive", ARCHIVE_NAMES)
