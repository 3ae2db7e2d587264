"""A stdlib OAuth2 authorization server and a Dovecot that accepts its tokens (tests only).

Used by tests/mail/test_oauth.py (the engine's sign-in and login) and by the account dialog's
browser sign-in test. `Browser` plays the system browser: it follows the provider's redirect
into SpamGuard's loopback listener.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
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

import pytest

from spamguard.mail import oauth
from spamguard.mail.oauth import OAuthSettings


class Unavailable(Exception):
    """Dovecot cannot run here (missing, or not root): the caller skips."""


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


@contextlib.contextmanager
def run_oauth_servers() -> Iterator[tuple[Authz, Dovecot]]:
    """A stdlib authorization server and a Dovecot that checks tokens against it."""
    if shutil.which("dovecot") is None:
        raise Unavailable(
            "dovecot is not installed (apt-get install -y dovecot-imapd; CI installs it)"
        )
    if os.geteuid() != 0:
        raise Unavailable("this Dovecot fixture runs as root (dovenull/dovecot service users)")

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


@pytest.fixture(scope="module", name="oauth_servers")
def oauth_servers_fixture() -> Iterator[tuple[Authz, Dovecot]]:
    """`run_oauth_servers` for one test module: import it there, use it as ``oauth_servers``."""
    try:
        with run_oauth_servers() as servers:
            yield servers
    except Unavailable as why:
        pytest.skip(str(why))
