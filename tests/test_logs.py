"""The log file: rotating, private, and never holding a password, a token or a message body."""

from __future__ import annotations

import base64
import logging
import logging.handlers
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spamguard.logs import LOG_FILE, add_secret, current_log_file, redact, setup_logging

sys.path.insert(0, str(Path(__file__).parent / "mail"))
from dovecot_server import DOVECOT, DovecotServer

PASSWORD_FROM_COMMAND = "Zq8-only-the-command-knows-4711"
ACCESS_TOKEN = "ya29.a0AfB_byC7fake-access-token-value_0123456789"
REFRESH_TOKEN = "1//0gFakeRefreshTokenValue-abcdefghijklmnop"
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sifQ.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    path = setup_logging(verbose=True, log_dir=tmp_path / "logs")
    assert path is not None
    yield path
    setup_logging(False, tmp_path / "logs-after")  # replaces (and closes) this test's handlers
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def _flushed(path: Path) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text("utf-8")


def test_file_in_the_given_dir_private_and_rotating(log_file: Path) -> None:
    assert log_file.name == LOG_FILE and current_log_file() == log_file
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    handler = next(
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.handlers.RotatingFileHandler)
    )
    assert handler.maxBytes > 0 and handler.backupCount > 0
    logging.getLogger("spamguard.test").info("hello from the test")
    assert "hello from the test" in _flushed(log_file)


def test_default_dir_is_the_platform_log_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from spamguard.logs import default_log_dir

    monkeypatch.delenv("SPAMGUARD_LOG_DIR", raising=False)
    assert default_log_dir() == Path(platformdirs.user_log_dir("spamguard", appauthor=False))


@pytest.mark.parametrize(
    "line",
    [
        f"POST /token Authorization: Bearer {ACCESS_TOKEN}",
        f"headers={{'Authorization': 'Basic {base64.b64encode(b'me:pw').decode()}'}}",
        f'token reply {{"access_token": "{ACCESS_TOKEN}", "refresh_token": "{REFRESH_TOKEN}"}}',
        f"refresh_token={REFRESH_TOKEN}&client_secret=s3cr3t-client",
        f"id token {JWT}",
        "> b'AB12 LOGIN alice \"p@ss w0rd\"'",
        "password = hunter2hunter2",
        "imaps://alice:hunter2hunter2@imap.example.org/INBOX",
    ],
)
def test_redact_shapes(line: str) -> None:
    out = redact(line)
    assert "[redacted]" in out
    for secret in (
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        JWT,
        "p@ss w0rd",
        "hunter2hunter2",
        "s3cr3t-client",
    ):
        assert secret not in out


def test_xoauth2_payload_as_imaplib_sends_it(log_file: Path) -> None:
    # imapclient redacts the AUTHENTICATE command line but not the base64 continuation line.
    for raw in (
        f"user=me@example.org\x01auth=Bearer {ACCESS_TOKEN}\x01\x01",
        f"n,a=me@example.org,\x01auth=Bearer {ACCESS_TOKEN}\x01\x01",
    ):
        payload = base64.b64encode(raw.encode()).decode()
        logging.getLogger("imapclient.imaplib").warning("> b'%s'", payload)
        logging.getLogger("spamguard.mail.oauth").info("SASL %s", raw)
    text = _flushed(log_file)
    assert ACCESS_TOKEN not in text
    assert (
        base64.b64encode(f"user=me@example.org\x01auth=Bearer {ACCESS_TOKEN}".encode()).decode()[
            :40
        ]
        not in text
    )
    assert "[redacted]" in text


def test_tracebacks_and_registered_secrets(log_file: Path) -> None:
    add_secret("opaque-value-without-shape-991")
    try:
        raise RuntimeError(f"server said: Authorization: Bearer {ACCESS_TOKEN}")
    except RuntimeError:
        logging.getLogger("spamguard.test").exception("failed with opaque-value-without-shape-991")
    text = _flushed(log_file)
    assert "RuntimeError" in text and "Traceback" in text
    assert ACCESS_TOKEN not in text
    assert "opaque-value-without-shape-991" not in text


def test_long_lines_are_cut(log_file: Path) -> None:
    body = "Dear customer, " * 1000
    logging.getLogger("spamguard.test").info("message %s", body)
    text = _flushed(log_file)
    assert "chars cut" in text
    assert len(text) < 3000


def test_imap_protocol_trace_is_not_logged(log_file: Path) -> None:
    # FETCH responses in imaplib's trace are whole messages: the trace stays out even at -v.
    logging.getLogger("imapclient.imaplib").debug("< b'* 1 FETCH (BODY[] {42}' the body text")
    assert "the body text" not in _flushed(log_file)


@pytest.mark.imap
def test_password_command_output_never_reaches_the_log(tmp_path: Path, log_file: Path) -> None:
    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    from spamguard.config import parse_config
    from spamguard.engine.accounts import check_connection

    server = DovecotServer()
    with (server.root / "passwd").open("a") as fh:
        fh.write(f"logtest:{{PLAIN}}{PASSWORD_FROM_COMMAND}::::::\n")
    server.start()
    try:
        # Everything at DEBUG, imapclient's protocol logger included, as a user chasing a bug.
        logging.getLogger("imapclient").setLevel(logging.DEBUG)
        for password in (PASSWORD_FROM_COMMAND, PASSWORD_FROM_COMMAND + "-wrong"):
            settings = parse_config(
                f'[accounts.t]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
                f'username = "logtest"\npassword_command = "echo {password}"\n'
            ).accounts["t"]
            report = check_connection(settings)
            assert report.ok is (password == PASSWORD_FROM_COMMAND), report
            logging.getLogger("spamguard.test").info("connection report: %s", report)
        text = _flushed(log_file)
    finally:
        server.cleanup()
    assert "LOGIN" in text or "logtest" in text, "the test must have logged the session"
    assert PASSWORD_FROM_COMMAND not in text
