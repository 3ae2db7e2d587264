"""OAuth2 sign-in and IMAP login against a stdlib authorization server and a private Dovecot."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import imapclient
import imapclient.imap4
import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]
from oauth_servers import (
    CLIENT_ID,
    EMAIL,
    Authz,
    Browser,
    Dovecot,
    oauth_servers_fixture,  # noqa: F401  (the oauth_servers fixture)
)

from spamguard.errors import (
    AuthError,
    OAuthError,
    OAuthFlowError,
    OAuthLoginRefused,
    OAuthSignInRequired,
)
from spamguard.mail import oauth
from spamguard.mail.oauth import OAuthSettings

pytestmark = pytest.mark.imap


@pytest.fixture
def authz(oauth_servers: tuple[Authz, Dovecot]) -> Authz:
    oauth_servers[0].state.reset()
    return oauth_servers[0]


@pytest.fixture
def oauth_imap(oauth_servers: tuple[Authz, Dovecot]) -> Dovecot:
    return oauth_servers[1]


@pytest.fixture(autouse=True)
def temp_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    """A plaintext keyring in a temp file; the user's real keyring is never touched."""
    ring = PlaintextKeyring()
    ring.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


# ---------------------------------------------------------------- helpers


class _SourceIMAP4(imapclient.imap4.IMAP4WithTimeout):  # type: ignore[misc]
    """Connects from a chosen loopback address, so failed logins get their own anvil penalty."""

    source = "127.0.0.1"

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port),
            timeout if timeout is not None else self._timeout,
            source_address=(self.source, 0),
        )


def connect(oauth_imap: Dovecot, source: str = "127.0.0.1") -> imapclient.IMAPClient:
    class Client(imapclient.IMAPClient):  # type: ignore[misc]
        def _create_IMAP4(self) -> imapclient.imap4.IMAP4WithTimeout:
            imap = type("IMAP4", (_SourceIMAP4,), {"source": source})
            return imap(self.host, self.port, 10.0)

    return Client("127.0.0.1", oauth_imap.port, ssl=False, timeout=10)


def sign_in(authz: Authz, account: str, mechanism: oauth.Mechanism = "XOAUTH2") -> Browser:
    browser = Browser()
    oauth.authorize(account, authz.settings(mechanism), open_browser=browser, timeout=10)
    return browser


def stored(account: str) -> oauth.TokenSet:
    tokens = oauth.load_tokens(account)
    assert tokens is not None
    return tokens


# ---------------------------------------------------------------- tests


def test_pkce_flow_then_xoauth2_login_and_select_inbox(authz: Authz, oauth_imap: Dovecot) -> None:
    browser = sign_in(authz, "work")

    # the authorization request carried an S256 challenge; the exchange its verifier
    (auth_url,) = browser.callbacks
    assert auth_url.startswith("http://127.0.0.1:") and "/callback?" in auth_url
    exchange = authz.state.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert 43 <= len(exchange["code_verifier"]) <= 128

    tokens = stored("work")
    assert tokens.refresh_token in authz.state.refresh
    assert keyring.get_password("spamguard-oauth", "work") is not None
    assert "at-" not in repr(tokens) and "rt-" not in repr(tokens)

    with connect(oauth_imap) as client:
        oauth.login_with_refresh(client, "work", EMAIL, authz.settings())
        info = client.select_folder("INBOX")
        assert b"EXISTS" in info
    assert authz.state.introspections[-1] == (tokens.access_token, True)


def test_oauthbearer_login(authz: Authz, oauth_imap: Dovecot) -> None:
    sign_in(authz, "bearer", mechanism="OAUTHBEARER")
    token = oauth.get_access_token("bearer", authz.settings("OAUTHBEARER"))
    with connect(oauth_imap) as client:
        oauth.imap_login(client, EMAIL, token, "OAUTHBEARER")
        client.select_folder("INBOX")


def test_replayed_code_and_wrong_verifier_are_refused(authz: Authz) -> None:
    browser = sign_in(authz, "replay")
    redirect = browser.callbacks[-1].split("?")[0]
    verifier = authz.state.token_requests[-1]["code_verifier"]
    with pytest.raises(OAuthFlowError, match="refused the sign-in code"):
        oauth.exchange_code(authz.settings(), browser.code(), verifier, redirect)

    # a fresh code presented with someone else's verifier fails the PKCE check
    thief = Browser()
    with pytest.raises(OAuthFlowError):
        oauth.authorize(
            "thief",
            authz.settings(),
            open_browser=lambda url: thief(url.replace("state=", "state=x")),
            timeout=10,
        )
    with pytest.raises(OAuthFlowError, match="invalid_grant"):
        oauth.exchange_code(authz.settings(), thief.code(), oauth.pkce_pair()[0], redirect)


