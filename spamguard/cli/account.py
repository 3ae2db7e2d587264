"""The account commands of the CLI: `account add|list|remove|edit|test|login`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from spamguard.cli.argtypes import port
from spamguard.cli.common import config_of, say
from spamguard.config import PRESETS, AccountSettings, Config, default_config_path, load_config
from spamguard.config.edit import (
    AccountKeys,
    account_key_lines,
    check_account_name,
    with_account_added,
    write_atomic,
)
from spamguard.errors import ConfigError, FolderMissingError, SpamGuardError


def register(subparsers: Any) -> None:
    """Add `spamguard account` to the CLI."""
    p = subparsers.add_parser("account", help="add, list, test or remove mail accounts")
    sub = p.add_subparsers(dest="account_command", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="add an account (or store its password in the keyring)")
    a.add_argument("name")
    a.add_argument("--provider", choices=sorted(PRESETS), help="fill host/port/Junk folder")
    a.add_argument("--host")
    a.add_argument("--port", type=port)
    a.add_argument("--security", choices=["tls", "starttls", "plain"])
    a.add_argument("--username")
    a.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )
    a.add_argument("--no-test", action="store_true", help="do not try to log in")
    consent = a.add_mutually_exclusive_group()
    consent.add_argument(
        "--learn-existing",
        action="store_true",
        default=None,
        help="learn from the mail the account already holds: Junk as spam, mail you read "
        "as not spam (read-only; asked when neither option is given, default no)",
    )
    consent.add_argument("--no-learn-existing", dest="learn_existing", action="store_false")
    a.set_defaults(func=cmd_account_add)
    a = sub.add_parser("list", help="list accounts")
    a.set_defaults(func=cmd_account_list)
    a = sub.add_parser(
        "remove",
        help="stop watching an account: remove it from the config and forget its stored "
        "password or tokens (your mail is not touched)",
    )
    a.add_argument("name")
    a.add_argument("--yes", action="store_true", help="do not ask on a terminal")
    a.set_defaults(func=cmd_account_remove)
    a = sub.add_parser(
        "edit",
        help="change an account's server, port, security, user name, Junk folder or password",
    )
    a.add_argument("name")
    a.add_argument("--host")
    a.add_argument("--port", type=port)
    a.add_argument("--security", choices=["tls", "starttls", "plain"])
    a.add_argument("--username")
    a.add_argument("--junk-folder", metavar="FOLDER", help='a folder name, or "auto"')
    a.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a new password from standard input (else a stored one moves with the account)",
    )
    a.set_defaults(func=cmd_account_edit)
    a = sub.add_parser("test", help="log in and check the folders")
    a.add_argument("name")
    a.set_defaults(func=cmd_account_test)
    a = sub.add_parser("login", help="sign in with OAuth2 in the browser")
    a.add_argument("name")
    a.set_defaults(func=cmd_account_login)


# -- accounts -------------------------------------------------------------------------------------


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if getattr(args, "config", None) else default_config_path()


def cmd_account_add(args: argparse.Namespace) -> int:
    from spamguard.mail.credentials import store_password

    path = _config_path(args)
    config = load_config(path) if path.exists() else Config(path=path, accounts={})
    if args.name not in config.accounts:
        check_account_name(args.name)
        if not (args.host or args.provider) or not args.username:
            raise ConfigError(
                f"account {args.name!r} is not in {path}: give --username and "
                "--host or --provider to add it"
            )
        keys = AccountKeys(
            username=args.username,
            host=args.host or None,
            port=args.port or None,
            security=args.security or None,
            provider=args.provider or None,
        )
        key_lines = account_key_lines(keys)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        new_text, config = with_account_added(text, args.name, key_lines, path=path)
        write_atomic(path, new_text)
        say(f"added account {args.name!r} to {path}")
        say(
            "see what SpamGuard would do before it moves anything: "
            f"spamguard run --once --dry-run --account {args.name}"
        )
    settings = config.account(args.name)
    if settings.auth == "oauth2":
        status = cmd_account_login(args)
        return status if status else _offer_first_sync(args)
    if settings.password_command:
        say(f"account {args.name!r} uses password_command; nothing to store")
    else:
        if args.password_stdin:
            secret = sys.stdin.readline().rstrip("\r\n")
        else:
            secret = getpass.getpass(f"Password for {settings.username} at {settings.host}: ")
        if not secret:
            raise SpamGuardError("no password given; nothing stored")
        if settings.password_store == "file":
            import os

            from spamguard.mail.credentials import PASSPHRASE_ENV, unlock_file_store

            unlock_file_store(
                os.environ.get(PASSPHRASE_ENV)
                or getpass.getpass("Passphrase of SpamGuard's encrypted password file: ")
            )
        store_password(settings, secret)
        del secret
        where = (
            "the encrypted password file"
            if settings.password_store == "file"
            else 'the system keyring (service "spamguard")'
        )
        say(f"password for {args.name!r} stored in {where}")
    status = 0 if args.no_test else _test_account(settings)
    return status if status else _offer_first_sync(args)


def _offer_first_sync(args: argparse.Namespace) -> int:
    """Learning from the account's existing mail: only when the user says yes."""
    wanted = getattr(args, "learn_existing", None)
    if wanted is None:
        if getattr(args, "password_stdin", False) or not sys.stdin.isatty():
            return 0  # nobody to ask: the answer is no
        answer = input(
            f"Learn from the mail {args.name!r} already holds? SpamGuard reads its Junk "
            "folder as spam and the mail you read as not spam (read-only; the newest 2,000 "
            "of each). [y/N] "
        )
        wanted = answer.strip().lower() in ("y", "yes")
    if not wanted:
        return 0
    from spamguard.cli.models import run_first_sync

    status = run_first_sync(args, args.name)
    return 0 if status == 3 else status  # too little to learn from is not a failed add


