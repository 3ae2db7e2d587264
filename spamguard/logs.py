"""Logging: a rotating file in the platform's log folder, with credentials redacted."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
from pathlib import Path
from typing import Final

__all__ = [
    "LOG_FILE",
    "RedactingFilter",
    "add_secret",
    "current_log_file",
    "default_log_dir",
    "log_failure",
    "redact",
    "setup_logging",
]

LOG_FILE: Final = "spamguard.log"
LOG_ENV: Final = "SPAMGUARD_LOG_DIR"
MAX_BYTES: Final = 1_000_000
BACKUPS: Final = 5
# Longer messages are cut: a log line is never the place for a whole message body.
MAX_MESSAGE_CHARS: Final = 2000
REDACTED: Final = "[redacted]"
FORMAT: Final = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"

_KEYS = (
    r"pass(?:word|wd)?|pwd|secret|client_secret|token|access_token|refresh_token|id_token"
    r"|api[_-]?key|auth(?:orization)?_code|code_verifier|password_command_output"
)
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # HTTP headers: Authorization: Bearer xyz / Basic xyz / anything.
    (
        re.compile(
            r"(?i)\b(authorization[\"']?\s*[:=]\s*)(?!\[redacted\])(?:\"[^\"]*\"|'[^']*'|[^\r\n,;}]+)"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{REDACTED}"),
    # SASL XOAUTH2 ("user=...\x01auth=Bearer ...") and OAUTHBEARER ("n,a=...") payloads as the
    # base64 line imaplib sends after AUTHENTICATE (imapclient redacts only the command line).
    (
        re.compile(r"\b(?:dXNlcj[0-9A-Za-z+/]|bixhP|bix[0-9A-Za-z+/]{2})[A-Za-z0-9+/]{12,}={0,2}"),
        REDACTED,
    ),
    (
        re.compile(r"(?i)\b((?:XOAUTH2|OAUTHBEARER|PLAIN|LOGIN)\s+)[A-Za-z0-9+/]{16,}={0,2}"),
        rf"\1{REDACTED}",
    ),
    # The decoded forms, should anything log them.
    (re.compile(r"(?i)(auth=bearer\s*)[^\x01\s'\"]+"), rf"\1{REDACTED}"),
    # IMAP LOGIN user password (quoted or atom).
    (
        re.compile(r"(?i)(\bLOGIN\s+(?:\"[^\"]*\"|\S+)\s+)(?:\"(?:[^\"\\]|\\.)*\"|\S+)"),
        rf"\1{REDACTED}",
    ),
    # key=value, key: value, "key": "value" for secret-looking keys.
    (
        re.compile(
            rf"(?i)([\"']?\b(?:{_KEYS})\b[\"']?\s*[:=]\s*)(?!\[redacted\])(\"[^\"]*\"|'[^']*'|[^\s,;&}}\]]+)"
        ),
        rf"\1{REDACTED}",
    ),
    # Credentials in URLs: scheme://user:password@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\1{REDACTED}@"),
    # Well-known token shapes: JWTs (Microsoft), Google access and refresh tokens.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"\bya29\.[A-Za-z0-9._-]{10,}"), REDACTED),
    (re.compile(r"(?<![\w/])1//[A-Za-z0-9_-]{16,}"), REDACTED),
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_installed: list[logging.Handler] = []
_log_file: Path | None = None


def add_secret(value: str) -> None:
    """Redact this exact value from every log line from now on (a password, a token).

    Patterns catch secrets by shape; this catches one by value, whatever surrounds it.
    """
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Handler filter: rewrites each record's message, traceback and stack with secrets removed.

    On the handler, not a logger: a logger's filters do not see records its children
    propagate, a handler's see every record it writes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        if len(message) > MAX_MESSAGE_CHARS:
            message = (
                message[:MAX_MESSAGE_CHARS] + f" […{len(message) - MAX_MESSAGE_CHARS} chars cut]"
            )
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # The traceback text is final now; exc_info would make other handlers re-render it.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file; when it cannot be written (a full disk), one line says so, once, instead
    of logging's "--- Logging error ---" and a traceback on every record."""

    _warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._warned:
            self._warned = True
            exc = sys.exc_info()[1]
            why = getattr(exc, "strerror", None) or exc
            sys.stderr.write(f"spamguard: cannot write the log {self.baseFilename} ({why})\n")


def default_log_dir() -> Path:
    """``$SPAMGUARD_LOG_DIR`` or the platform's user log folder for spamguard."""
    override = os.environ.get(LOG_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_log_dir("spamguard", appauthor=False))


def current_log_file() -> Path | None:
    """The file `setup_logging` writes to, or None before it ran (or when it could not)."""
    return _log_file


def log_failure(
    message: str, *, exc_info: BaseException | None = None, level: int = logging.ERROR
) -> None:
    """Write a failure the user was already shown on stderr to the log file only, with its
    traceback when there is one (the screen gets one line; the log keeps the detail)."""
    record = logging.getLogger("spamguard").makeRecord(
        "spamguard",
        level,
        __file__,
        0,
        message,
        (),
        (type(exc_info), exc_info, exc_info.__traceback__) if exc_info is not None else None,
    )
    for handler in _installed:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def setup_logging(verbose: bool, log_dir: Path | None = None) -> Path | None:
    """Log to a rotating file (INFO, DEBUG with ``verbose``) and to stderr (WARNING / INFO).

    Returns the log file, or None when its folder cannot be written (stderr still works).
    Calling it again replaces the handlers it installed before.
    """
    global _log_file
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    redactor = RedactingFilter()
    formatter = logging.Formatter(FORMAT)

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("spamguard: %(levelname)s: %(message)s"))
    console.addFilter(redactor)
    handlers: list[logging.Handler] = [console]

    directory = Path(log_dir) if log_dir is not None else default_log_dir()
    file = directory / LOG_FILE
    path: Path | None = file
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Create it private before the handler opens it: the log names accounts and hosts.
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        file_handler = _LogFile(
            file,
            maxBytes=MAX_BYTES,
            backupCount=BACKUPS,
            encoding="utf-8",
            delay=False,
        )
    except OSError as exc:
        path = None
        sys.stderr.write(f"spamguard: cannot write the log in {directory} ({exc.strerror})\n")
    else:
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        file_handler.setFormatter(formatter)
        file_handler.addFilter(redactor)
        handlers.append(file_handler)

    for handler in handlers:
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # imaplib's protocol trace carries whole message bodies (FETCH BODY[]): never log it.
    logging.getLogger("imapclient").setLevel(logging.INFO)
    _log_file = path
    return path
