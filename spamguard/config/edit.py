"""The one writer of config files. Every edit keeps the other lines (comments included) as
they are, is validated by parsing the new text before anything is written, and is written
atomically. Secrets never pass through here: `spamguard.engine.session` and the CLI store
them in the keyring around these edits."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spamguard.config import AccountSettings, Config, parse_config
from spamguard.errors import ConfigError
from spamguard.verdict import Thresholds

__all__ = [
    "AccountKeys",
    "account_key_lines",
    "check_account_name",
    "replace_account_keys",
    "save_account_thresholds",
    "save_llm_gpu_layers",
    "toml_string",
    "with_account_added",
    "without_account",
    "write_atomic",
]


def check_account_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError("account names may use letters, digits, - and _ only")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def save_account_thresholds(path: Path, account: str, thresholds: Thresholds) -> Config:
    """Write ``[accounts.NAME.thresholds]`` into the config file, keeping everything else
    (comments included) as it is; validated before anything is written."""
    if thresholds.flag > thresholds.move:
        raise ConfigError("the flag threshold must not be above the move threshold")
    text = Path(path).read_text(encoding="utf-8")
    config = parse_config(text, path=path)
    config.account(account)  # raises with the list of known accounts
    header = re.compile(
        rf"^\s*\[\s*accounts\s*\.\s*(\"{re.escape(account)}\"|{re.escape(account)})\s*\.\s*"
        r"thresholds\s*\]\s*(#.*)?$"
    )
    lines = text.splitlines()
    values = [f"move = {thresholds.move:.2f}", f"flag = {thresholds.flag:.2f}"]
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        if re.search(r"^\s*thresholds\s*=", _account_body(lines, account), re.M):
            raise ConfigError(
                f"{path}: accounts.{account}.thresholds is written inline; change it there "
                "or turn it into an [accounts.NAME.thresholds] table"
            )
        new_lines = [*lines, "", f"[accounts.{account}.thresholds]", *values]
    else:
        new_lines = _with_table_keys(lines, start, re.compile(r"\s*(move|flag)\s*="), values)
    new_text = "\n".join(new_lines) + "\n"
    config = parse_config(new_text, path=path)
    write_atomic(Path(path), new_text)
    return config


def save_llm_gpu_layers(path: Path, setting: int | str) -> Config:
    """Write ``n_gpu_layers`` into the config's ``[llm]`` table ("auto", 0 for CPU only, or a
    number of layers), keeping everything else as it is; the file is created when missing.
    The file as it was must parse, and so must the new text, before anything is written."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    parse_config(text, path=path)
    if isinstance(setting, bool) or not (setting == "auto" or isinstance(setting, int)):
        raise ConfigError(f'n_gpu_layers must be "auto" or a number >= 0, not {setting!r}')
    value = '"auto"' if setting == "auto" else str(setting)
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\s*llm\s*\]\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        if re.search(r"^\s*llm\s*=", text, re.M):
            raise ConfigError(f"{path}: llm is written inline; change n_gpu_layers there")
        new_lines = [*lines, *([""] if lines else []), "[llm]", f"n_gpu_layers = {value}"]
    else:
        key = re.compile(r"\s*n_gpu_layers\s*=")
        new_lines = _with_table_keys(lines, start, key, [f"n_gpu_layers = {value}"])
    new_text = "\n".join(new_lines) + "\n"
    config = parse_config(new_text, path=path)
    write_atomic(path, new_text)
    return config


def _with_table_keys(
    lines: Sequence[str], start: int, keys: re.Pattern[str], values: Sequence[str]
) -> list[str]:
    """``lines`` with ``values`` first in the table whose header is ``lines[start]``, its own
    lines that match ``keys`` left out and every other line kept as it was."""
    end = start + 1
    while end < len(lines) and not lines[end].lstrip().startswith("["):
        end += 1
    body = [line for line in lines[start + 1 : end] if not keys.match(line)]
    return [*lines[: start + 1], *values, *body, *lines[end:]]


def _account_body(lines: Sequence[str], account: str) -> str:
    out: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped.replace(" ", "") in (
                f"[accounts.{account}]",
                f'[accounts."{account}"]',
            )
            continue
        if inside:
            out.append(line)
    return "\n".join(out)


# The keys the account dialog writes; an edit replaces these and keeps every other line.
_DIALOG_KEYS = re.compile(
    r"\s*(provider|host|port|security|username|auth|oauth_\w+|junk_folder|password_command|"
    r"password_store|tls_fingerprint|allow_plaintext|protect_known_senders)\s*="
)


