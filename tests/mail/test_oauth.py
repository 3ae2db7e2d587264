"""OAuth2 sign-in and IMAP login against a stdlib authorization server and a private Dovecot."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import imapclient
import imapclient.imap4
import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

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

EMAIL = "alice@example.test"
CLIENT_ID = "spamguard-test-client"


# ---------------------------------------------------------------- authorization server


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Code:
    challenge: str
    redirect_uri: str
    email: str
    used: bool = False


@dataclass
class _Access:
    email: str
    expires_at: float
    revoked: bool = False


@dataclass
class AuthzState:
    """The server's books; tests edit them directly (expire, revoke, deny)."""

    deny: bool = False
    rotate: bool = True
    expires_in: int = 3600
    codes: dict[str, _Code] = field(default_factory=dict)
    access: dict[str, _Access] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)  # token -> email (active ones only)
    secrets: list[str] = field(default_factory=list)  # every code/token ever issued or seen
    introspections: list[tuple[str, bool]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, email: str) -> dict[str, Any]:
        at = "at-" + secrets.token_urlsafe(24)
        rt = "rt-" + secrets.token_urlsafe(24)
        self.access[at] = _Access(email, time.time() + self.expires_in)
        self.refresh[rt] = email
        self.secrets += [at, rt]
        return {
            "access_token": at,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": rt,
        }

    def reset(self) -> None:
        self.deny, self.rotate, self.expires_in = False, True, 3600


class _AuthzServer(ThreadingHTTPServer):
    daemon_threads = True
    state: AuthzState


class _AuthzHandler(BaseHTTPRequestHandler):
    server: _AuthzServer
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
        if parts.path == "/authorize":
            self._authorize(query)
        elif parts.path == "/introspect":
            self._introspect(query.get("access_token", ""))
        else:
            self._send(404)

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        form = self._form()
        if path == "/token":
            self._token(form)
        elif path == "/introspect":
            token = form.get("token") or form.get("access_token") or ""
            auth = self.headers.get("Authorization", "")
            if not token and auth.lower().startswith("bearer "):
                token = auth[7:]
            self._introspect(token)
        else:
            self._send(404)

    def _authorize(self, q: dict[str, str]) -> None:
        st = self.server.state
        redirect = q.get("redirect_uri", "")
        r = urllib.parse.urlsplit(redirect)
        if (
            q.get("response_type") != "code"
            or q.get("client_id") != CLIENT_ID
            or r.scheme != "http"
            or r.hostname != "127.0.0.1"
            or q.get("code_challenge_method") != "S256"
            or len(q.get("code_challenge", "")) != 43
            or "state" not in q
        ):
            self._send(400, b"bad authorization request")
            return
        if st.deny:
            answer = {"error": "access_denied", "error_description": "The user said no"}
        else:
            code = "code-" + secrets.token_urlsafe(16)
            with st.lock:
                st.codes[code] = _Code(q["code_challenge"], redirect, q.get("login_hint", EMAIL))
                st.secrets.append(code)
            answer = {"code": code}
        answer["state"] = q["state"]
        self._send(302, headers={"Location": redirect + "?" + urllib.parse.urlencode(answer)})

    def _token(self, form: dict[str, str]) -> None:
        st = self.server.state
        with st.lock:
            st.token_requests.append(form)
            if form.get("client_id") != CLIENT_ID:
                self._json(401, {"error": "invalid_client"})
                return
            grant = form.get("grant_type")
            if grant == "authorization_code":
                st.secrets.append(form.get("code_verifier", ""))
                rec = st.codes.get(form.get("code", ""))
                if (
                    rec is None
                    or rec.used
                    or rec.redirect_uri != form.get("redirect_uri")
                    or _s256(form.get("code_verifier", "")) != rec.challenge
                ):
                    if rec is not None:
                        rec.used = True  # a failed or replayed code is burnt
                    self._json(400, {"error": "invalid_grant", "error_description": "bad code"})
                    return
                rec.used = True
                self._json(200, st.issue(rec.email))
            elif grant == "refresh_token":
                rt = form.get("refresh_token", "")
                email = st.refresh.get(rt)
                if email is None:
                    self._json(400, {"error": "invalid_grant", "error_description": "revoked"})
                    return
                answer = st.issue(email)
                if st.rotate:
                    del st.refresh[rt]
                else:
                    del st.refresh[answer.pop("refresh_token")]
                self._json(200, answer)
            else:
                self._json(400, {"error": "unsupported_grant_type"})

    def _introspect(self, token: str) -> None:
        st = self.server.state
        with st.lock:
            rec = st.access.get(token)
            active = rec is not None and not rec.revoked and rec.expires_at > time.time()
            st.introspections.append((token, active))
        if rec is not None and active:
            self._json(200, {"active": True, "email": rec.email, "client_id": CLIENT_ID})
        else:
            self._json(200, {"active": False})


