"""The TOML configuration: accounts, thresholds, folders, lists, rules and provider presets.

`schema` holds the dataclasses and defaults, `load` reads and checks a file, `edit` is the one
writer. Import from `spamguard.config`; the names below are its public face.
"""

from __future__ import annotations

from spamguard.config.load import load_config, parse_config
from spamguard.config.schema import (
    DEFAULT_FLAG_KEYWORD,
    DEFAULT_MAX_FETCH_BYTES,
    PRESETS,
    AccountSettings,
    Config,
    FolderRule,
    LLMConfig,
    Preset,
    default_config_path,
    default_data_dir,
    describe_backlog,
    format_fingerprint,
    parse_backlog,
    with_overrides,
)

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
    "load_config",
    "parse_backlog",
    "parse_config",
    "with_overrides",
]
