"""OAuth2 for IMAP: PKCE loopback sign-in, tokens in the keyring, XOAUTH2/OAUTHBEARER login.

Over 600 lines on purpose: the whole OAuth2 flow (PKCE loopback, token refresh, the keyring,
the SASL strings) for three providers, each step needed by the next.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import imapclient.exceptions
import keyring
import keyring.errors

from spamguard.errors import (
    ConfigError,
    OAuthError,
    OAuthFlowError,
    OAuthLoginRefused,
    OAuthSignInRequired,
    OAuthUnavailableError,
)

__all__ = [
    "GOOGLE",
    "KEYRING_SERVICE",
    "MICROSOFT",
    "PRESETS",
    "REFRESH_MARGIN_SECONDS",
    "Mechanism",
    "OAuthSettings",
    "TokenSet",
    "authorize",
    "exchange_code",
    "forget_tokens",
    "get_access_token",
    "imap_login",
    "load_tokens",
    "login_with_refresh",
    "pkce_pair",
    "preset",
    "refresh_tokens",
    "save_tokens",
]

log = logging.getLogger(__name__)

Mechanism = Literal["XOAUTH2", "OAUTHBEARER"]

#: Keyring service name; the keyring "username" is the SpamGuard account name.
KEYRING_SERVICE = "spamguard-oauth"
#: Access tokens are refreshed this many seconds before they expire.
REFRESH_MARGIN_SECONDS = 60.0
#: Path of the loopback redirect (RFC 8252 section 7.3): http://127.0.0.1:<port>/callback.
CALLBACK_PATH = "/callback"
#: Used when a token response has no expires_in.
DEFAULT_EXPIRES_IN = 3600.0
HTTP_TIMEOUT_SECONDS = 30.0

_MECHANISMS: tuple[Mechanism, ...] = ("XOAUTH2", "OAUTHBEARER")


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(name: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback_host(parts.hostname):
        return  # a local test or development server
    raise ConfigError(
        f"oauth {name} must be an https:// URL (plain http only on 127.0.0.1), got {url!r}"
    )


@dataclass(frozen=True)
class OAuthSettings:
    """How to talk to one OAuth2 provider.

    ``client_id`` (and for Google ``client_secret``) come from an OAuth client the
    application or the user registers with the provider as a *desktop / public*
    client; the presets leave them empty. Register the redirect URI
    ``http://127.0.0.1/callback``: Google desktop clients and Microsoft public
    clients accept any port on a loopback redirect, which is what the sign-in uses.
    """

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    mechanism: Mechanism = "XOAUTH2"
    #: Extra query parameters for the authorization request (Google needs
    #: access_type=offline and prompt=consent to hand out a refresh token).
    extra_authorize_params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_endpoint("authorize_url", self.authorize_url)
        _check_endpoint("token_url", self.token_url)
        if self.mechanism not in _MECHANISMS:
            raise ConfigError(
                f"oauth mechanism must be one of {', '.join(_MECHANISMS)}, got {self.mechanism!r}"
            )


#: Google (Gmail). IMAP host imap.gmail.com:993; XOAUTH2 and OAUTHBEARER both work.
#: Google requires the desktop client's client_secret in token requests (it is not
#: confidential for installed apps).
GOOGLE = OAuthSettings(
    authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",
    client_id="",
    scopes=("https://mail.google.com/",),
    mechanism="XOAUTH2",
    extra_authorize_params=(("access_type", "offline"), ("prompt", "consent")),
)

#: Microsoft 365 / Outlook.com. IMAP host outlook.office365.com:993; XOAUTH2 only.
#: Public client: no client_secret. Use tenant "common" or "organizations"
#: (or the tenant id) in the URLs; "common" covers work and personal accounts.
MICROSOFT = OAuthSettings(
    authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
    token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
    client_id="",
    scopes=("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
    mechanism="XOAUTH2",
)

PRESETS: Mapping[str, OAuthSettings] = {"google": GOOGLE, "microsoft": MICROSOFT}


def preset(
    provider: str,
    client_id: str,
    client_secret: str | None = None,
    *,
    mechanism: Mechanism | None = None,
    tenant: str | None = None,
) -> OAuthSettings:
    """Settings of a known provider ("google", "microsoft") with the app's client id filled in."""
    try:
        base = PRESETS[provider.lower()]
    except KeyError:
        raise ConfigError(
            f"oauth_provider must be one of {', '.join(sorted(PRESETS))}, got {provider!r}"
        ) from None
    if not client_id:
        raise ConfigError(
            f"oauth_client_id is required for oauth_provider {provider!r}: register a desktop "
            "OAuth client with the provider and put its client id in the account's config"
        )
    changes: dict[str, Any] = {"client_id": client_id, "client_secret": client_secret}
    if mechanism is not None:
        changes["mechanism"] = mechanism
    if tenant is not None:
        if base is not MICROSOFT:
            raise ConfigError("oauth_tenant only applies to oauth_provider 'microsoft'")
        tenant = urllib.parse.quote(tenant, safe="")
        changes["authorize_url"] = base.authorize_url.replace("/common/", f"/{tenant}/")
        changes["token_url"] = base.token_url.replace("/common/", f"/{tenant}/")
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class TokenSet:
    """Tokens of one account. ``repr`` never shows a token."""

    access_token: str = field(repr=False)
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "access_token": self.access_token,
                "expires_at": self.expires_at,
                "refresh_token": self.refresh_token,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise ValueError("not a SpamGuard token record")
        refresh = data.get("refresh_token")
        return cls(
            access_token=data["access_token"],
            expires_at=float(data.get("expires_at", 0.0)),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        )


