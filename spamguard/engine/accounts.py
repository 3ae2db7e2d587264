"""Setting accounts up for the app and the CLI: provider presets by address, add / edit /
remove an account together with its stored secret, and a connection check.

The config text itself is written by `spamguard.config.edit`; here the secret and the text change
together, so nothing is ever half-added."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from spamguard.config import (
    PRESETS,
    AccountSettings,
    Config,
    Preset,
)
from spamguard.config.edit import (
    AccountKeys,
    account_key_lines,
    replace_account_keys,
    with_account_added,
    without_account,
    write_atomic,
)
from spamguard.engine.session import ConnectionReport
from spamguard.errors import (
    AuthError,
    ConfigError,
    ConnectionLostError,
    CredentialError,
    FolderMissingError,
    MailStoreError,
    OAuthError,
    OAuthUnavailableError,
    SpamGuardError,
    TLSError,
)
from spamguard.mail import oauth
from spamguard.mail.base import MailStore
from spamguard.mail.connect import open_mailstore
from spamguard.mail.credentials import delete_password, get_password, store_password, using_password
from spamguard.mail.folders import find_junk_folder

__all__ = [
    "add_account",
    "check_connection",
    "preset_for_email",
    "remove_account",
    "update_account",
]


# -- account setup ---------------------------------------------------------------------------------


def preset_for_email(address: str) -> Preset | None:
    """The provider preset an e-mail address suggests (by its domain), if any."""
    domain = address.rpartition("@")[2].strip().lower()
    by_domain = {
        "gmail.com": "gmail",
        "googlemail.com": "gmail",
        "outlook.com": "outlook",
        "hotmail.com": "outlook",
        "live.com": "outlook",
        "msn.com": "outlook",
        "fastmail.com": "fastmail",
        "fastmail.fm": "fastmail",
        "icloud.com": "icloud",
        "me.com": "icloud",
        "mac.com": "icloud",
        "yahoo.com": "yahoo",
        "ymail.com": "yahoo",
        "gmx.net": "gmx",
        "gmx.de": "gmx",
        "gmx.com": "gmx",
        "mailbox.org": "mailbox.org",
    }
    name = by_domain.get(domain)
    return PRESETS[name] if name else None


def update_account(
    path: Path, name: str, keys: AccountKeys, *, secret: str | None = None
) -> Config:
    """Rewrite the dialog's keys of ``[accounts.NAME]``, keeping every other line (watch
    folders, thresholds, lists, backlog). The password follows the account: ``secret`` is
    stored where the edited account keeps it; without one, a stored password moves when the
    user name, host or store changed. Config and secret change together, as in `add_account`.
    """

    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    key_lines = account_key_lines(replace(keys, backlog=None))  # an edit keeps the backlog
    new_text, old_config, config = replace_account_keys(text, name, key_lines, path=path)
    old, new = old_config.accounts[name], config.accounts[name]

    def stored_secret(a: AccountSettings) -> bool:
        return a.auth == "password" and not a.password_command

    moved = (old.keyring_user, old.password_store) != (new.keyring_user, new.password_store)
    stored = False
    if stored_secret(new):
        if not secret and moved and stored_secret(old):
            secret = get_password(old)  # carried over to where the edited account looks
        if secret:
            store_password(new, secret)
            stored = True
    try:
        write_atomic(path, new_text)
    except OSError as exc:
        if stored and moved:
            delete_password(new)
        raise ConfigError(f"could not write {path}: {exc.strerror}; nothing was changed") from None
    if stored_secret(old) and (moved or not stored_secret(new)):
        with suppress(SpamGuardError):
            delete_password(old)  # nothing left behind where the account no longer looks
    return config


def add_account(path: Path, name: str, keys: AccountKeys, *, secret: str | None = None) -> Config:
    """Append ``[accounts.NAME]`` to the config file (created if missing); validated first.

    With ``secret`` the password is stored (system keyring, or the encrypted file when
    ``password_store == "file"``) together with the config: the section is validated, then the
    secret stored, then the file written; if the write fails the secret is removed again, so
    nothing is ever half-added. ``password_command`` accounts store nothing.

    ``keys.oauth`` holds the ``oauth_*`` keys of an ``auth = "oauth2"`` account (provider,
    client_id, client_secret of the app's registration, mechanism, tenant); the user's
    tokens never go here, they live in the keyring. ``keys.backlog`` is the first scan's reach
    in words ("newest 500", "last 30 days", "everything"; None: the default).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    key_lines = account_key_lines(keys)
    new_text, config = with_account_added(text, name, key_lines, path=path)
    account = config.accounts[name]
    stored = False
    if secret and not account.password_command and account.auth == "password":
        store_password(account, secret)
        stored = True
    try:
        write_atomic(path, new_text)
    except OSError as exc:
        if stored:
            delete_password(account)
        raise ConfigError(f"could not write {path}: {exc.strerror}; nothing was added") from None
    return config


def remove_account(path: Path, name: str) -> bool:
    """Remove ``[accounts.NAME]`` (and its sub-tables) from the config file and forget its
    stored password or sign-in tokens. True when the stored secret was found and removed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    new_text, config = without_account(text, name, path=path)
    account = config.accounts[name]
    write_atomic(path, new_text)
    if account.auth == "oauth2":
        forgotten = oauth.load_tokens(name) is not None
        oauth.forget_tokens(name)
        return forgotten
    if account.password_command:
        return False

    try:
        return delete_password(account)
    except CredentialError:
        return False  # a locked or missing store: nothing SpamGuard can reach to remove


def check_connection(
    settings: AccountSettings, mail: MailStore | None = None, *, password: str | None = None
) -> ConnectionReport:
    """Log in, list folders and find Junk; every failure says what to do about it.

    With ``password`` the login uses it and nothing is stored anywhere (a connection test
    before the account exists)."""
    if password:
        with using_password(password):
            return check_connection(settings, mail)

    preset = PRESETS.get(settings.provider or "")
    store = mail if mail is not None else open_mailstore(settings)
    try:
        store.connect()
    except TLSError as exc:
        return ConnectionReport(
            False, str(exc), "tls", fingerprint=exc.fingerprint, certificate=exc.certificate
        )
    except CredentialError as exc:
        return ConnectionReport(False, str(exc), "credentials")
    except OAuthError as exc:  # its message says how to sign in again
        return ConnectionReport(False, str(exc), "auth")
    except OAuthUnavailableError as exc:
        return ConnectionReport(False, str(exc), "unreachable")
    except AuthError:
        hint = f" {settings.host} needs {preset.note}." if preset and preset.note else ""
        return ConnectionReport(
            False,
            f"{settings.host} refused the user name or password for {settings.username}. "
            f"Check both and try again.{hint}",
            "auth",
        )
    except (ConnectionLostError, OSError) as exc:
        return ConnectionReport(
            False,
            f"Could not reach {settings.host} on port {settings.port}: {exc}. Check the host "
            "name, the port and the security setting, and that this computer is online.",
            "unreachable",
        )
    except SpamGuardError as exc:
        return ConnectionReport(False, str(exc), "config")
    try:
        folders = tuple(f.name for f in store.list_folders())
        try:
            junk: str | None = find_junk_folder(store, settings)
        except FolderMissingError:
            junk = None
        return ConnectionReport(
            True,
            f"Signed in to {settings.host} as {settings.username}; {len(folders)} folders.",
            folders=folders,
            junk_folder=junk,
        )
    except MailStoreError as exc:
        return ConnectionReport(False, str(exc), "folder")
    finally:
        store.close()
