"""`MaildirStore`: the `MailStore` protocol over a local Maildir++ tree (demo, mbsync users)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TypedDict

from spamguard.errors import FolderMissingError, MailStoreError
from spamguard.mail.base import (
    FetchedMessage,
    FolderInfo,
    FolderStatus,
    MoveResult,
    search_prefix,
)

__all__ = ["MaildirStore"]

# Maildir info letters (https://cr.yp.to/proto/maildir.html) and the IMAP flags they mean.
_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
_FLAGS = {v: k for k, v in _LETTERS.items()}
_UIDLIST = "spamguard-uidlist.json"
_KEYWORDS = "dovecot-keywords"  # Dovecot's file: keyword n is info letter chr(ord('a') + n)


class _UidState(TypedDict):
    uidvalidity: int
    next: int
    uids: dict[str, int]


class MaildirStore:
    """A Maildir++ tree: INBOX is the root, other folders are ``.Name`` subdirectories.

    UIDs are kept in a small per-folder JSON file so the journal, undo and sync work as
    they do over IMAP. A move is one `rename`, atomic on one file system. One owner.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()
        self._uids: dict[str, _UidState] = {}

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"MOVE", "UIDPLUS"})

    def connect(self) -> None:
        if not (self.root / "cur").is_dir():
            raise MailStoreError(f"{self.root} is not a Maildir (it has no cur/ folder)")

    def close(self) -> None:
        self._uids.clear()

    # -- folders ---------------------------------------------------------------------------------

    def _dir(self, folder: str) -> Path:
        if folder.upper() == "INBOX":
            return self.root
        return self.root / ("." + folder.replace("/", "."))

    def _exists(self, folder: str) -> Path:
        path = self._dir(folder)
        if not (path / "cur").is_dir():
            raise FolderMissingError(
                f"folder {folder!r} does not exist in {self.root}", folder=folder
            )
        return path

    def list_folders(self) -> list[FolderInfo]:
        out = [FolderInfo("INBOX")]
        for child in sorted(self.root.iterdir()):
            if child.name.startswith(".") and (child / "cur").is_dir():
                name = child.name[1:].replace(".", "/")
                special = {"junk": "\\Junk", "spam": "\\Junk", "sent": "\\Sent"}.get(name.lower())
                out.append(FolderInfo(name, (special,) if special else ()))
        return out

    def create_folder(self, name: str) -> None:
        path = self._dir(name)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        (path / "maildirfolder").touch()

    def _files(self, folder: str) -> dict[str, Path]:
        """{base name: path}; the base name (before ":2,") survives flag changes."""
        path = self._exists(folder)
        files: dict[str, Path] = {}
        for sub in ("new", "cur"):
            for entry in os.scandir(path / sub):
                if entry.is_file() and not entry.name.startswith("."):
                    files[entry.name.split(":", 1)[0]] = Path(entry.path)
        return files

    def _state(self, folder: str) -> tuple[_UidState, dict[str, Path]]:
        files = self._files(folder)
        state_file = self._dir(folder) / _UIDLIST
        try:
            state: _UidState = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {"uidvalidity": int(time.time()), "next": 1, "uids": {}}
        uids = state["uids"]
        changed = False
        for gone in set(uids) - set(files):
            del uids[gone]
            changed = True
        new = sorted(set(files) - set(uids), key=lambda b: (files[b].stat().st_mtime, b))
        for base in new:
            uids[base] = state["next"]
            state["next"] = uids[base] + 1
            changed = True
        if changed or not state_file.exists():
            tmp = state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(state_file)
        return state, files

    def _by_uid(self, folder: str) -> dict[int, Path]:
        state, files = self._state(folder)
        return {uid: files[base] for base, uid in state["uids"].items()}

    def select(self, folder: str) -> FolderStatus:
        state, files = self._state(folder)
        return FolderStatus(folder, state["uidvalidity"], state["next"], len(files))

    status = select

    # -- reading ---------------------------------------------------------------------------------

    def uids(self, folder: str, *, min_uid: int = 1, since: date | None = None) -> list[int]:
        found = self._by_uid(folder)
        cutoff = datetime.combine(since, datetime.min.time()).timestamp() if since else None
        return sorted(
            u
            for u, p in found.items()
            if u >= min_uid and (cutoff is None or p.stat().st_mtime >= cutoff)
        )

    def fetch(self, folder: str, uids: Sequence[int], max_bytes: int) -> list[FetchedMessage]:
        found = self._by_uid(folder)
        keywords = self._keywords(folder)
        out = []
        for uid in uids:
            path = found.get(uid)
            if path is None:
                continue
            try:
                with path.open("rb") as fh:
                    raw = fh.read(max_bytes)
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # moved by another client meanwhile
            out.append(FetchedMessage(uid, raw, self._flags_of(path, keywords), size))
        return out

    def search_message(self, folder: str, message_id: str, subject: str = "") -> list[int]:
        message_id, subject = search_prefix(message_id), search_prefix(subject)
        needle = ("message-id", message_id) if message_id else ("subject", subject)
        out = []
        for uid, path in self._by_uid(folder).items():
            if not needle[1]:
                out.append(uid)
                continue
            try:
                with path.open("rb") as fh:
                    head = fh.read(64 * 1024).split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
            except FileNotFoundError:
                continue
            for line in head.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition(":")
                if name.strip().lower() == needle[0] and needle[1] in value:
                    out.append(uid)
                    break
        return sorted(out)

    # -- flags -----------------------------------------------------------------------------------

    def _keywords(self, folder: str) -> list[str]:
        try:
            lines = (self._dir(folder) / _KEYWORDS).read_text().splitlines()
        except OSError:
            lines = []
        table = [""] * 26
        for line in lines:
            number, _, word = line.partition(" ")
            if number.isdigit() and int(number) < 26:
                table[int(number)] = word
        return table

    def _letter(self, folder: str, keyword: str) -> str:
        table = self._keywords(folder)
        if keyword in table:
            return chr(ord("a") + table.index(keyword))
        if "" not in table:
            raise MailStoreError(f"folder {folder!r} has no room for another keyword")
        slot = table.index("")
        table[slot] = keyword
        text = "".join(f"{i} {w}\n" for i, w in enumerate(table) if w)
        tmp = self._dir(folder) / (_KEYWORDS + ".tmp")
        tmp.write_text(text)
        tmp.replace(self._dir(folder) / _KEYWORDS)
        return chr(ord("a") + slot)

    @staticmethod
    def _info(path: Path) -> str:
        _, _, info = path.name.partition(":2,")
        return info

    def _flags_of(self, path: Path, keywords: list[str]) -> frozenset[str]:
        out = set()
        for ch in self._info(path):
            if ch in _LETTERS:
                out.add(_LETTERS[ch])
            elif "a" <= ch <= "z" and keywords and keywords[ord(ch) - ord("a")]:
                out.add(keywords[ord(ch) - ord("a")])
        return frozenset(out)

    def _set_info(self, folder: str, uid: int, change: Callable[[set[str]], None]) -> None:
        path = self._by_uid(folder).get(uid)
        if path is None:
            raise MailStoreError(f"message {uid} is no longer in {folder!r}")
        letters = set(self._info(path))
        change(letters)
        base = path.name.split(":", 1)[0]
        target = path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(letters))}"
        if target != path:
            os.rename(path, target)

    def add_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        letters = {_FLAGS.get(f) or self._letter(folder, f) for f in flags}
        self._set_info(folder, uid, lambda s: s.update(letters))

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        table = self._keywords(folder)
        letters = {_FLAGS[f] for f in flags if f in _FLAGS}
        letters |= {chr(ord("a") + table.index(f)) for f in flags if f in table}
        self._set_info(folder, uid, lambda s: s.difference_update(letters))

    # -- moving ----------------------------------------------------------------------------------

    def move(self, folder: str, uid: int, dst: str) -> MoveResult:
        path = self._by_uid(folder).get(uid)
        if path is None:
            raise MailStoreError(f"message {uid} is no longer in {folder!r}")
        dst_dir = self._exists(dst)
        keywords = self._flags_of(path, self._keywords(folder)) - set(_FLAGS)
        target = dst_dir / path.parent.name / path.name
        # Keyword letters are per folder: re-map them in the destination.
        if keywords:
            base = path.name.split(":", 1)[0]
            letters = {ch for ch in self._info(path) if ch in _LETTERS}
            letters |= {self._letter(dst, k) for k in keywords}
            target = dst_dir / "cur" / f"{base}:2,{''.join(sorted(letters))}"
        os.rename(path, target)  # atomic: the message is in exactly one folder at every instant
        state, _ = self._state(dst)
        dst_uid = state["uids"].get(target.name.split(":", 1)[0])
        return MoveResult("rename", dst_uid, state["uidvalidity"], True)

    def expunge_one(self, folder: str, uid: int) -> bool:
        # Only reached when reconciling a copy that exists elsewhere; renames leave none.
        path = self._by_uid(folder).get(uid)
        if path is not None:
            path.unlink(missing_ok=True)
        return True

    # -- waiting ---------------------------------------------------------------------------------

    def noop(self) -> None:
        self._exists("INBOX")

    def wait(
        self,
        folder: str,
        timeout: float,
        should_stop: Callable[[], bool],
        on_ready: Callable[[], None] | None = None,
    ) -> bool:
        path = self._exists(folder)

        def stamp() -> tuple[float, float]:
            return ((path / "new").stat().st_mtime, (path / "cur").stat().st_mtime)

        before = stamp()
        if on_ready is not None:
            on_ready()
        deadline = time.monotonic() + timeout
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            try:
                if stamp() != before:
                    return True
            except FileNotFoundError:
                raise FolderMissingError(f"folder {folder!r} disappeared", folder=folder) from None
        return False
