"""Reading the TOML configuration: every key checked, every mistake one line naming the key
and what to write instead (`ConfigError`)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spamguard.config.schema import (
    DEFAULT_FLAG_KEYWORD,
    DEFAULT_MAX_FETCH_BYTES,
    PRESETS,
    AccountSettings,
    Config,
    FolderRule,
    LLMConfig,
    _is_keyword,
    _is_local,
    _normalise_fingerprint,
    default_config_path,
    parse_backlog,
)
from spamguard.errors import ConfigError
from spamguard.verdict import Thresholds

__all__ = [
    "load_config",
    "parse_config",
]


def load_config(path: Path | str | None = None) -> Config:
    """Read the config from ``path`` or the platform default; a missing default is empty."""
    explicit = path is not None
    file = Path(path) if path is not None else default_config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {file} does not exist") from None
        return Config(path=file, accounts={})
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {file} is not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start]:#04x}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    return parse_config(text, path=file)


def parse_config(text: str, *, path: Path | None = None) -> Config:
    where = str(path) if path else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    v = _Validator(text, where)
    return v.config(data, path)


# ---------------------------------------------------------------------------------------------
# Validation. tomllib keeps no positions, so `_KeyLines` re-reads the text to find the line of
# each key: enough for a message such as "config.toml line 7: accounts.work.port must be ...".


class _KeyLines:
    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(
        r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*="""
    )

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        arrays: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = self._split(header.group(2))
                if header.group(1) == "[[":
                    index = arrays.get(table, -1) + 1
                    arrays[table] = index
                    table = (*table, str(index))
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((*table, *self._split(key.group(1))), number)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', dotted)
        return tuple(a or b or c for a, b, c in parts)

    def line(self, path: tuple[str, ...]) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 0