# ---------------------------------------------------------------- keyring storage


def _keyring_failure(account_name: str, exc: Exception) -> OAuthError:
    return OAuthError(
        f"Cannot use the system keyring for the OAuth2 tokens of account {account_name!r} "
        f"({type(exc).__name__}). Unlock or install a keyring (Secret Service/GNOME Keyring, "
        "KWallet, macOS Keychain, Windows Credential Manager), then sign in again."
    )


def load_tokens(account_name: str) -> TokenSet | None:
    """The account's stored tokens; None if it never signed in or the record is unreadable."""
    try:
        text = keyring.get_password(KEYRING_SERVICE, account_name)
    except keyring.errors.KeyringError as exc:
        raise _keyring_failure(account_name, exc) from None
    if text is None:
        return None
    try:
        return TokenSet.from_json(text)
    except (ValueError, TypeError):
        log.warning("stored OAuth2 record of account %s is unreadable; ignoring it", account_name)
        return None


def save_tokens(account_name: str, tokens: TokenSet) -> None:
    """Store the account's tokens in the OS keyring (never in a file or a log)."""
    try:
        keyring.set_password(KEYRING_SERVICE, account_name, tokens.to_json())
    except keyring.errors.KeyringError as exc:
        raise _keyring_failure(account_name, exc) from None


def forget_tokens(account_name: str) -> None:
    """Delete the account's tokens (sign out); no error if there were none."""
    try:
        keyring.delete_password(KEYRING_SERVICE, account_name)
    except keyring.errors.PasswordDeleteError:
        return
    except keyring.errors.KeyringError as exc:
        raise _keyring_failure(account_name, exc) from None


# ---------------------------------------------------------------- token endpoint


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)`` for method S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, within 43..128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class _TokenEndpointRefused(Exception):
    """The token endpoint answered with an OAuth error (4xx)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.description = description


def _short(text: object, limit: int = 200) -> str:
    """Provider-supplied text made safe to show: printable, bounded."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return s[:limit]


