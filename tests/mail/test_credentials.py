"""Credentials: keyring (keyrings.alt file in a temp dir, never the user's), password_command."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from spamguard.config import parse_config
from spamguard.errors import CredentialError
from spamguard.mail.credentials import (
    KEYRING_SERVICE,
    delete_password,
    get_password,
    store_password,
)


@pytest.fixture
def temp_keyring(tmp_path: Path) -> Iterator[None]:
    from keyrings.alt.file import PlaintextKeyring

    previous = keyring.get_keyring()
    ring = PlaintextKeyring()
    ring.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    keyring.set_keyring(ring)
    yield
    keyring.set_keyring(previous)


ACCOUNT = parse_config(
    '[accounts.work]\nhost = "127.0.0.1"\nsecurity = "plain"\nusername = "alice"\n'
).accounts["work"]


def test_keyring_round_trip(temp_keyring: None) -> None:
    with pytest.raises(CredentialError, match="spamguard account add work"):
        get_password(ACCOUNT)
    store_password(ACCOUNT, "s3cret")
    assert keyring.get_password(KEYRING_SERVICE, "alice@127.0.0.1") == "s3cret"
    assert get_password(ACCOUNT) == "s3cret"
    assert delete_password(ACCOUNT) and not delete_password(ACCOUNT)


def test_password_command_output_is_stripped() -> None:
    account = dataclasses.replace(ACCOUNT, password_command="printf '  pw with space \\n\\n'")
    assert get_password(account) == "pw with space"


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("echo leaked-secret; exit 4", "exit status 4"),
        ("true", "printed nothing"),
        ("echo leaked-secret >&2; false", "exit status 1"),
    ],
)
def test_password_command_failures_never_echo_output(command: str, needle: str) -> None:
    account = dataclasses.replace(ACCOUNT, password_command=command)
    with pytest.raises(CredentialError) as err:
        get_password(account)
    assert needle in str(err.value) and "leaked-secret" not in str(err.value)