class _Validator:
    def __init__(self, text: str, where: str) -> None:
        self.keys = _KeyLines(text)
        self.where = where

    def fail(self, path: tuple[str, ...], problem: str) -> ConfigError:
        line = self.keys.line(path)
        at = f" line {line}" if line else ""
        return ConfigError(f"{self.where}{at}: {'.'.join(path)} {problem}")

    def check_keys(
        self, table: Mapping[str, Any], path: tuple[str, ...], allowed: set[str]
    ) -> None:
        for key in table:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.fail((*path, key), f"is not a known setting (known here: {hint})")

    def get(
        self,
        table: Mapping[str, Any],
        path: tuple[str, ...],
        key: str,
        kind: type | tuple[type, ...],
        default: Any,
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a TOML `true` is never a port number.
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail((*path, key), f"must be {_kind_name(kinds)}, not a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.fail(
                (*path, key), f"must be {_kind_name(kinds)}, not {type(value).__name__}"
            )
        return value

    def strings(
        self, table: Mapping[str, Any], path: tuple[str, ...], key: str, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = self.get(table, path, key, (list, str), None)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail((*path, key), "must be a list of non-empty strings")
        return tuple(value)

    def probability(
        self, table: Mapping[str, Any], path: tuple[str, ...], key: str, default: float
    ) -> float:
        value: float = self.get(table, path, key, float, default)
        if not 0.0 <= value <= 1.0:
            raise self.fail((*path, key), f"must be between 0 and 1, not {value}")
        return value

    def choice(
        self,
        table: Mapping[str, Any],
        path: tuple[str, ...],
        key: str,
        choices: tuple[str, ...],
        default: str,
    ) -> str:
        value: str = self.get(table, path, key, str, default)
        if value not in choices:
            raise self.fail(
                (*path, key), f"must be one of {', '.join(map(repr, choices))}, not {value!r}"
            )
        return value

    def thresholds(
        self, table: Mapping[str, Any], path: tuple[str, ...], default: Thresholds
    ) -> Thresholds:
        raw = self.get(table, path, "thresholds", dict, {})
        tpath = (*path, "thresholds")
        self.check_keys(raw, tpath, {"move", "flag"})
        result = Thresholds(
            move=self.probability(raw, tpath, "move", default.move),
            flag=self.probability(raw, tpath, "flag", default.flag),
        )
        if result.flag > result.move:
            raise self.fail(
                (*tpath, "flag"),
                f"({result.flag}) must not be above the move threshold ({result.move})",
            )
        return result

    def config(self, data: Mapping[str, Any], path: Path | None) -> Config:
        self.check_keys(data, (), {"accounts", "thresholds", "data_dir", "model_dir", "llm"})
        thresholds = self.thresholds(data, (), Thresholds())
        data_dir = self.get(data, (), "data_dir", str, None)
        model_dir = self.get(data, (), "model_dir", str, None)
        raw_accounts = self.get(data, (), "accounts", dict, {})
        accounts: dict[str, AccountSettings] = {}
        for name, raw in raw_accounts.items():
            if not isinstance(raw, dict):
                raise self.fail(("accounts", name), "must be a table such as [accounts.work]")
            accounts[name] = self.account(name, raw, thresholds)
        return Config(
            path=path,
            accounts=accounts,
            thresholds=thresholds,
            data_dir=Path(data_dir).expanduser() if data_dir else None,
            model_dir=Path(model_dir).expanduser() if model_dir else None,
            llm=self.llm(self.get(data, (), "llm", dict, {})),
        )

    def llm(self, raw: Mapping[str, Any]) -> LLMConfig:
        p = ("llm",)
        d = LLMConfig()
        self.check_keys(raw, p, set(LLMConfig.__dataclass_fields__))
        layers = self.get(raw, p, "n_gpu_layers", (int, str), d.n_gpu_layers)
        if layers != "auto" and not (isinstance(layers, int) and layers >= 0):
            raise self.fail(
                (*p, "n_gpu_layers"), f'must be "auto" or a number >= 0, not {layers!r}'
            )
        threads = self.get(raw, p, "threads", int, None)
        if threads is not None and threads < 1:
            raise self.fail((*p, "threads"), f"must be at least 1, not {threads}")
        n_ctx = self.get(raw, p, "n_ctx", int, d.n_ctx)
        if n_ctx < 512:
            raise self.fail((*p, "n_ctx"), f"must be at least 512, not {n_ctx}")
        budget = self.get(raw, p, "token_budget", int, d.token_budget)
        if not 32 <= budget <= n_ctx - 256:
            raise self.fail(
                (*p, "token_budget"),
                f"must be between 32 and n_ctx - 256 ({n_ctx - 256}) so the prompt fits, "
                f"not {budget}",
            )
        url = self.get(raw, p, "remote_url", str, None)
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise self.fail((*p, "remote_url"), f"must be an http:// or https:// URL, not {url!r}")
        timeout = self.get(raw, p, "remote_timeout", float, d.remote_timeout)
        if timeout <= 0:
            raise self.fail((*p, "remote_timeout"), f"must be more than 0 seconds, not {timeout}")
        model_path = self.get(raw, p, "model_path", str, None)
        return LLMConfig(
            model=self.get(raw, p, "model", str, d.model),
            model_path=Path(model_path).expanduser() if model_path else None,
            n_gpu_layers=layers,
            threads=threads,
            n_ctx=n_ctx,
            token_budget=budget,
            remote_url=url or None,
            remote_timeout=timeout,
        )

    def account(self, name: str, raw: Mapping[str, Any], thresholds: Thresholds) -> AccountSettings:
        p = ("accounts", name)
        self.check_keys(
            raw,
            p,
            {
                "provider",
                "host",
                "port",
                "security",
                "username",
                "auth",
                "password_command",
                "password_store",
                "allow_plaintext",
                "tls_fingerprint",
                "watch_folders",
                "junk_folder",
                "create_junk",
                "sent_folder",
                "thresholds",
                "allow",
                "block",
                "backlog",
                "backlog_messages",
                "backlog_days",
                "batch_size",
                "max_fetch_bytes",
                "flag_style",
                "flag_keyword",
                "rules",
                "protect_known_senders",
                "idle_timeout",
                "poll_interval",
                "timeout",
                "oauth",
                "oauth_provider",
                "oauth_client_id",
                "oauth_client_secret",
                "oauth_mechanism",
                "oauth_tenant",
                "password",
                "maildir",
            },
        )
        if "password" in raw:
            raise self.fail(
                (*p, "password"),
                "must not be in the config file: run "
                "`spamguard account add` to keep it in the system keyring, or use password_command",
            )
        provider: str | None = self.get(raw, p, "provider", str, None)
        preset = None
        if provider is not None:
            preset = PRESETS.get(provider.lower())
            if preset is None:
                raise self.fail(
                    (*p, "provider"),
                    f"is not a known provider (known: {', '.join(sorted(PRESETS))})",
                )
            provider = preset.name
        maildir: str | None = self.get(raw, p, "maildir", str, None)
        if maildir is not None:
            raw = {"host": "localhost", "security": "plain", "username": "-", **raw}
        host: str | None = self.get(raw, p, "host", str, preset.host if preset else None)
        if not host:
            raise self.fail(p, 'needs a host (or a provider such as provider = "fastmail")')
        security = self.choice(
            raw, p, "security", ("tls", "starttls", "plain"), preset.security if preset else "tls"
        )
        default_port = (
            preset.port if preset else {"tls": 993, "starttls": 143, "plain": 143}[security]
        )
        port: int = self.get(raw, p, "port", int, default_port)
        if not 0 < port < 65536:
            raise self.fail((*p, "port"), f"must be between 1 and 65535, not {port}")
        username: str | None = self.get(raw, p, "username", str, None)
        if not username:
            raise self.fail(p, "needs a username")
        allow_plaintext: bool = self.get(raw, p, "allow_plaintext", bool, False)
        if security == "plain" and not _is_local(host) and not allow_plaintext:
            raise self.fail(
                (*p, "security"),
                f'is "plain" for {host}, which would send the password '
                'unencrypted; use "tls" or "starttls", or set allow_plaintext = true '
                "if you really mean it",
            )
        auth = self.choice(raw, p, "auth", ("password", "oauth2"), "password")
        password_command: str | None = self.get(raw, p, "password_command", str, None)
        if password_command is not None and not password_command.strip():
            raise self.fail((*p, "password_command"), "is empty")
        if auth == "oauth2" and password_command:
            raise self.fail((*p, "password_command"), 'cannot be combined with auth = "oauth2"')
        password_store: str = self.get(raw, p, "password_store", str, "keyring")
        if password_store not in ("keyring", "file"):
            raise self.fail(
                (*p, "password_store"),
                f'must be "keyring" or "file" (an encrypted file), not {password_store!r}',
            )
        fingerprint: str | None = self.get(raw, p, "tls_fingerprint", str, None)
        if fingerprint is not None:
            fingerprint = _normalise_fingerprint(fingerprint)
            if fingerprint is None:
                raise self.fail(
                    (*p, "tls_fingerprint"),
                    'must look like "sha256:AB:CD:..." '
                    "(64 hex digits; the connection error shows the server's)",
                )
        oauth: dict[str, Any] = dict(self.get(raw, p, "oauth", dict, {}))
        for key in ("provider", "client_id", "client_secret", "mechanism", "tenant"):
            value = self.get(raw, p, f"oauth_{key}", str, None)
            if value is not None:
                oauth[key] = value
        if auth == "oauth2" and "provider" not in oauth and "token_url" not in oauth:
            # Gmail and Microsoft 365 accounts get their OAuth2 provider from the preset.
            default = {"gmail": "google", "outlook": "microsoft"}.get(provider or "")
            if default is None:
                raise self.fail(
                    (*p, "auth"),
                    'is "oauth2" but neither oauth_provider nor an '
                    "[accounts.NAME.oauth] table with token_url is given",
                )
            oauth["provider"] = default
        watch = self.strings(raw, p, "watch_folders", ("INBOX",))
        rules = self.rules(raw, p)
        positive = {
            "backlog_messages": 500,
            "backlog_days": 30,
            "batch_size": 50,
            "max_fetch_bytes": DEFAULT_MAX_FETCH_BYTES,
        }
        counts: dict[str, int] = {}
        for count_key, count_default in positive.items():
            key = count_key
            counts[key] = self.get(raw, p, key, int, count_default)
            if counts[key] < (1 if key in ("batch_size", "max_fetch_bytes") else 0):
                raise self.fail((*p, key), f"must be a positive number, not {counts[key]}")
        if "backlog" in raw:
            if "backlog_messages" in raw or "backlog_days" in raw:
                raise self.fail(
                    (*p, "backlog"),
                    "is given together with backlog_messages/backlog_days; keep only backlog",
                )
            text: str = self.get(raw, p, "backlog", str, "")
            try:
                counts["backlog_messages"], counts["backlog_days"] = parse_backlog(text)
            except ValueError as exc:
                raise self.fail((*p, "backlog"), str(exc)) from None
        if counts["max_fetch_bytes"] < 1024:
            raise self.fail(
                (*p, "max_fetch_bytes"), "must be at least 1024 bytes to see the headers"
            )
        seconds = {}
        for key, dflt in (("idle_timeout", 25 * 60.0), ("poll_interval", 60.0), ("timeout", 60.0)):
            seconds[key] = self.get(raw, p, key, float, dflt)
            if seconds[key] <= 0:
                raise self.fail((*p, key), "must be a positive number of seconds")
        if seconds["idle_timeout"] >= 29 * 60:
            raise self.fail(
                (*p, "idle_timeout"), "must be under 29 minutes (servers drop longer IDLEs)"
            )
        flag_keyword: str = self.get(raw, p, "flag_keyword", str, DEFAULT_FLAG_KEYWORD)
        if not _is_keyword(flag_keyword):
            raise self.fail(
                (*p, "flag_keyword"),
                f"{flag_keyword!r} is not a valid IMAP keyword (no spaces, brackets or backslash)",
            )
        return AccountSettings(
            name=name,
            host=host,
            port=port,
            security=security,  # type: ignore[arg-type]
            username=username,
            auth=auth,  # type: ignore[arg-type]
            password_command=password_command,
            password_store=password_store,
            allow_plaintext=allow_plaintext,
            tls_fingerprint=fingerprint,
            provider=provider,
            watch_folders=watch,
            junk_folder=self.get(raw, p, "junk_folder", str, "auto"),
            create_junk=self.get(raw, p, "create_junk", bool, False),
            sent_folder=self.get(raw, p, "sent_folder", str, "auto"),
            thresholds=self.thresholds(raw, p, thresholds),
            allow=tuple(a.lower() for a in self.strings(raw, p, "allow", ())),
            block=tuple(b.lower() for b in self.strings(raw, p, "block", ())),
            backlog_messages=counts["backlog_messages"],
            backlog_days=counts["backlog_days"],
            batch_size=counts["batch_size"],
            max_fetch_bytes=counts["max_fetch_bytes"],
            flag_style=self.choice(raw, p, "flag_style", ("keyword", "flagged", "both"), "both"),  # type: ignore[arg-type]
            flag_keyword=flag_keyword,
            rules=rules,
            protect_known_senders=self.get(raw, p, "protect_known_senders", bool, True),
            idle_timeout=seconds["idle_timeout"],
            poll_interval=seconds["poll_interval"],
            timeout=seconds["timeout"],
            oauth=oauth,
            maildir=Path(maildir).expanduser() if maildir else None,
        )

    def rules(self, raw: Mapping[str, Any], p: tuple[str, ...]) -> tuple[FolderRule, ...]:
        items = self.get(raw, p, "rules", list, [])
        rules: list[FolderRule] = []
        for index, item in enumerate(items):
            rp = (*p, "rules", str(index))
            if not isinstance(item, dict):
                raise self.fail(rp, "must be a table ([[accounts.NAME.rules]])")
            self.check_keys(
                item,
                rp,
                {
                    "name",
                    "action",
                    "folder",
                    "keyword",
                    "min_score",
                    "max_score",
                    "from",
                    "list_id",
                    "header",
                    "header_regex",
                    "source_folder",
                },
            )
            action = self.choice(
                item, rp, "action", ("move", "keyword", "flag", "leave", "junk"), ""
            )
            target = ""
            if action == "move":
                target = self.get(item, rp, "folder", str, "")
                if not target:
                    raise self.fail((*rp, "action"), 'is "move" but the rule has no folder = "..."')
            elif action == "keyword":
                target = self.get(item, rp, "keyword", str, "")
                if not _is_keyword(target):
                    raise self.fail(
                        (*rp, "action"), 'is "keyword" but keyword = "..." is missing or invalid'
                    )
            header = self.get(item, rp, "header", str, "")
            header_regex = self.get(item, rp, "header_regex", str, "")
            if bool(header) != bool(header_regex):
                raise self.fail((*rp, "header"), "and header_regex must be given together")
            if header_regex:
                try:
                    re.compile(header_regex)
                except re.error as exc:
                    raise self.fail(
                        (*rp, "header_regex"), f"is not a valid regular expression: {exc}"
                    ) from None
            min_score = (
                self.probability(item, rp, "min_score", -1.0) if "min_score" in item else None
            )
            max_score = (
                self.probability(item, rp, "max_score", 2.0) if "max_score" in item else None
            )
            rules.append(
                FolderRule(
                    name=self.get(item, rp, "name", str, f"rule {index + 1}"),
                    action=action,  # type: ignore[arg-type]
                    target=target,
                    min_score=min_score,
                    max_score=max_score,
                    senders=tuple(s.lower() for s in self.strings(item, rp, "from", ())),
                    list_id=self.get(item, rp, "list_id", str, "").lower(),
                    header=header,
                    header_regex=header_regex,
                    source_folder=self.get(item, rp, "source_folder", str, ""),
                    line=self.keys.line(rp),
                )
            )
        return tuple(rules)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)
