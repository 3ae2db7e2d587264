"""What the configuration holds: accounts, folders, lists, rules, the LLM settings and the
provider presets, as frozen dataclasses with their defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import platformdirs

from spamguard.errors import ConfigError
from spamguard.verdict import Thresholds

__all__ = [
    "DEFAULT_FLAG_KEYWORD",
    "DEFAULT_MAX_FETCH_BYTES",
    "PRESETS",
    "AccountSettings",
    "Config",
    "FolderRule",
    "LLMConfig",
    "Preset",
    "default_config_path",
    "default_data_dir",
    "describe_backlog",
    "format_fingerprint",
    "parse_backlog",
    "with_overrides",
]

APP_NAME = "spamguard"
DEFAULT_MAX_FETCH_BYTES = 256 * 1024
# A keyword lets us (and undo) tell our marks from the user's; \Flagged is what every
# client shows. Both are set by default; `flag_style` picks one.
DEFAULT_FLAG_KEYWORD = "$SpamGuardFlag"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Security = Literal["tls", "starttls", "plain"]
AuthKind = Literal["password", "oauth2"]
FlagStyle = Literal["keyword", "flagged", "both"]
RuleAction = Literal["move", "keyword", "flag", "leave", "junk"]


@dataclass(frozen=True, slots=True)
class Preset:
    """Connection facts for a well-known provider."""

    name: str
    host: str
    port: int
    security: Security
    junk_folders: tuple[str, ...]
    oauth2: bool = False
    note: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "gmail",
            "imap.gmail.com",
            993,
            "tls",
            ("[Gmail]/Spam", "[Google Mail]/Spam"),
            oauth2=True,
            note="an app password or browser sign-in (OAuth2)",
        ),
        Preset(
            "outlook",
            "outlook.office365.com",
            993,
            "tls",
            ("Junk Email", "Junk-E-Mail"),
            oauth2=True,
            note="browser sign-in (OAuth2)",
        ),
        Preset("fastmail", "imap.fastmail.com", 993, "tls", ("Spam",), note="an app password"),
        Preset(
            "icloud", "imap.mail.me.com", 993, "tls", ("Junk",), note="an app-specific password"
        ),
        Preset(
            "yahoo",
            "imap.mail.yahoo.com",
            993,
            "tls",
            ("Bulk", "Bulk Mail", "Spam"),
            note="an app password",
        ),
        Preset("gmx", "imap.gmx.net", 993, "tls", ("Spamverdacht", "Spam")),
        Preset("mailbox.org", "imap.mailbox.org", 993, "tls", ("Junk", "Spam")),
    )
}
PRESETS["office365"] = PRESETS["outlook"]
PRESETS["m365"] = PRESETS["outlook"]


@dataclass(frozen=True, slots=True)
class FolderRule:
    """One user rule: every given condition must hold; then `action` replaces the thresholds.

    Rules are evaluated in order and the first match wins.
    """

    name: str
    action: RuleAction
    target: str = ""  # folder for "move", keyword for "keyword"
    min_score: float | None = None
    max_score: float | None = None
    senders: tuple[str, ...] = ()  # addresses or domains, as in allow/block lists
    list_id: str = ""  # substring of the List-Id header, case-insensitive
    header: str = ""  # header name ...
    header_regex: str = ""  # ... whose value must match this (case-insensitive search)
    source_folder: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """Everything SpamGuard needs to know about one mail account."""

    name: str
    host: str
    port: int
    security: Security
    username: str
    auth: AuthKind = "password"
    password_command: str | None = None
    # Where the password lives when there is no password_command: "keyring" (the system
    # keyring) or "file" (SpamGuard's passphrase-encrypted file, for machines without one).
    password_store: str = "keyring"
    allow_plaintext: bool = False
    tls_fingerprint: str | None = None  # "sha256:<hex>", pinned self-signed certificate
    provider: str | None = None
    watch_folders: tuple[str, ...] = ("INBOX",)
    junk_folder: str = "auto"
    create_junk: bool = False  # the user's consent to create a Junk folder when none exists
    sent_folder: str = "auto"
    thresholds: Thresholds = field(default_factory=Thresholds)
    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    # The first sync (and a resync after UIDVALIDITY changed) looks at the newest
    # `backlog_messages` of the last `backlog_days` days; 0 means no limit, never "nothing".
    # `backlog = "newest 500" | "last 30 days" | "everything"` in the config sets both.
    backlog_messages: int = 500
    backlog_days: int = 30
    batch_size: int = 50
    max_fetch_bytes: int = DEFAULT_MAX_FETCH_BYTES
    flag_style: FlagStyle = "both"
    flag_keyword: str = DEFAULT_FLAG_KEYWORD
    rules: tuple[FolderRule, ...] = ()
    # Mail from someone the user has written to, or from an authenticated sender whose
    # earlier mail the user kept, is flagged at most, never moved to Junk.
    protect_known_senders: bool = True
    idle_timeout: float = 25 * 60.0  # RFC 2177: re-issue IDLE well before 29 minutes
    poll_interval: float = 60.0
    timeout: float = 60.0
    oauth: Mapping[str, Any] = field(default_factory=dict)
    maildir: Path | None = None  # a local Maildir++ tree instead of an IMAP server

    @property
    def keyring_user(self) -> str:
        """The name the password is stored under in the keyring (service "spamguard")."""
        return f"{self.username}@{self.host}"

    @property
    def junk_candidates(self) -> tuple[str, ...]:
        preset = PRESETS.get(self.provider or "") or _preset_for_host(self.host)
        return preset.junk_folders if preset else ()


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """``[llm]``: the local language model that writes explanations (it never decides).

    ``remote_url`` points it at an OpenAI-compatible server instead; then the text of the
    messages it explains leaves this machine, and SpamGuard says so whenever it is used.
    """

    model: str = "smollm2-135m-instruct"
    model_path: Path | None = None  # any local GGUF file instead of a catalog model
    n_gpu_layers: int | Literal["auto"] = "auto"
    threads: int | None = None  # None: the cores other programs leave free, 1 to 4
    n_ctx: int = 1024
    token_budget: int = 256  # tokens of the message quoted in a prompt
    remote_url: str | None = None
    remote_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration file, validated."""

    path: Path | None
    accounts: dict[str, AccountSettings]
    thresholds: Thresholds = field(default_factory=Thresholds)
    data_dir: Path | None = None
    model_dir: Path | None = None
    llm: LLMConfig = field(default_factory=LLMConfig)

    @property
    def state_path(self) -> Path:
        """The SQLite state file (`spamguard.store`): in data_dir when one is set."""
        return (self.data_dir or default_data_dir()) / "spamguard.sqlite3"

    def account(self, name: str) -> AccountSettings:
        try:
            return self.accounts[name]
        except KeyError:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise ConfigError(
                f"no account called {name!r} in the config (accounts: {known})"
            ) from None


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