def _post_token_endpoint(settings: OAuthSettings, form: dict[str, str]) -> dict[str, Any]:
    form = dict(form, client_id=settings.client_id)
    if settings.client_secret:
        form["client_secret"] = settings.client_secret
    body = urllib.parse.urlencode(form).encode("ascii")
    request = urllib.request.Request(
        settings.token_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        error, description = "http_error", ""
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            data = json.loads(raw)
            if isinstance(data, dict):
                error = _short(data.get("error", error), 80)
                description = _short(data.get("error_description", ""))
        if exc.code >= 500 or exc.code == 429:
            raise OAuthUnavailableError(
                f"The OAuth2 token endpoint {settings.token_url} answered HTTP {exc.code}; "
                "it will be retried later."
            ) from None
        raise _TokenEndpointRefused(exc.code, error, description) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OAuthUnavailableError(
            f"Cannot reach the OAuth2 token endpoint {settings.token_url} ({_short(reason)}); "
            "check the network connection. It will be retried later."
        ) from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise OAuthUnavailableError(
            f"The OAuth2 token endpoint {settings.token_url} sent a reply without an access token."
        )
    return data


def _token_set(data: Mapping[str, Any], now: float, old_refresh: str | None) -> TokenSet:
    token_type = str(data.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise OAuthError(
            f"The provider issued a {_short(token_type, 40)!r} token; IMAP needs Bearer."
        )
    try:
        expires_in = float(data.get("expires_in", DEFAULT_EXPIRES_IN))
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    refresh = data.get("refresh_token")
    return TokenSet(
        access_token=data["access_token"],
        expires_at=now + expires_in,
        refresh_token=refresh if isinstance(refresh, str) and refresh else old_refresh,
    )


def exchange_code(
    settings: OAuthSettings,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    *,
    now: Callable[[], float] = time.time,
) -> TokenSet:
    """Trade an authorization code (with its PKCE verifier) for tokens."""
    issued = now()
    try:
        data = _post_token_endpoint(
            settings,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
        )
    except _TokenEndpointRefused as exc:
        raise OAuthFlowError(
            f"The provider refused the sign-in code ({exc.error}"
            f"{': ' + exc.description if exc.description else ''}). "
            "Sign in again; if it keeps failing, check the OAuth client id and secret."
        ) from None
    return _token_set(data, issued, None)


def refresh_tokens(
    settings: OAuthSettings,
    refresh_token: str,
    *,
    account_name: str = "",
    now: Callable[[], float] = time.time,
) -> TokenSet:
    """New tokens from a refresh token; keeps the old one unless the provider rotates it."""
    issued = now()
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if settings.scopes:
        form["scope"] = " ".join(settings.scopes)
    try:
        data = _post_token_endpoint(settings, form)
    except _TokenEndpointRefused as exc:
        raise OAuthSignInRequired(
            f"The OAuth2 sign-in of account {account_name!r} is no longer valid "
            f"({exc.error}: the provider refused the refresh token; it may have been revoked "
            f"or expired). Sign in again: `spamguard account login {account_name}` "
            "or Accounts → Sign in in the app."
        ) from None
    return _token_set(data, issued, refresh_token)


# ---------------------------------------------------------------- access tokens

_account_locks: dict[str, threading.Lock] = {}
_account_locks_guard = threading.Lock()


def _account_lock(account_name: str) -> threading.Lock:
    with _account_locks_guard:
        return _account_locks.setdefault(account_name, threading.Lock())


def _sign_in_required(account_name: str, why: str) -> OAuthSignInRequired:
    return OAuthSignInRequired(
        f"Account {account_name!r} {why}. Sign in again: `spamguard account login "
        f"{account_name}` or Accounts → Sign in in the app."
    )


def get_access_token(
    account_name: str,
    settings: OAuthSettings,
    *,
    now: Callable[[], float] = time.time,
    force_refresh: bool = False,
    margin: float = REFRESH_MARGIN_SECONDS,
) -> str:
    """A valid access token for the account: the cached one, or a fresh one.

    The token is refreshed ``margin`` seconds before it expires (a failed IMAP
    login costs an anvil/rate-limit penalty, so never present a stale one). A
    rotated refresh token is stored at once. Raises ``OAuthSignInRequired`` when
    the user has to sign in again, ``OAuthUnavailableError`` when the provider
    cannot be reached (transient).
    """
    with _account_lock(account_name):
        tokens = load_tokens(account_name)
        if tokens is None:
            raise _sign_in_required(account_name, "has no OAuth2 sign-in stored")
        if not force_refresh and tokens.expires_at - margin > now():
            return tokens.access_token
        if tokens.refresh_token is None:
            raise _sign_in_required(
                account_name, "has an expired OAuth2 token and no refresh token"
            )
        fresh = refresh_tokens(settings, tokens.refresh_token, account_name=account_name, now=now)
        save_tokens(account_name, fresh)
        rotated = fresh.refresh_token != tokens.refresh_token
        log.info(
            "refreshed the OAuth2 access token of account %s (valid %d s%s)",
            account_name,
            int(fresh.expires_at - now()),
            ", refresh token rotated" if rotated else "",
        )
        return fresh.access_token


# ---------------------------------------------------------------- browser sign-in

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>SpamGuard</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h2>{title}</h2><p>{text}</p></body></html>"
)


@dataclass
class _CallbackResult:
    params: dict[str, str] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser's idle speculative connection must not block close
    result: _CallbackResult


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = 10  # drop connections that send nothing (browser pre-connects)
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._reply(404, "Not found", "This address only receives the sign-in answer.")
            return
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        params = {key: values[0] for key, values in query.items() if values}
        result = self.server.result
        with result.lock:
            first = result.params is None
            if first:
                result.params = params
        if first:
            ok = "code" in params and "error" not in params
            if ok:
                self._reply(200, "Signed in", "You can close this window and return to SpamGuard.")
            else:
                self._reply(
                    400, "Sign-in not completed", "Return to SpamGuard to see what went wrong."
                )
            result.done.set()
        else:
            self._reply(409, "Already answered", "Return to SpamGuard.")

    def _reply(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=title, text=text).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line carries the authorization code."""


def authorize(
    account_name: str,
    settings: OAuthSettings,
    *,
    open_browser: Callable[[str], object] = webbrowser.open,
    timeout: float = 300.0,
    login_hint: str | None = None,
    cancel: threading.Event | None = None,
    now: Callable[[], float] = time.time,
) -> TokenSet:
    """Sign the account in interactively and store its tokens in the keyring.

    Authorization-code flow with PKCE S256 and a loopback redirect (RFC 8252):
    listens once on ``http://127.0.0.1:<free port>/callback``, opens the
    authorization URL with ``open_browser`` (the Qt app passes
    ``QDesktopServices.openUrl``), waits up to ``timeout`` seconds (or until
    ``cancel`` is set), checks ``state``, then exchanges the code. Blocks: call it
    from a worker thread in a GUI. Raises ``OAuthFlowError`` on denial, state
    mismatch, timeout, cancel or a refused code.
    """
    if not settings.client_id:
        raise OAuthFlowError(
            "No OAuth client id is configured for this account: set oauth_client_id "
            "(a desktop OAuth client registered with the provider)."
        )
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    server = _CallbackServer(("127.0.0.1", 0), _CallbackHandler)
    server.result = _CallbackResult()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    try:
        port = server.server_address[1]
        redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        query: dict[str, str] = {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if settings.scopes:
            query["scope"] = " ".join(settings.scopes)
        if login_hint:
            query["login_hint"] = login_hint
        query.update(dict(settings.extra_authorize_params))
        separator = "&" if "?" in settings.authorize_url else "?"
        url = settings.authorize_url + separator + urllib.parse.urlencode(query)

        thread.start()
        log.info("OAuth2 sign-in of account %s: waiting on %s", account_name, redirect_uri)
        if open_browser(url) is False:
            log.warning(
                "Could not open a web browser. To sign in account %s, open this address: %s",
                account_name,
                url,
            )
        deadline = time.monotonic() + timeout
        result = server.result
        while not result.done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if cancel is not None and cancel.is_set():
                raise OAuthFlowError(f"Sign-in of account {account_name!r} was cancelled.")
            if time.monotonic() >= deadline:
                raise OAuthFlowError(
                    f"No answer from the browser within {int(timeout)} s; the sign-in of "
                    f"account {account_name!r} was abandoned. Try again."
                )
    finally:
        if thread.is_alive():
            server.shutdown()
        server.server_close()

    params = result.params or {}
    if not hmac.compare_digest(params.get("state", "").encode(), state.encode()):
        raise OAuthFlowError(
            "The sign-in answer did not match the request (state mismatch): it did not come "
            "from the sign-in SpamGuard started. Nothing was stored; try signing in again."
        )
    if "error" in params:
        error = _short(params["error"], 80)
        description = _short(params.get("error_description", ""))
        if error == "access_denied":
            what = "Access was denied at the provider (the sign-in was cancelled or refused)"
        else:
            what = f"The provider reported an error ({error})"
        raise OAuthFlowError(
            f"{what}{': ' + description if description else ''}. Account {account_name!r} "
            "was not signed in; try again and allow SpamGuard to read mail."
        )
    code = params.get("code")
    if not code:
        raise OAuthFlowError("The sign-in answer carried no authorization code; try again.")
    tokens = exchange_code(settings, code, verifier, redirect_uri, now=now)
    if tokens.refresh_token is None:
        log.warning(
            "the provider gave account %s no refresh token; it will have to sign in again "
            "when the access token expires",
            account_name,
        )
    with _account_lock(account_name):
        save_tokens(account_name, tokens)
    log.info("OAuth2 sign-in of account %s stored in the keyring", account_name)
    return tokens


# ---------------------------------------------------------------- IMAP login


def _offers_mechanism(client: Any, mechanism: str) -> bool | None:
    """Whether the server advertises AUTH=<mechanism>; None when it lists no AUTH= at all."""
    try:
        caps = client.capabilities()
    except Exception:  # capabilities are only a hint; let the login itself decide
        return None
    names = {c.decode("ascii", "replace") if isinstance(c, bytes) else str(c) for c in caps}
    auth = {n.upper() for n in names if n.upper().startswith("AUTH=")}
    if not auth:
        return None
    return f"AUTH={mechanism}" in auth


def imap_login(
    client: Any,
    username: str,
    token: str,
    mechanism: Mechanism = "XOAUTH2",
) -> None:
    """Authenticate an ``imapclient.IMAPClient`` with an access token.

    ``username`` must be the mailbox address the token was issued for. Raises
    ``OAuthLoginRefused`` when the server refuses the token, ``OAuthError`` when
    it does not offer the mechanism.
    """
    if mechanism not in _MECHANISMS:
        raise OAuthError(f"Unknown OAuth2 mechanism {mechanism!r}; use XOAUTH2 or OAUTHBEARER.")
    if _offers_mechanism(client, mechanism) is False:
        other = "OAUTHBEARER" if mechanism == "XOAUTH2" else "XOAUTH2"
        hint = (
            f'set oauth_mechanism = "{other}"'
            if _offers_mechanism(client, other)
            else "this server does not support OAuth2; use a password instead"
        )
        raise OAuthError(f"The IMAP server does not offer AUTH={mechanism}: {hint}.")
    try:
        if mechanism == "XOAUTH2":
            client.oauth2_login(username, token)
        else:
            client.oauthbearer_login(username, token)
    except imapclient.exceptions.LoginError as exc:
        reply = _short(str(exc).replace(token, "[token]"))
        raise OAuthLoginRefused(
            f"The IMAP server refused the OAuth2 token of {username} ({mechanism}): {reply}"
        ) from None


def login_with_refresh(
    client: Any,
    account_name: str,
    username: str,
    settings: OAuthSettings,
    *,
    now: Callable[[], float] = time.time,
) -> None:
    """Log in with the account's token; on AUTHENTICATIONFAILED refresh once and retry.

    Raises ``OAuthSignInRequired`` (an ``AuthError``) when the refresh fails or the
    server refuses the fresh token too, with a message saying what to do.
    """
    token = get_access_token(account_name, settings, now=now)
    try:
        imap_login(client, username, token, settings.mechanism)
        return
    except OAuthLoginRefused:
        log.info("IMAP refused the OAuth2 token of account %s; refreshing once", account_name)
    token = get_access_token(account_name, settings, now=now, force_refresh=True)
    try:
        imap_login(client, username, token, settings.mechanism)
    except OAuthLoginRefused as exc:
        raise OAuthSignInRequired(
            f"The IMAP server refused a freshly refreshed OAuth2 token for {username} "
            f"(account {account_name!r}). Check that the username is the address you signed "
            "in with and that IMAP access is enabled for the mailbox (Gmail: settings → "
            "IMAP; Microsoft 365: the admin must allow IMAP for the user), then sign in "
            f"again: `spamguard account login {account_name}`. Server said: {exc}"
        ) from None
