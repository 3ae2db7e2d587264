"""`ImapMailStore`: one IMAP connection with TLS pinning, capped fetch, MOVE fallbacks, IDLE.

Over 600 lines on purpose: `ImapMailStore` implements the whole `MailStore` protocol over one
connection, with the server quirks each method must survive.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import date
from typing import Any, Literal

from spamguard.config import AccountSettings, format_fingerprint
from spamguard.errors import (
    AuthError,
    ConnectionLostError,
    FolderMissingError,
    MailStoreError,
    TLSError,
)
from spamguard.mail.base import (
    DELETED,
    BatchMoveResult,
    FetchedMessage,
    FolderInfo,
    FolderStatus,
    MoveResult,
    failpoint,
    search_prefix,
)
from spamguard.mail.credentials import login

__all__ = ["ImapMailStore"]

log = logging.getLogger(__name__)

_COPYUID_RE = re.compile(rb"COPYUID\s+(\d+)\s+(\S+)\s+(\S+)", re.IGNORECASE)
# What Dovecot, Cyrus, Gmail and Exchange say when a mailbox is not there.
_MISSING_RE = re.compile(
    r"NONEXISTENT|doesn't exist|does not exist|no such mailbox|not found|unknown mailbox|TRYCREATE",
    re.IGNORECASE,
)
_TRANSIENT = (imaplib.IMAP4.abort, OSError, EOFError, ssl.SSLError)
# UIDs per MOVE/COPY/STORE command: servers cap the command line (Dovecot at 64 KB).
BATCH_CHUNK = 500


class ImapMailStore:
    """An IMAP account behind the `MailStore` protocol.

    Not thread-safe (like imapclient itself): the account worker that made it owns it.
    Every method raises `ConnectionLostError` when the connection dropped; the owner
    reconnects with `connect()`.
    """

    def __init__(
        self,
        settings: AccountSettings,
        *,
        client_factory: Callable[..., Any] | None = None,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        # EXAMINE instead of SELECT: the server refuses any change (first-sync learning reads).
        self.read_only = read_only
        self._client_factory = client_factory
        self._client: Any = None
        self._caps: frozenset[str] = frozenset()
        self._selected: str | None = None
        self._status: dict[str, FolderStatus] = {}

    # -- connection ------------------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        return self._caps

    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        """Connect, check TLS (verified or pinned), log in, learn capabilities."""

        self.close()
        s = self.settings
        client = self._open_tls_checked()
        try:
            with self._guard("log in"):
                login(client, s)
                caps = {
                    c.decode("ascii", "replace").upper() if isinstance(c, bytes) else str(c).upper()
                    for c in client.capabilities()
                }
                if "CONDSTORE" in caps and "ENABLE" in caps:
                    client.enable("CONDSTORE")
        except BaseException:
            _shutdown_quietly(client)
            raise
        self._client = client
        self._caps = frozenset(caps)
        self._selected = None
        log.info(
            "connected to %s:%s as %s (%s)",
            s.host,
            s.port,
            s.username,
            " ".join(sorted(self._caps)),
        )

    def close(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        if client is None:
            return
        with contextlib.suppress(Exception):  # a dead connection cannot log out; drop it
            client.logout()
        _shutdown_quietly(client)

    def __enter__(self) -> ImapMailStore:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_client(self, ctx: ssl.SSLContext | None) -> Any:
        s = self.settings
        if self._client_factory is not None:
            return self._client_factory(s, ctx)
        from imapclient import IMAPClient

        try:
            return IMAPClient(
                s.host, port=s.port, ssl=s.security == "tls", ssl_context=ctx, timeout=s.timeout
            )
        except ssl.SSLCertVerificationError:
            raise
        except (ssl.SSLError, OSError, imaplib.IMAP4.abort) as exc:
            raise ConnectionLostError(
                f"cannot connect to {s.host}:{s.port} for account {s.name!r}: {_why(exc)}"
            ) from None

    def _open_tls_checked(self) -> Any:
        s = self.settings
        pinned = s.tls_fingerprint
        ctx: ssl.SSLContext | None = None
        if s.security != "plain":
            ctx = ssl.create_default_context()
            if pinned:
                # The pin replaces CA and host-name checks: self-signed certificates have neither.
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        try:
            client = self._make_client(ctx)
            if s.security == "starttls":
                try:
                    client.starttls(ctx)
                except ssl.SSLCertVerificationError:
                    _shutdown_quietly(client)
                    raise
                except Exception as exc:
                    _shutdown_quietly(client)
                    raise MailStoreError(
                        f"{s.host}:{s.port} did not start TLS (STARTTLS): {_why(exc)}; "
                        'check security = "tls"/"starttls" and the port'
                    ) from None
        except ssl.SSLCertVerificationError as exc:
            der = self._probe_certificate()
            fingerprint = hashlib.sha256(der).hexdigest() if der else None
            shown = format_fingerprint(fingerprint) if fingerprint else "unknown"
            raise TLSError(
                f"the TLS certificate of {s.host}:{s.port} could not be verified "
                f"({exc.verify_message or 'untrusted'}); SpamGuard did not send your password. "
                f"If this is your own server and you trust it, pin its certificate in the config "
                f'under [accounts.{s.name}]: tls_fingerprint = "{shown}"',
                fingerprint=shown,
                certificate=describe_certificate(der) if der else None,
            ) from None
        if pinned and s.security != "plain":
            der = client.socket().getpeercert(binary_form=True)
            actual = hashlib.sha256(der or b"").hexdigest()
            if "sha256:" + actual != pinned:
                _shutdown_quietly(client)
                shown = format_fingerprint(actual)
                raise TLSError(
                    f"the TLS certificate of {s.host}:{s.port} does not match the pinned "
                    f"tls_fingerprint (the server now shows {shown}); SpamGuard did not send your "
                    "password. If the server's certificate was renewed on purpose, pin the new one",
                    fingerprint=shown,
                )
        return client

    def _probe_certificate(self) -> bytes | None:
        """The server certificate (DER), read without trusting it, to show the user."""
        s = self.settings
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((s.host, s.port), timeout=s.timeout) as raw:
                if s.security == "starttls":
                    reader = raw.makefile("rb")
                    try:
                        reader.readline()
                        raw.sendall(b"a1 STARTTLS\r\n")
                        while not reader.readline().startswith(b"a1 "):
                            pass
                    finally:
                        reader.close()
                with ctx.wrap_socket(raw, server_hostname=s.host) as tls:
                    der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None
        return der or None

    @contextmanager
    def _guard(self, what: str, folder: str | None = None) -> Iterator[None]:
        """Turn imapclient/socket errors into our typed errors, without secrets."""
        from imapclient.exceptions import IMAPClientError, LoginError

        try:
            yield
        except (AuthError, MailStoreError):
            raise
        except LoginError:
            raise AuthError(f"{self.settings.host} refused the login") from None
        except imaplib.IMAP4.readonly:
            # imaplib's READ-ONLY is a kind of `abort`, but the connection is fine: the
            # server lets this account read the folder and not change it. imaplib keeps the
            # READ-ONLY response and would raise again: start the next command afresh.
            self._drop()
            where = f"folder {folder!r}" if folder else "this folder"
            raise MailStoreError(
                f"{where} on {self.settings.host} is read-only for {self.settings.username}: "
                "SpamGuard cannot move or flag mail there; give the account write access to "
                "it, or stop watching it"
            ) from None
        except _TRANSIENT as exc:
            self._drop()
            raise ConnectionLostError(
                f"lost the connection to {self.settings.host} while trying to {what}: {_why(exc)}"
            ) from None
        except IMAPClientError as exc:
            text = _why(exc)
            if folder is not None and _MISSING_RE.search(text):
                raise FolderMissingError(
                    f"folder {folder!r} does not exist on {self.settings.host} "
                    f"(account {self.settings.name!r}); it may have been renamed or deleted",
                    folder=folder,
                ) from None
            if "BYE" in text.upper() or "socket" in text.lower():
                self._drop()
                raise ConnectionLostError(
                    f"{self.settings.host} closed the connection: {text}"
                ) from None
            raise MailStoreError(f"{self.settings.host} refused to {what}: {text}") from None

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        if client is not None:
            _shutdown_quietly(client)

    def _c(self) -> Any:
        if self._client is None:
            raise ConnectionLostError(f"not connected to {self.settings.host}")
        return self._client

    # -- folders ---------------------------------------------------------------------------------

    def list_folders(self) -> list[FolderInfo]:
        with self._guard("list folders"):
            rows = self._c().list_folders()
        out = []
        for flags, _delimiter, name in rows:
            out.append(FolderInfo(str(name), tuple(_text(f) for f in flags)))
        return out

    def create_folder(self, name: str) -> None:
        with self._guard(f"create folder {name!r}"):
            self._c().create_folder(name)
            with contextlib.suppress(Exception):  # a courtesy to other clients, not needed by us
                self._c().subscribe_folder(name)

    def select(self, folder: str) -> FolderStatus:
        with self._guard(f"open folder {folder!r}", folder):
            info = self._c().select_folder(folder, readonly=self.read_only)
        self._selected = folder
        status = FolderStatus(
            name=folder,
            uidvalidity=int(info.get(b"UIDVALIDITY", 0)),
            uidnext=int(info.get(b"UIDNEXT", 0)),
            exists=int(info.get(b"EXISTS", 0)),
            highestmodseq=int(info[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in info else None,
        )
        self._status[folder] = status
        return status

    def _ensure(self, folder: str) -> None:
        if self._selected != folder:
            self.select(folder)

    def status(self, folder: str) -> FolderStatus:
        what = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
        if "CONDSTORE" in self._caps:
            what.append(b"HIGHESTMODSEQ")
        with self._guard(f"read the status of {folder!r}", folder):
            info = self._c().folder_status(folder, what)
        return FolderStatus(
            name=folder,
            uidvalidity=int(info.get(b"UIDVALIDITY", 0)),
            uidnext=int(info.get(b"UIDNEXT", 0)),
            exists=int(info.get(b"MESSAGES", 0)),
            highestmodseq=int(info[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in info else None,
        )

    # -- reading ---------------------------------------------------------------------------------

    def uids(self, folder: str, *, min_uid: int = 1, since: date | None = None) -> list[int]:
        self._ensure(folder)
        criteria: list[Any] = []
        if min_uid > 1:
            criteria += ["UID", f"{min_uid}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        with self._guard(f"search {folder!r}", folder):
            found = self._c().search(criteria or ["ALL"])
        # "UID n:*" always matches the last message, even when its UID is below n.
        return sorted(int(u) for u in found if int(u) >= min_uid)

    def fetch(self, folder: str, uids: Sequence[int], max_bytes: int) -> list[FetchedMessage]:
        if not uids:
            return []
        self._ensure(folder)
        # BODY.PEEK never sets \Seen; the partial range keeps a 50 MB mail as cheap as a small one.
        part = f"BODY.PEEK[]<0.{int(max_bytes)}>"
        with self._guard(f"fetch from {folder!r}", folder):
            data = self._c().fetch(list(uids), [part, "FLAGS", "RFC822.SIZE"])
        out = []
        for uid in uids:
            item = data.get(uid)
            if not item:
                continue  # expunged meanwhile by another client
            raw = b""
            for key, value in item.items():
                if isinstance(key, bytes) and key.startswith(b"BODY[") and isinstance(value, bytes):
                    raw = value
            flags = frozenset(_text(f) for f in item.get(b"FLAGS", ()))
            out.append(FetchedMessage(uid, raw, flags, int(item.get(b"RFC822.SIZE", len(raw)))))
        return out

    def fetch_flags(
        self, folder: str, uids: Sequence[int], *, changed_since: int | None = None
    ) -> dict[int, frozenset[str]]:
        """UID -> flags of ``uids`` in ``folder``; with CONDSTORE and ``changed_since`` only
        of those whose flags changed after that MODSEQ (feedback's keyword watch)."""
        if not uids:
            return {}
        self._ensure(folder)
        wanted = list(uids)
        if changed_since is not None and "CONDSTORE" in self._caps:
            # SEARCH MODSEQ names the few changed messages in one round trip.
            with self._guard(f"search changed flags in {folder!r}", folder):
                found = self._c().search(["MODSEQ", str(int(changed_since) + 1)])
            changed = {int(u) for u in found}
            wanted = [u for u in wanted if u in changed]
        out: dict[int, frozenset[str]] = {}
        # Bounded command lines: servers cap them (Dovecot at 64 KB).
        for i in range(0, len(wanted), 2000):
            with self._guard(f"read flags in {folder!r}", folder):
                data = self._c().fetch(wanted[i : i + 2000], ["FLAGS"])
            for uid, item in data.items():
                out[int(uid)] = frozenset(_text(f) for f in item.get(b"FLAGS", ()))
        return out

    def search_message(self, folder: str, message_id: str, subject: str = "") -> list[int]:
        """UIDs whose Message-ID (else Subject) contains the given one: candidates only,
        callers confirm each by its content hash."""
        self._ensure(folder)
        # Both are the sender's to choose: a 70 KB Message-ID or a 1 MB Subject is refused by
        # servers ("Too long argument") and would make the message impossible to find again.
        # HEADER matches substrings, so a prefix finds a superset and the hash decides.
        message_id = search_prefix(message_id)
        subject = search_prefix(subject)
        if message_id:
            criteria: list[Any] = ["HEADER", "Message-ID", message_id]
        elif subject:
            criteria = ["HEADER", "Subject", subject]
        else:
            criteria = ["ALL"]
        charset = None if all(ord(ch) < 128 for ch in message_id + subject) else "UTF-8"
        with self._guard(f"search {folder!r}", folder):
            return sorted(int(u) for u in self._c().search(criteria, charset=charset))

    # -- changing --------------------------------------------------------------------------------

    def move(self, folder: str, uid: int, dst: str) -> MoveResult:
        """UID MOVE; else COPY and, only with a COPYUID, STORE \\Deleted + UID EXPUNGE of
        exactly that UID; else COPY and mark \\Deleted, leaving the expunge to the user's client.
        """
        self._ensure(folder)
        client = self._c()
        # imaplib files the [COPYUID ...] response code of MOVE and COPY under this key.
        imap = client._imap
        if "MOVE" in self._caps:
            imap.untagged_responses.pop("COPYUID", None)
            with self._guard(f"move a message to {dst!r}", dst):
                response = client.move([uid], dst)
            failpoint("after_move")
            untagged = imap.untagged_responses.pop("COPYUID", None) or []
            copyuid = _copyuid(response, untagged, uid)
            return MoveResult(
                "move", copyuid[1] if copyuid else None, copyuid[0] if copyuid else None, True
            )
        imap.untagged_responses.pop("COPYUID", None)
        with self._guard(f"copy a message to {dst!r}", dst):
            response = client.copy([uid], dst)
        failpoint("after_copy")
        copyuid = _copyuid(response, imap.untagged_responses.pop("COPYUID", None) or [], uid)
        with self._guard(f"mark a copied message \\Deleted in {folder!r}", folder):
            client.add_flags([uid], [DELETED], silent=True)
        failpoint("after_mark_deleted")
        if copyuid is not None and "UIDPLUS" in self._caps:
            with self._guard(f"expunge the moved message from {folder!r}", folder):
                client.uid_expunge([uid])
            return MoveResult("copy+expunge", copyuid[1], copyuid[0], True)
        return MoveResult(
            "copy+deleted", copyuid[1] if copyuid else None, copyuid[0] if copyuid else None, False
        )

    def move_many(self, folder: str, uids: Sequence[int], dst: str) -> BatchMoveResult:
        """`move` for many messages of one folder: one UID MOVE (or UID COPY, STORE \\Deleted,
        UID EXPUNGE) per `BATCH_CHUNK` UIDs. UIDs another client expunged meanwhile are
        skipped by the server and are missing from ``dst_uids``."""
        self._ensure(folder)
        client = self._c()
        imap = client._imap
        wanted = sorted(set(uids))
        mapped: dict[int, int] = {}
        dst_uidvalidity: int | None = None
        copyuid = False
        method: Literal["move", "copy+expunge", "copy+deleted"] = (
            "move" if "MOVE" in self._caps else "copy+expunge"
        )
        for i in range(0, len(wanted), BATCH_CHUNK):
            chunk = wanted[i : i + BATCH_CHUNK]
            imap.untagged_responses.pop("COPYUID", None)
            if method == "move":
                with self._guard(f"move {len(chunk)} messages to {dst!r}", dst):
                    response = client.move(chunk, dst)
                failpoint("after_move")
            else:
                with self._guard(f"copy {len(chunk)} messages to {dst!r}", dst):
                    response = client.copy(chunk, dst)
                failpoint("after_copy")
            found = _copyuid_map(response, imap.untagged_responses.pop("COPYUID", None) or [])
            if found is not None:
                copyuid = True
                dst_uidvalidity = found[0]
                mapped.update((u, d) for u, d in found[1].items() if u in chunk)
            if method != "move":
                with self._guard(f"mark copied messages \\Deleted in {folder!r}", folder):
                    client.add_flags(chunk, [DELETED], silent=True)
                failpoint("after_mark_deleted")
                if found is not None and "UIDPLUS" in self._caps:
                    with self._guard(f"expunge the moved messages from {folder!r}", folder):
                        client.uid_expunge(chunk)
                else:
                    method = "copy+deleted"
        return BatchMoveResult(method, mapped, dst_uidvalidity, copyuid, method != "copy+deleted")

    def copy_many(self, folder: str, uids: Sequence[int], dst: str) -> None:
        """UID COPY, `BATCH_CHUNK` UIDs per command (the IMAP bench's scratch copy)."""
        self._ensure(folder)
        wanted = sorted(set(uids))
        for i in range(0, len(wanted), BATCH_CHUNK):
            with self._guard(f"copy messages to {dst!r}", dst):
                self._c().copy(wanted[i : i + BATCH_CHUNK], dst)

    def delete_folder(self, name: str) -> None:
        """Delete a folder SpamGuard made (the bench's scratch folders), mail and all."""
        if self._selected == name:
            with self._guard(f"close folder {name!r}", name):
                self._c().close_folder()
            self._selected = None
        with self._guard(f"delete folder {name!r}", name):
            self._c().delete_folder(name)

    def add_flags_many(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        """STORE +FLAGS.SILENT over many UIDs, `BATCH_CHUNK` per command."""
        self._ensure(folder)
        wanted = sorted(set(uids))
        for i in range(0, len(wanted), BATCH_CHUNK):
            with self._guard(f"set flags in {folder!r}", folder):
                self._c().add_flags(wanted[i : i + BATCH_CHUNK], list(flags), silent=True)

    def expunge_one(self, folder: str, uid: int) -> bool:
        self._ensure(folder)
        with self._guard(f"remove a moved message from {folder!r}", folder):
            self._c().add_flags([uid], [DELETED], silent=True)
            if "UIDPLUS" in self._caps:
                self._c().uid_expunge([uid])
                return True
        return False

    def add_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        self._ensure(folder)
        with self._guard(f"set flags in {folder!r}", folder):
            self._c().add_flags([uid], list(flags), silent=True)

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        self._ensure(folder)
        with self._guard(f"clear flags in {folder!r}", folder):
            self._c().remove_flags([uid], list(flags), silent=True)

    # -- waiting ---------------------------------------------------------------------------------

    def noop(self) -> None:
        with self._guard("keep the connection alive"):
            self._c().noop()

    def wait(
        self,
        folder: str,
        timeout: float,
        should_stop: Callable[[], bool],
        on_ready: Callable[[], None] | None = None,
    ) -> bool:
        """Block until ``folder`` may have new mail (True), ``timeout`` passes or
        ``should_stop()`` turns true (False). IDLE when offered, else NOOP polling.
        ``on_ready`` runs once the server has accepted IDLE (or polling has begun)."""
        self._ensure(folder)
        deadline = time.monotonic() + timeout
        if "IDLE" not in self._caps:
            if on_ready is not None:
                on_ready()
            return self._poll(folder, deadline, should_stop)
        client = self._c()
        with self._guard(f"wait for mail in {folder!r} (IDLE)", folder):
            client.idle()
        changed = False
        if on_ready is not None:
            on_ready()
        try:
            quick_empty = 0
            while not should_stop():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                step = min(1.0, remaining)
                started = time.monotonic()
                with self._guard(f"wait for mail in {folder!r} (IDLE)", folder):
                    responses = client.idle_check(timeout=step)
                if _has_bye(responses):
                    self._drop()
                    raise ConnectionLostError(f"{self.settings.host} ended the session during IDLE")
                if _has_new_mail(responses):
                    changed = True
                    break
                if not responses and time.monotonic() - started < step / 2:
                    # imapclient returns [] at once on EOF: the server went away.
                    quick_empty += 1
                    if quick_empty >= 3:
                        break
                else:
                    quick_empty = 0
        finally:
            if self._client is not None:
                with self._guard(f"end IDLE in {folder!r}", folder):
                    _, trailing = client.idle_done()
                changed = changed or _has_new_mail(trailing)
        return changed

    def _poll(self, folder: str, deadline: float, should_stop: Callable[[], bool]) -> bool:
        # Without IDLE a NOOP is how a server tells us about new mail; it also keeps us alive.
        interval = max(1.0, min(self.settings.poll_interval, 30.0))
        next_poll = time.monotonic() + interval
        while not should_stop():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_poll:
                with self._guard(f"poll {folder!r}", folder):
                    _, responses = self._c().noop()
                if _has_new_mail(responses):
                    return True
                next_poll = now + interval
            time.sleep(max(0.0, min(0.25, deadline - now, next_poll - now)))
        return False


def _copyuid(response: Any, untagged: list[Any], uid: int) -> tuple[int, int] | None:
    """(dst uidvalidity, dst uid) from a COPYUID response code, for the single ``uid`` moved."""
    found = _copyuid_map(response, untagged)
    if found is None or uid not in found[1]:
        return None
    return found[0], found[1][uid]


def _copyuid_map(response: Any, untagged: list[Any]) -> tuple[int, dict[int, int]] | None:
    """(dst uidvalidity, {src uid: dst uid}) from every COPYUID response code of a command."""
    texts = [response if isinstance(response, bytes) else str(response).encode()]
    texts += [u if isinstance(u, bytes) else str(u).encode() for u in untagged]
    uidvalidity: int | None = None
    mapping: dict[int, int] = {}
    for text in texts:
        match = _COPYUID_RE.search(text) or re.match(rb"\s*(\d+)\s+(\S+)\s+(\S+)", text)
        if not match:
            continue
        try:
            src = _uid_set(match.group(2))
            dst = _uid_set(match.group(3))
        except ValueError:
            continue
        if len(src) != len(dst):
            continue
        uidvalidity = int(match.group(1))
        # RFC 4315: the two sets list the messages in the same order.
        mapping.update(zip(src, dst, strict=True))
    return None if uidvalidity is None else (uidvalidity, mapping)


def _uid_set(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.decode("ascii").strip("]").split(","):
        if ":" in part:
            lo, hi = (int(x) for x in part.split(":"))
            out.extend(range(min(lo, hi), max(lo, hi) + 1))
        else:
            out.append(int(part))
    return out


def _has_new_mail(responses: Sequence[Any]) -> bool:
    return any(
        isinstance(r, tuple) and len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses
    )


def _has_bye(responses: Sequence[Any]) -> bool:
    return any(isinstance(r, tuple) and r and r[0] == b"BYE" for r in responses)


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


def _shutdown_quietly(client: Any) -> None:
    with suppress(Exception):
        client.shutdown()


def describe_certificate(der: bytes) -> dict[str, str] | None:
    """Subject, issuer and validity of a DER certificate, in words a person can compare."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - a dependency of keyring's Secret Service backend
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return {
        "subject": cert.subject.rfc4514_string() or "(empty)",
        "issuer": cert.issuer.rfc4514_string() or "(empty)",
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"),
        "self_signed": "yes" if cert.subject == cert.issuer else "no",
    }
