"""Config: the minimal account, defaults, presets, and errors that name the key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamguard.config import (
    PRESETS,
    describe_backlog,
    load_config,
    parse_backlog,
    parse_config,
)
from spamguard.errors import ConfigError

MINIMAL = """\
[accounts.work]
host = "127.0.0.1"
port = 10143
security = "plain"
username = "alice"
password_command = "echo secret"
"""


def test_the_minimal_account_of_the_issue_works() -> None:
    config = parse_config(MINIMAL)
    a = config.accounts["work"]
    assert (a.host, a.port, a.security, a.username) == ("127.0.0.1", 10143, "plain", "alice")
    assert a.password_command == "echo secret" and a.auth == "password"
    assert a.watch_folders == ("INBOX",) and a.junk_folder == "auto" and not a.create_junk
    assert (a.thresholds.move, a.thresholds.flag) == (0.90, 0.50)
    assert a.max_fetch_bytes == 256 * 1024
    assert a.flag_style == "both" and a.flag_keyword == "$SpamGuardFlag"


def test_global_thresholds_apply_unless_an_account_overrides() -> None:
    config = parse_config(
        "[thresholds]\nmove = 0.95\n\n"
        + MINIMAL
        + '\n[accounts.home]\nprovider = "fastmail"\nusername = "me@fastmail.com"\n'
        + "thresholds = { flag = 0.6 }\n"
    )
    assert config.accounts["work"].thresholds.move == 0.95
    home = config.accounts["home"]
    assert (home.thresholds.move, home.thresholds.flag) == (0.95, 0.6)
    assert (home.host, home.port, home.security) == ("imap.fastmail.com", 993, "tls")
    assert home.junk_candidates == ("Spam",)


@pytest.mark.parametrize(
    "name", ["gmail", "outlook", "fastmail", "icloud", "yahoo", "gmx", "mailbox.org"]
)
def test_provider_presets(name: str) -> None:
    preset = PRESETS[name]
    config = parse_config(f'[accounts.a]\nprovider = "{name}"\nusername = "u"\n')
    a = config.accounts["a"]
    assert a.host == preset.host and a.port == 993 and a.security == "tls"
    assert a.junk_candidates and a.junk_candidates == preset.junk_folders


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (MINIMAL.replace("port = 10143", 'port = "imap"'), "accounts.work.port", 3),
        (MINIMAL.replace("port = 10143", "port = 70000"), "accounts.work.port", 3),
        (
            MINIMAL.replace('host = "127.0.0.1"', 'host = "mail.example.com"'),
            "accounts.work.security",
            4,
        ),
        (MINIMAL + "thresholds.move = 1.5\n", "accounts.work.thresholds.move", 7),
        (MINIMAL + "thresholds = { move = 0.5, flag = 0.8 }\n", "accounts.work.thresholds.flag", 7),
        (MINIMAL + 'colour = "red"\n', "accounts.work.colour", 7),
        (MINIMAL + 'password = "hunter2"\n', "accounts.work.password", 7),
        (MINIMAL + "max_fetch_bytes = 10\n", "accounts.work.max_fetch_bytes", 7),
        (MINIMAL + 'tls_fingerprint = "abc"\n', "accounts.work.tls_fingerprint", 7),
        (
            MINIMAL + '\n[[accounts.work.rules]]\naction = "move"\n',
            "accounts.work.rules.0.action",
            9,
        ),
        (
            MINIMAL + '\n[[accounts.work.rules]]\naction = "leave"\n\n[[accounts.work.rules]]\n'
            'action = "keyword"\nkeyword = "has space"\n',
            "accounts.work.rules.1.action",
            12,
        ),
        (
            MINIMAL
            + '\n[[accounts.work.rules]]\naction = "flag"\nheader = "X-A"\nheader_regex = "("\n',
            "accounts.work.rules.0.header_regex",
            11,
        ),
    ],
)
def test_errors_name_the_key_and_line(text: str, key: str, line: int) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, path=Path("spamguard.toml"))
    message = str(err.value)
    assert f"spamguard.toml line {line}: {key}" in message, message
    assert "hunter2" not in message


def test_toml_syntax_errors_keep_tomllibs_line() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_config('[accounts.work]\nhost = "unterminated\n')


def test_plaintext_elsewhere_needs_allow_plaintext() -> None:
    text = MINIMAL.replace('host = "127.0.0.1"', 'host = "mail.lan"') + "allow_plaintext = true\n"
    assert parse_config(text).accounts["work"].security == "plain"
    assert parse_config(MINIMAL.replace("127.0.0.1", "localhost")).accounts["work"]


def test_fingerprint_is_normalised() -> None:
    fp = ":".join(["AB"] * 32)
    a = parse_config(MINIMAL + f'tls_fingerprint = "sha256:{fp}"\n').accounts["work"]
    assert a.tls_fingerprint == "sha256:" + "ab" * 32


def test_rules_lists_and_folders() -> None:
    a = parse_config(
        MINIMAL
        + 'watch_folders = ["INBOX", "Lists"]\nallow = ["Boss@Example.com"]\n'
        + 'block = ["spam.example"]\n'
        + 'junk_folder = "Spam"\ncreate_junk = true\nflag_style = "keyword"\n'
        + '\n[[accounts.work.rules]]\nname = "newsletters"\nlist_id = "news.example.org"\n'
        + 'action = "move"\nfolder = "Newsletters"\nmax_score = 0.9\n'
    ).accounts["work"]
    assert a.watch_folders == ("INBOX", "Lists") and a.allow == ("boss@example.com",)
    assert a.junk_folder == "Spam" and a.create_junk and a.flag_style == "keyword"
    [rule] = a.rules
    assert (rule.name, rule.action, rule.target, rule.max_score, rule.line) == (
        "newsletters",
        "move",
        "Newsletters",
        0.9,
        14,
    )


def test_oauth2_accounts_get_their_provider_from_the_preset() -> None:
    a = parse_config(
        '[accounts.g]\nprovider = "gmail"\nusername = "me@gmail.com"\nauth = "oauth2"\n'
        'oauth_client_id = "abc"\n'
    ).accounts["g"]
    assert a.auth == "oauth2" and a.oauth == {"provider": "google", "client_id": "abc"}
    with pytest.raises(ConfigError, match="auth"):
        parse_config('[accounts.x]\nhost = "imap.example.com"\nusername = "u"\nauth = "oauth2"\n')


def test_missing_default_config_is_empty_but_an_explicit_one_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_config().accounts == {}
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "c.toml").write_text(MINIMAL)
    assert load_config(tmp_path / "c.toml").path == tmp_path / "c.toml"


def test_llm_section_becomes_engine_settings_and_defaults_stay_local() -> None:
    from spamguard.llm.engine import LLMSettings

    assert parse_config("").llm.remote_url is None  # nothing leaves the machine by default
    cfg = parse_config(
        "[llm]\n"
        'model_path = "~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"\n'
        "n_gpu_layers = 20\nthreads = 3\nn_ctx = 2048\ntoken_budget = 512\n"
        'remote_url = "http://127.0.0.1:8080"\nremote_timeout = 5\n'
    ).llm
    settings = LLMSettings.from_config(cfg)
    assert settings.model_path == Path.home() / "models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert (settings.n_gpu_layers, settings.threads, settings.n_ctx) == (20, 3, 2048)
    assert (settings.token_budget, settings.remote_timeout) == (512, 5.0)
    assert settings.remote_url == "http://127.0.0.1:8080"
    assert LLMSettings.from_config(parse_config("[llm]\n").llm).n_gpu_layers == "auto"


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ("n_gpu_layers = -1", "llm.n_gpu_layers", '"auto" or a number'),
        ('n_gpu_layers = "all"', "llm.n_gpu_layers", '"auto" or a number'),
        ("threads = 0", "llm.threads", "at least 1"),
        ("token_budget = 900", "llm.token_budget", "so the prompt fits"),
        ('remote_url = "127.0.0.1:8080"', "llm.remote_url", "http:// or https://"),
        ("temperature = 0.2", "llm.temperature", "not a known setting"),
    ],
)
def test_llm_section_errors_name_the_key_and_line(body: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"# SpamGuard\n[llm]\n{body}\n", path=Path("config.toml"))
    assert f"config.toml line 3: {key}" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize(
    "text,limits,words",
    [
        ("newest 500", (500, 0), "the newest 500 messages"),
        ("the newest 2000 messages", (2000, 0), "the newest 2000 messages"),
        ("last 30 days", (0, 30), "the messages of the last 30 days"),
        ("the last 1 day", (0, 1), "the messages of the last day"),
        ("Everything", (0, 0), "every message"),
        (
            "newest 500 of the last 30 days",
            (500, 30),
            "the newest 500 messages of the last 30 days",
        ),
    ],
)
def test_backlog_reads_as_a_person_writes_it(
    text: str, limits: tuple[int, int], words: str
) -> None:
    a = parse_config(MINIMAL + f'backlog = "{text}"\n').accounts["work"]
    assert (a.backlog_messages, a.backlog_days) == limits
    assert describe_backlog(*limits) == words
    # What the words say reads back as the same limits.
    assert parse_backlog(words) == limits


def test_backlog_default_and_old_keys_keep_working() -> None:
    a = parse_config(MINIMAL).accounts["work"]
    # Unchanged default: the newest 500 of the last 30 days.
    assert (a.backlog_messages, a.backlog_days) == (500, 30)
    # Old configs load as before; their 0 is "no limit" (the engine no longer reads it as
    # "scan nothing": tests/mail/test_imap.py checks that on a server).
    old = parse_config(MINIMAL + "backlog_messages = 0\nbacklog_days = 0\n").accounts["work"]
    assert (old.backlog_messages, old.backlog_days) == (0, 0)
    assert describe_backlog(old.backlog_messages, old.backlog_days) == "every message"


@pytest.mark.parametrize(
    "extra,words",
    [
        ('backlog = "nothing"\n', 'must read like "newest 500"'),
        ('backlog = "newest 0"\n', "would scan nothing"),
        ('backlog = "last 0 days"\n', "would scan nothing"),
        ('backlog = "500"\n', 'must read like "newest 500"'),
        ("backlog = 500\n", "must be"),
        ('backlog = "everything"\nbacklog_messages = 10\n', "keep only backlog"),
        ("backlog_messages = -1\n", "must be a positive number"),
    ],
)
def test_backlog_errors_say_what_to_write(extra: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + extra, path=Path("spamguard.toml"))
    assert "accounts.work.backlog" in str(err.value) and words in str(err.value), str(err.value)