_DAYS = r"(?:the\s+)?last\s+(?:(?P<{0}>\d+)\s+days?|(?P<{0}_one>day))"
_BACKLOG_RE = re.compile(
    r"(?:the\s+)?(?:newest|latest|last)\s+(?P<n>\d+)(?:\s+messages?)?"
    r"(?:\s+(?:of|from|in)\s+" + _DAYS.format("d1") + ")?"
    r"|(?:the\s+messages\s+of\s+)?"
    + _DAYS.format("d2")
    + r"|(?P<all>everything|all|all\s+messages|every\s+message)",
    re.IGNORECASE,
)


def parse_backlog(text: str) -> tuple[int, int]:
    """(messages, days) from a readable first-sync choice; 0 is no limit.

    "newest 500" -> (500, 0); "last 30 days" -> (0, 30); "everything" -> (0, 0);
    "newest 500 of the last 30 days" -> (500, 30). Raises `ValueError` with what to write.
    """
    match = _BACKLOG_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f'must read like "newest 500", "last 30 days" or "everything", not {text!r}'
        )
    g = match.groupdict()
    messages = int(g["n"] or 0)
    days = int(g["d1"] or g["d2"] or 0) or (1 if g["d1_one"] or g["d2_one"] else 0)
    if not g["all"] and messages == 0 and days == 0:
        raise ValueError(f'{text!r} would scan nothing; write a number above 0, or "everything"')
    return messages, days


def describe_backlog(messages: int, days: int) -> str:
    """What a first sync with these limits looks at, in words (the inverse of parse_backlog)."""
    period = "the last day" if days == 1 else f"the last {days} days"
    if messages and days:
        return f"the newest {messages} messages of {period}"
    if messages:
        return f"the newest {messages} messages"
    if days:
        return f"the messages of {period}"
    return "every message"


def _is_keyword(word: str) -> bool:
    return bool(
        re.fullmatch(r"[!#-'*+\-./0-9:;<=>?@A-Z^_`a-z|~]{1,64}", word)
    ) and not word.startswith("\\")


def _normalise_fingerprint(text: str) -> str | None:
    body = text.strip().lower()
    if body.startswith("sha256:"):
        body = body[len("sha256:") :]
    body = body.replace(":", "").replace(" ", "")
    if not re.fullmatch(r"[0-9a-f]{64}", body):
        return None
    return "sha256:" + body


def format_fingerprint(digest_hex: str) -> str:
    """The form the user pastes into the config: sha256:AB:CD:..."""
    pairs = [digest_hex[i : i + 2].upper() for i in range(0, len(digest_hex), 2)]
    return "sha256:" + ":".join(pairs)


def _is_local(host: str) -> bool:
    """Only loopback traffic may skip TLS: it never leaves the machine."""
    import ipaddress

    if host.lower() in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _preset_for_host(host: str) -> Preset | None:
    for preset in PRESETS.values():
        if preset.host == host.lower():
            return preset
    return None


def with_overrides(settings: AccountSettings, **changes: Any) -> AccountSettings:
    """A copy of ``settings`` with some fields changed (tests and `account test`)."""
    return replace(settings, **changes)