@dataclass(frozen=True)
class AccountKeys:
    """The keys of ``[accounts.NAME]`` the account dialog and `spamguard account add/edit`
    write; None (or the default) leaves a key out. ``host``, ``port`` and ``security`` may come
    from the provider preset instead; ``oauth`` holds the ``oauth_*`` keys without their prefix.
    ``backlog`` is written when an account is added only: an edit keeps the section's own."""

    username: str
    host: str | None = None
    port: int | None = None
    security: str | None = None
    provider: str | None = None
    junk_folder: str | None = None
    auth: str = "password"
    oauth: Mapping[str, str] | None = None
    backlog: str | None = None
    password_command: str | None = None
    password_store: str | None = None
    tls_fingerprint: str | None = None
    allow_plaintext: bool = False
    protect_known_senders: bool = True

    @classmethod
    def of(cls, account: AccountSettings) -> AccountKeys:
        """The keys that write ``account`` again (change some with `dataclasses.replace`)."""
        return cls(
            username=account.username,
            host=account.host,
            port=account.port,
            security=account.security,
            provider=account.provider,
            junk_folder=account.junk_folder,
            auth=account.auth,
            oauth=dict(account.oauth),
            password_command=account.password_command,
            password_store=account.password_store,
            tls_fingerprint=account.tls_fingerprint,
            allow_plaintext=account.allow_plaintext,
            protect_known_senders=account.protect_known_senders,
        )


def account_key_lines(keys: AccountKeys) -> list[str]:
    """The ``key = value`` lines of an account's connection settings, in a fixed order."""
    lines: list[str] = []
    if keys.provider:
        lines.append(f"provider = {toml_string(keys.provider)}")
    # host, port and security may come from the provider preset (the CLI's `--provider`).
    if keys.host is not None:
        lines.append(f"host = {toml_string(keys.host)}")
    if keys.port is not None:
        lines.append(f"port = {int(keys.port)}")
    if keys.security is not None:
        lines.append(f"security = {toml_string(keys.security)}")
    lines.append(f"username = {toml_string(keys.username)}")
    if keys.auth != "password":
        lines.append(f"auth = {toml_string(keys.auth)}")
    for key, value in (keys.oauth or {}).items():
        if value:
            lines.append(f"oauth_{key} = {toml_string(value)}")
    if keys.junk_folder and keys.junk_folder != "auto":
        lines.append(f"junk_folder = {toml_string(keys.junk_folder)}")
    if keys.backlog:
        lines.append(f"backlog = {toml_string(keys.backlog)}")
    if keys.password_command:
        lines.append(f"password_command = {toml_string(keys.password_command)}")
    elif keys.password_store and keys.password_store != "keyring":
        lines.append(f"password_store = {toml_string(keys.password_store)}")
    if keys.tls_fingerprint:
        lines.append(f"tls_fingerprint = {toml_string(keys.tls_fingerprint)}")
    if keys.allow_plaintext:
        lines.append("allow_plaintext = true")
    if not keys.protect_known_senders:
        lines.append("protect_known_senders = false")
    return lines


def _account_start(lines: Sequence[str], name: str) -> int:
    """The index of ``[accounts.NAME]``'s header."""
    headers = (f"[accounts.{name}]", f'[accounts."{name}"]')
    return next(i for i, line in enumerate(lines) if line.strip().replace(" ", "") in headers)


def with_account_added(
    text: str, name: str, key_lines: Sequence[str], *, path: Path
) -> tuple[str, Config]:
    """``text`` with ``[accounts.NAME]`` appended, and the config it parses to."""
    check_account_name(name)
    if text.strip() and name in parse_config(text, path=path).accounts:
        raise ConfigError(f"there is already an account called {name!r} in {path}")
    lines = [f"[accounts.{name}]", *key_lines]
    new_text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + "\n".join(lines) + "\n"
    return new_text, parse_config(new_text, path=path)


def replace_account_keys(
    text: str, name: str, key_lines: Sequence[str], *, path: Path
) -> tuple[str, Config, Config]:
    """``text`` with the dialog's keys of ``[accounts.NAME]`` replaced by ``key_lines``, every
    other line kept (watch folders, thresholds, lists, backlog); (text, old config, new)."""
    old_config = parse_config(text, path=path) if text.strip() else None
    if old_config is None or name not in old_config.accounts:
        raise ConfigError(f"there is no account called {name!r} in {path}")
    lines = text.splitlines()
    new_lines = _with_table_keys(lines, _account_start(lines, name), _DIALOG_KEYS, key_lines)
    new_text = "\n".join(new_lines) + "\n"
    return new_text, old_config, parse_config(new_text, path=path)


def without_account(text: str, name: str, *, path: Path) -> tuple[str, Config]:
    """``text`` without ``[accounts.NAME]`` and its sub-tables; (text, the config before)."""
    config = parse_config(text, path=path) if text.strip() else None
    if config is None or name not in config.accounts:
        raise ConfigError(f"there is no account called {name!r} in {path}")
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip().replace(" ", "")
        if stripped.startswith("["):
            header = stripped.strip("[]")
            inside = header in (f"accounts.{name}", f'accounts."{name}"') or header.startswith(
                (f"accounts.{name}.", f'accounts."{name}".')
            )
        if not inside:
            out.append(line)
    new_text = re.sub(r"\n{3,}", "\n\n", "\n".join(out).strip("\n") + "\n")
    parse_config(new_text, path=path)
    return new_text, config