def test_state_mismatch_is_refused_and_nothing_stored(authz: Authz) -> None:
    def forge(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query["state"] = "forged"
        return parts._replace(query=urllib.parse.urlencode(query)).geturl()

    browser = Browser(tamper=forge)
    with pytest.raises(OAuthFlowError, match="state mismatch"):
        oauth.authorize("csrf", authz.settings(), open_browser=browser, timeout=10)
    assert oauth.load_tokens("csrf") is None
    # the code was never exchanged
    assert all(r.get("code") != browser.code() for r in authz.state.token_requests)


def test_denied_consent_gives_a_clear_error(authz: Authz) -> None:
    authz.state.deny = True
    with pytest.raises(OAuthFlowError, match="denied") as info:
        oauth.authorize("denied", authz.settings(), open_browser=Browser(), timeout=10)
    assert "The user said no" in str(info.value)
    assert oauth.load_tokens("denied") is None


def test_no_answer_times_out_and_cancel_stops(
    authz: Authz, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with pytest.raises(OAuthFlowError, match="No answer from the browser"):
        oauth.authorize("slow", authz.settings(), open_browser=lambda url: False, timeout=0.5)
    assert time.monotonic() - started < 5
    assert "open this address" in caplog.text  # a headless user can still sign in

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(OAuthFlowError, match="cancelled"):
        oauth.authorize(
            "slow", authz.settings(), open_browser=lambda url: True, timeout=60, cancel=cancel
        )


def test_expired_access_token_is_refreshed_before_login(authz: Authz, oauth_imap: Dovecot) -> None:
    t0 = time.time()
    oauth.authorize(
        "expiring", authz.settings(), open_browser=Browser(), timeout=10, now=lambda: t0
    )
    old = stored("expiring")
    authz.state.access[old.access_token].expires_at = 0  # the provider let it expire

    # 120 s before expiry: the cached token is served as is
    later = t0 + authz.state.expires_in - 120
    assert (
        oauth.get_access_token("expiring", authz.settings(), now=lambda: later) == old.access_token
    )

    # 30 s before expiry (inside the 60 s margin): refreshed before any login attempt
    seen = len(authz.state.introspections)
    almost = t0 + authz.state.expires_in - 30
    with connect(oauth_imap) as client:
        oauth.login_with_refresh(client, "expiring", EMAIL, authz.settings(), now=lambda: almost)
        client.select_folder("INBOX")
    new = stored("expiring")
    assert new.access_token != old.access_token
    assert authz.state.introspections[seen:] == [(new.access_token, True)]  # one login, no failure


def test_refresh_token_rotation(authz: Authz) -> None:
    sign_in(authz, "rotate")
    first = stored("rotate")
    oauth.get_access_token("rotate", authz.settings(), force_refresh=True)
    second = stored("rotate")
    assert second.refresh_token not in (None, first.refresh_token)
    assert second.refresh_token in authz.state.refresh
    with pytest.raises(OAuthSignInRequired):  # the old one is dead on the server
        oauth.refresh_tokens(authz.settings(), str(first.refresh_token))

    # a provider that does not rotate (Google): the stored refresh token is kept
    authz.state.rotate = False
    oauth.get_access_token("rotate", authz.settings(), force_refresh=True)
    third = stored("rotate")
    assert third.refresh_token == second.refresh_token
    assert third.access_token != second.access_token


def test_revoked_refresh_token_asks_to_sign_in_again(authz: Authz, oauth_imap: Dovecot) -> None:
    sign_in(authz, "revoked")
    tokens = stored("revoked")
    del authz.state.refresh[str(tokens.refresh_token)]
    future = time.time() + 7200

    with pytest.raises(OAuthSignInRequired) as info:
        oauth.get_access_token("revoked", authz.settings(), now=lambda: future)
    assert isinstance(info.value, AuthError)
    assert "Sign in again" in str(info.value) and "spamguard account login revoked" in str(
        info.value
    )

    # still-valid-looking access token revoked too: refused login, refresh fails -> AuthError
    authz.state.access[tokens.access_token].revoked = True
    with connect(oauth_imap, source="127.0.0.3") as client, pytest.raises(OAuthSignInRequired):
        oauth.login_with_refresh(client, "revoked", EMAIL, authz.settings())


def test_never_signed_in_is_an_auth_error() -> None:
    settings = OAuthSettings("https://a.example/auth", "https://a.example/token", CLIENT_ID)
    with pytest.raises(AuthError, match="Sign in again"):
        oauth.get_access_token("nobody", settings)


def test_refused_token_is_refreshed_once_and_retried(authz: Authz, oauth_imap: Dovecot) -> None:
    sign_in(authz, "retry")
    tokens = stored("retry")
    authz.state.access[tokens.access_token].revoked = True  # server-side revocation
    with connect(oauth_imap, source="127.0.0.2") as client:
        oauth.login_with_refresh(client, "retry", EMAIL, authz.settings())
        client.select_folder("INBOX")
    assert stored("retry").access_token != tokens.access_token


def test_wrong_username_fails_after_one_refresh_with_actionable_error(
    authz: Authz, oauth_imap: Dovecot
) -> None:
    sign_in(authz, "mismatch")
    before = len(authz.state.token_requests)
    with connect(oauth_imap, source="127.0.0.4") as client, pytest.raises(AuthError) as info:
        oauth.login_with_refresh(client, "mismatch", "bob@example.test", authz.settings())
    assert len(authz.state.token_requests) == before + 1  # exactly one refresh
    message = str(info.value)
    assert "username is the address you signed in with" in message
    assert "Username 'bob@example.test' did not match" in oauth_imap.log()

    with connect(oauth_imap, source="127.0.0.6") as client, pytest.raises(OAuthLoginRefused):
        oauth.imap_login(client, EMAIL, "not-a-token", "XOAUTH2")


def test_mechanism_not_offered_is_reported() -> None:
    class FakeClient:
        def capabilities(self) -> tuple[bytes, ...]:
            return (b"IMAP4REV1", b"AUTH=PLAIN", b"AUTH=OAUTHBEARER")

    with pytest.raises(OAuthError, match='oauth_mechanism = "OAUTHBEARER"'):
        oauth.imap_login(FakeClient(), EMAIL, "token", "XOAUTH2")


def test_presets_and_settings_validation() -> None:
    google = oauth.preset("google", "id.apps.googleusercontent.com", "secret")
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.scopes == ("https://mail.google.com/",)
    assert "secret" not in repr(google)
    ms = oauth.preset("microsoft", "app-id", tenant="organizations")
    assert ms.token_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in ms.scopes
    assert "offline_access" in ms.scopes
    with pytest.raises(Exception, match="oauth_client_id"):
        oauth.preset("google", "")
    with pytest.raises(Exception, match="https"):
        OAuthSettings("http://evil.example/auth", "https://a.example/token", CLIENT_ID)


def test_tokens_never_appear_in_logs_output_or_errors(
    authz: Authz,
    oauth_imap: Dovecot,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    # The CLI quiets imapclient to INFO (its DEBUG trace holds message bodies); this test
    # wants that trace, to prove no token appears in it.
    caplog.set_level(logging.DEBUG, logger="imapclient")
    errors: list[str] = []
    sign_in(authz, "secretive")
    tokens = stored("secretive")
    authz.state.access[tokens.access_token].revoked = True
    with connect(oauth_imap, source="127.0.0.5") as client:  # refused, refreshed, retried
        oauth.login_with_refresh(client, "secretive", EMAIL, authz.settings())
        client.select_folder("INBOX")
    with connect(oauth_imap, source="127.0.0.7") as client:
        try:
            oauth.imap_login(client, EMAIL, tokens.access_token, "OAUTHBEARER")
        except OAuthLoginRefused as exc:
            errors.append(str(exc))
    del authz.state.refresh[str(stored("secretive").refresh_token)]
    try:
        oauth.get_access_token("secretive", authz.settings(), force_refresh=True)
    except OAuthSignInRequired as exc:
        errors.append(str(exc))
    assert len(errors) == 2

    out, err = capfd.readouterr()
    assert "imapclient" in caplog.text  # the IMAP conversation itself was logged at DEBUG
    haystack = caplog.text + out + err + "\n".join(errors)
    leaked = [s for s in authz.state.secrets if s and s in haystack]
    encoded = [
        base64.b64encode(f"user={EMAIL}\1auth=Bearer {s}\1\1".encode()).decode()
        for s in authz.state.secrets
    ]
    leaked += [e for e in encoded if e in haystack]
    assert leaked == []
