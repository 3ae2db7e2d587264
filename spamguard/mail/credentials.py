"""Account secrets: the system keyring, `password_command`, a passphrase-encrypted file, the
OAuth2 hand-off; never logged, never in the config.

The encrypted file is `keyrings.cryptfile`'s CryptFileKeyring (Argon2id key derivation, AES-GCM,
so a wrong passphrase or a tampered file is detected). SpamGuard drives it directly with a
passphrase it was given (`unlock_file_store`, or SPAMGUARD_SECRETS_PASSPHRASE for the headless
engine); it never lets the backend prompt on a terminal.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spamguard.config import AccountSettings
from spamguard.errors import AuthError, CredentialError

__all__ = [
    "KEYRING_SERVICE",
    "delete_password",
    "get_password",
    "keyring_problem",
    "login",
    "secrets_file",
    "store_password",
    "unlock_file_store",
    "using_password",
]

KEYRING_SERVICE = "spamguard"
PASSWORD_COMMAND_TIMEOUT = 60.0


PASSPHRASE_ENV = "SPAMGUARD_SECRETS_PASSPHRASE"
SECRETS_FILE_ENV = "SPAMGUARD_SECRETS_FILE"

_supplied = threading.local()  # a password given for one call (Test connection), never stored
_file_lock = threading.Lock()
_file_passphrase: str | None = None  # the encrypted file's passphrase, for this process only


@contextmanager
def using_password(secret: str) -> Iterator[None]:
    """Within the block, on this thread, every password-account login uses ``secret``:
    a connection test reaches the server without storing anything anywhere."""
    previous = getattr(_supplied, "secret", None)
    _supplied.secret = secret
    try:
        yield
    finally:
        _supplied.secret = previous


def keyring_problem() -> str | None:
    """None when a system keyring can keep passwords; else why not, in plain words.

    Passphrase-protected file backends that `keyring` may pick up on its own (keyrings.alt,
    keyrings.cryptfile) do not count: they would prompt on a terminal nobody is watching.
    """
    import keyring

    ring = keyring.get_keyring()
    members = getattr(ring, "backends", None)
    rings = list(members) if members is not None else [ring]
    usable = [r for r in rings if not _is_file_backend(r) and not _is_fail_backend(r)]
    if members is not None and usable:
        return None
    if members is None and not _is_fail_backend(ring):
        return None  # one backend chosen on purpose (keyringrc.cfg, PYTHON_KEYRING_BACKEND)
    return (
        "No system keyring is running on this computer (no Secret Service such as GNOME "
        "Keyring or KWallet), so SpamGuard cannot keep the password there."
    )


def _is_fail_backend(ring: Any) -> bool:
    return type(ring).__module__.startswith("keyring.backends.fail")


def _is_file_backend(ring: Any) -> bool:
    return type(ring).__module__.startswith(("keyrings.alt", "keyrings.cryptfile"))


def secrets_file() -> Path:
    """The encrypted password file: SPAMGUARD_SECRETS_FILE, else in the user's data folder."""
    override = os.environ.get(SECRETS_FILE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("spamguard")) / "secrets.cfg"


def unlock_file_store(passphrase: str) -> None:
    """Open (or create, on first use) the encrypted password file with ``passphrase``.

    Raises `CredentialError` on a wrong passphrase; keeps it in memory for this process.
    """
    global _file_passphrase
    if not passphrase:
        raise CredentialError("the passphrase of the encrypted password file is empty")
    _open_file_store(passphrase)
    with _file_lock:
        _file_passphrase = passphrase


def file_store_locked() -> bool:
    """True while no passphrase for the encrypted file was given to this process."""
    return _file_passphrase is None and not os.environ.get(PASSPHRASE_ENV)


def lock_file_store() -> None:
    global _file_passphrase
    with _file_lock:
        _file_passphrase = None


def _open_file_store(passphrase: str | None = None) -> Any:
    """A CryptFileKeyring on `secrets_file()` with its key set: it never prompts."""
    try:
        from keyrings.cryptfile.cryptfile import CryptFileKeyring
    except ImportError:
        raise CredentialError(
            "the encrypted password file needs the keyrings.cryptfile package: "
            "pip install keyrings.cryptfile"
        ) from None
    passphrase = passphrase or _file_passphrase or os.environ.get(PASSPHRASE_ENV)
    path = secrets_file()
    if not passphrase:
        raise CredentialError(
            f"the encrypted password file {path} is locked; enter its passphrase in the app, "
            f"or set {PASSPHRASE_ENV} for the command line"
        )
    ring = CryptFileKeyring()
    ring.file_path = str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Setting the key opens the file: it checks the passphrase against the file's
        # encrypted reference value, or creates the file with one. It never prompts.
        ring.keyring_key = passphrase
        path.chmod(0o600)
    except ValueError:
        raise CredentialError(f"wrong passphrase for the encrypted password file {path}") from None
    except OSError as exc:
        raise CredentialError(
            f"the encrypted password file {path} cannot be used ({exc.strerror})"
        ) from None
    return ring


def get_password(account: AccountSettings) -> str:
    """The account's password from `password_command`, else the keyring or the encrypted file.

    Errors name the account and what to do; they never contain the secret or the
    command's output (which could be the secret).
    """
    supplied = getattr(_supplied, "secret", None)
    if supplied:
        return str(supplied)
    if account.password_command:
        return _run_password_command(account)
    if account.password_store == "file":
        secret = _open_file_store().get_password(KEYRING_SERVICE, account.keyring_user)
        if not secret:
            raise CredentialError(
                f"no password for account {account.name!r} in the encrypted file "
                f"{secrets_file()}; add the account again in the app"
            )
        return str(secret)
    import keyring
    import keyring.errors

    problem = keyring_problem()
    if problem:
        raise CredentialError(
            f"{problem} Set password_command for account {account.name!r} in the config, "
            'or password_store = "file" with its passphrase'
        )
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
    """Keep ``secret`` where ``account.password_store`` says (never for password_command)."""
    if account.password_store == "file":
        _open_file_store().set_password(KEYRING_SERVICE, account.keyring_user, secret)
        return
    import keyring
    import keyring.errors

    problem = keyring_problem()
    if problem:
        raise CredentialError(problem + " Use a password command or the encrypted file instead.")
    try:
        keyring.set_password(KEYRING_SERVICE, account.keyring_user, secret)
    except keyring.errors.KeyringError as exc:
        raise CredentialError(
            f"the system keyring refused to store the password for {account.name!r} "
            f"({type(exc).__name__}); use password_command in the config instead"
        ) from None


def delete_password(account: AccountSettings) -> bool:
    """Forget the stored password; False when there was none."""
    if account.password_store == "file":
        ring = _open_file_store()
        if ring.get_password(KEYRING_SERVICE, account.keyring_user) is None:
            return False
        ring.delete_password(KEYRING_SERVICE, account.keyring_user)
        return True
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
