"""Account secrets: the system keyring, `password_command`, the OAuth2 hand-off; never logged."""

from __future__ import annotations

import subprocess
from typing import Any

from spamguard.config import AccountSettings
from spamguard.errors import AuthError, CredentialError

__all__ = [
    "KEYRING_SERVICE",
    "delete_password",
    "get_password",
    "login",
    "store_password",
]

KEYRING_SERVICE = "spamguard"
PASSWORD_COMMAND_TIMEOUT = 60.0


def get_password(account: AccountSettings) -> str:
    """The account's password from `password_command`, else the keyring.

    Errors name the account and what to do; they never contain the secret or the
    command's output (which could be the secret).
    """
    if account.password_command:
        return _run_password_command(account)
    import keyring
    import keyring.errors

    try:
        secret = keyring.get_password(KEYRING_SERVICE, account.keyring_user)
    except keyring.errors.KeyringError as exc:
        raise CredentialError(
            f"the system keyring could not be read for account {account.name!r} "
            f"({type(exc).__name__}); unlock it, or set password_command in the config"
        ) from None
    if not secret:
        raise CredentialError(
            f"no password stored for account {account.name!r} ({account.keyring_user}); "
            f"run `spamguard account add {account.name}` or set password_command in the config"
        )
    return secret


def store_password(account: AccountSettings, secret: str) -> None:
    import keyring
    import keyring.errors

    try:
        keyring.set_password(KEYRING_SERVICE, account.keyring_user, secret)
    except keyring.errors.KeyringError as exc:
        raise CredentialError(
            f"the system keyring refused to store the password for {account.name!r} "
            f"({type(exc).__name__}); use password_command in the config instead"
        ) from None


def delete_password(account: AccountSettings) -> bool:
    """Forget the stored password; False when there was none."""
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(KEYRING_SERVICE, account.keyring_user)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise CredentialError(f"the system keyring failed: {type(exc).__name__}") from None
    return True


def _run_password_command(account: AccountSettings) -> str:
    command = account.password_command or ""
    try:
        done = subprocess.run(
            command,
            shell=True,  # the user writes it like mbsync's PassCmd: a shell line
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PASSWORD_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CredentialError(
            f"password_command for account {account.name!r} did not finish within "
            f"{PASSWORD_COMMAND_TIMEOUT:.0f} s; run it yourself to see why"
        ) from None
    except OSError as exc:
        raise CredentialError(
            f"password_command for account {account.name!r} could not be started ({exc.strerror})"
        ) from None
    if done.returncode != 0:
        # Not even stderr: a failing `pass`/`gpg` can print parts of what it was decrypting.
        raise CredentialError(
            f"password_command for account {account.name!r} failed with exit status "
            f"{done.returncode}; run it yourself in a terminal to see why"
        )
    secret = done.stdout.decode("utf-8", "replace").strip()
    if not secret:
        raise CredentialError(
            f"password_command for account {account.name!r} printed nothing; "
            "it must print the password on standard output"
        )
    return secret


def login(client: Any, account: AccountSettings) -> None:
    """Authenticate an `imapclient.IMAPClient` for ``account`` (password or OAuth2)."""
    from imapclient.exceptions import LoginError

    if account.auth == "oauth2":
        # Written separately (browser flow, refresh tokens); imported only for OAuth2 users.
        from spamguard.mail import oauth

        oauth.login_with_refresh(client, account.name, account.username, oauth_settings(account))
        return
    secret = get_password(account)
    try:
        client.login(account.username, secret)
    except LoginError:
        raise AuthError(
            f"{account.host} refused the password for {account.username} (account "
            f"{account.name!r}); check it, then store it again with "
            f"`spamguard account add {account.name}` or fix password_command"
        ) from None
    finally:
        del secret


def oauth_settings(account: AccountSettings) -> Any:
    """The account's `oauth.OAuthSettings`: a provider preset or an explicit [oauth] table."""
    from spamguard.mail import oauth

    raw = dict(account.oauth)
    if "provider" in raw:
        return oauth.preset(
            raw["provider"],
            raw.get("client_id", ""),
            raw.get("client_secret"),
            mechanism=raw.get("mechanism"),
            tenant=raw.get("tenant"),
        )
    if "scopes" in raw:
        raw["scopes"] = tuple(raw["scopes"])
    try:
        return oauth.OAuthSettings(**raw)
    except TypeError as exc:
        raise CredentialError(
            f"the [accounts.{account.name}.oauth] table is incomplete: {exc}"
        ) from None