@dataclass
class Authz:
    state: AuthzState
    base: str

    def settings(self, mechanism: oauth.Mechanism = "XOAUTH2") -> OAuthSettings:
        return OAuthSettings(
            authorize_url=f"{self.base}/authorize",
            token_url=f"{self.base}/token",
            client_id=CLIENT_ID,
            scopes=("mail",),
            mechanism=mechanism,
        )


# ---------------------------------------------------------------- Dovecot


@dataclass
class Dovecot:
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_greeting(proc: subprocess.Popen[bytes], port: int, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(256).startswith(b"* OK"):
                    return
        except OSError:
            pass
        try:  # doubles as the pause between attempts and as the liveness check
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"dovecot exited with {proc.returncode} before greeting")
    raise RuntimeError("dovecot did not greet within 15 s")


@pytest.fixture(scope="module")
def oauth_servers() -> Iterator[tuple[Authz, Dovecot]]:
    if shutil.which("dovecot") is None:
        pytest.skip("dovecot is not installed (apt-get install -y dovecot-imapd; CI installs it)")
    if os.geteuid() != 0:
        pytest.skip("this Dovecot fixture runs as root (dovenull/dovecot service users)")

    httpd = _AuthzServer(("127.0.0.1", 0), _AuthzHandler)
    httpd.state = AuthzState()
    http_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    http_thread.start()
    authz = Authz(httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}")

    tmp = Path(tempfile.mkdtemp(prefix="spamguard-oauth-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        tmp.chmod(0o755)
        for sub in ("mail", "home"):
            (tmp / sub).mkdir()
            shutil.chown(tmp / sub, "nobody", "nogroup")
        port = _free_port()
        (tmp / "dovecot-oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = {authz.base}/introspect\n"
            "username_attribute = email\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 5000\n"
        )
        conf = tmp / "dovecot.conf"
        conf.write_text(
            f"""protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
instance_name = spamguard-oauth-test-{port}
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot.log
debug_log_path = {tmp}/dovecot.log
auth_verbose = yes
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain xoauth2 oauthbearer
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:{tmp}/mail/%u
auth_failure_delay = 0
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {tmp}/dovecot-oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={tmp}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        )
        proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as one below
        )
        _wait_for_greeting(proc, port)
        yield authz, Dovecot(port, tmp / "dovecot.log")
    finally:
        if proc is not None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        httpd.shutdown()
        httpd.server_close()
        http_thread.join()
        shutil.rmtree(tmp, ignore_errors=True)


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


class Browser:
    """Plays the system browser: follows the provider's redirect into the loopback listener."""

    def __init__(self, tamper: Callable[[str], str] | None = None) -> None:
        self.tamper = tamper
        self.callbacks: list[str] = []

    def __call__(self, url: str) -> bool:
        outer = self

        class Redirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(
                self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
            ) -> Any:
                if outer.tamper is not None:
                    newurl = outer.tamper(newurl)
                outer.callbacks.append(newurl)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        opener = urllib.request.build_opener(Redirect)
        try:
            with opener.open(url, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
        return True

    def code(self) -> str:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.callbacks[-1]).query)
        return query["code"][0]


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