def cmd_account_list(args: argparse.Namespace) -> int:
    config = config_of(args)
    if not config.accounts:
        say(f"no accounts configured in {config.path or default_config_path()}")
    for name, a in config.accounts.items():
        if a.maildir:
            source = f"maildir {a.maildir}"
        elif a.auth == "oauth2":
            source = "OAuth2"
        elif a.password_command:
            source = "password_command"
        else:
            source = "keyring"
        say(
            f"{name}: {a.username}@{a.host}:{a.port} {a.security}, password from {source}, "
            f"watching {', '.join(a.watch_folders)}"
        )
    return 0


def cmd_account_remove(args: argparse.Namespace) -> int:
    """Remove ``[accounts.NAME]`` from the config and its secret from where it is kept, as the
    app's File > Remove account does; on a terminal it asks first (``--yes`` does not)."""
    from spamguard.engine.accounts import remove_account

    path = _config_path(args)
    config = config_of(args)
    config.account(args.name)  # an unknown name: the config's own one-line error
    if not args.yes and sys.stdin.isatty():
        answer = input(
            f"Remove {args.name!r} from {path} and forget its stored password or sign-in? "
            "Your mail on the server is not touched. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            say("nothing was removed")
            return 1
    forgot = remove_account(path, args.name)
    say(
        f"removed account {args.name!r} from {path}"
        + ("; its stored password or sign-in is forgotten" if forgot else "")
    )
    return 0


def cmd_account_edit(args: argparse.Namespace) -> int:
    """Change the given settings of an account, keeping every other line of its section; a
    stored password moves with a changed user name, server or store (the app's Edit account,
    `engine.accounts.update_account`)."""
    from spamguard.engine.accounts import update_account

    path = _config_path(args)
    old = config_of(args).account(args.name)
    changes = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "security": args.security,
            "username": args.username,
            "junk_folder": args.junk_folder,
        }.items()
        if v is not None
    }
    secret = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    if args.password_stdin and not secret:
        raise SpamGuardError("no password on standard input; nothing was changed")
    if not changes and not secret:
        raise ConfigError(
            "nothing to change: give --host, --port, --security, --username, --junk-folder "
            "or --password-stdin"
        )
    if secret and (old.auth != "password" or old.password_command):
        raise ConfigError(
            f"account {args.name!r} does not keep a password "
            f"({'OAuth2 sign-in' if old.auth != 'password' else 'password_command'}); "
            "nothing was changed"
        )
    if old.password_store == "file" and not old.password_command:
        from spamguard.mail.credentials import PASSPHRASE_ENV, file_store_locked, unlock_file_store

        if file_store_locked():
            unlock_file_store(
                os.environ.get(PASSPHRASE_ENV)
                or getpass.getpass("Passphrase of SpamGuard's encrypted password file: ")
            )
    keys = replace(
        AccountKeys.of(old),
        **changes,
        tls_fingerprint=None if {"host", "port"} & changes.keys() else old.tls_fingerprint,
    )
    update_account(path, args.name, keys, secret=secret)
    what = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
    say(
        f"changed account {args.name!r} in {path}: "
        + (what + ("; new password stored" if secret else "") if what else "new password stored")
    )
    if {"host", "port"} & changes.keys() and old.tls_fingerprint:
        say(
            "the certificate pinned for the old server was dropped; "
            f"`spamguard account test {args.name}` shows the new server's"
        )
    return 0


def cmd_account_test(args: argparse.Namespace) -> int:
    return _test_account(config_of(args).account(args.name))


def cmd_account_login(args: argparse.Namespace) -> int:
    from spamguard.mail import oauth
    from spamguard.mail.credentials import oauth_settings

    settings = config_of(args).account(args.name)
    if settings.auth != "oauth2":
        raise ConfigError(f'account {args.name!r} does not use auth = "oauth2"')
    say("opening the browser to sign in…")
    oauth.authorize(settings.name, oauth_settings(settings), login_hint=settings.username)
    say(f"signed in; tokens for {args.name!r} stored in the system keyring")
    return 0 if getattr(args, "no_test", False) else _test_account(settings)


def _test_account(settings: AccountSettings) -> int:
    from spamguard.mail.connect import open_mailstore
    from spamguard.mail.folders import find_junk_folder, find_sent_folder

    mail = open_mailstore(settings)
    mail.connect()
    try:
        say(f"logged in to {settings.host} as {settings.username}")
        caps = mail.capabilities
        wanted = [c for c in ("IDLE", "MOVE", "UIDPLUS", "CONDSTORE", "SPECIAL-USE") if c in caps]
        missing = [c for c in ("IDLE", "MOVE", "UIDPLUS") if c not in caps]
        say(
            f"server offers {' '.join(wanted) or 'none of IDLE/MOVE/UIDPLUS'}"
            + (f"; without {' '.join(missing)} SpamGuard uses its fallbacks" if missing else "")
        )
        try:
            say(f"Junk folder: {find_junk_folder(mail, settings)}")
        except FolderMissingError as exc:
            say(f"Junk folder: none ({exc})")
        say(f"Sent folder: {find_sent_folder(mail, settings) or 'none found'}")
        ok = True
        for folder in settings.watch_folders:
            try:
                status = mail.select(folder)
                say(f"watching {folder}: {status.exists} messages")
            except FolderMissingError:
                say(f"watching {folder}: MISSING")
                ok = False
    finally:
        mail.close()
    return 0 if ok else 1
