"""A private Dovecot for tests and benchmarks: start, stop, restart, users, seeding."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)
DOVEADM = shutil.which("doveadm") or (
    "/usr/bin/doveadm" if Path("/usr/bin/doveadm").exists() else None
)
PASSWORD = "secret"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_cert(directory: Path, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed EC certificate, as an admin of a small home server would make one."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "30",
            "-subj",
            f"/CN={cn}",
            "-addext",
            f"subjectAltName=DNS:{cn},IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(key, 0o644)
    return key, cert


@dataclass
class DovecotServer:
    """One Dovecot process group in its own temp dir, listening on 127.0.0.1."""

    capabilities: str | None = None  # imap_capability override, e.g. to drop MOVE or UIDPLUS
    tls: bool = False
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sg-dovecot-")))
    port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra_conf: str = ""  # appended to dovecot.conf (ACLs, plugins)
    _users: int = 0

    def __post_init__(self) -> None:
        os.chmod(self.root, 0o755)
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        self.port = self.port or free_port()
        self.tls_port = self.tls_port or free_port()
        # Dovecot re-reads passwd-file at most once a second, so users are made up front.
        (self.root / "passwd").write_text(
            "".join(f"user{i}:{{PLAIN}}{PASSWORD}::::::\n" for i in range(1, 401))
        )
        if os.geteuid() == 0:
            os.chown(self.root / "mail", 65534, 65534)
        self.write_conf()

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def write_conf(self) -> None:
        root = self.root
        if os.geteuid() == 0:
            users = """
                default_login_user = dovenull
                default_internal_user = dovecot
                mail_uid = 65534
                mail_gid = 65534
            """
            chroot = ""
        else:
            users = f"""
                default_login_user = nobody
                default_internal_user = nobody
                default_internal_group = nogroup
                mail_uid = {os.getuid()}
                mail_gid = {os.getgid()}
            """
            chroot = "chroot ="
        tls = "ssl = no"
        tls_listener = ""
        if self.tls:
            key, cert = make_cert(root)
            self.cert = cert
            tls = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
            tls_listener = (
                f"inet_listener imaps {{\n address = 127.0.0.1\n port = {self.tls_port}\n"
                " ssl = yes\n }"
            )
        caps = f"imap_capability = {self.capabilities}" if self.capabilities else ""
        conf = textwrap.dedent(f"""
            protocols = imap
            listen = 127.0.0.1, 127.0.0.2
            base_dir = {root}/run
            state_dir = {root}/state
            log_path = {root}/dovecot.log
            info_log_path = {root}/dovecot.log
            {tls}
            disable_plaintext_auth = no
            auth_failure_delay = 0
            auth_cache_size = 0
            first_valid_uid = 1
            first_valid_gid = 1
            {users}
            mail_location = maildir:{root}/mail/%u
            {caps}
            passdb {{
              driver = passwd-file
              args = scheme=PLAIN username_format=%u {root}/passwd
            }}
            userdb {{
              driver = static
              args = home={root}/mail/%u allow_all_users=yes
            }}
            service imap-login {{
              {chroot}
              inet_listener imap {{
                address = 127.0.0.1, 127.0.0.2
                port = {self.port}
              }}
              {tls_listener}
            }}
            service anvil {{
              {chroot}
              # No brute-force penalty: negative tests must not slow down the tests after them.
              unix_listener anvil-auth-penalty {{
                mode = 0
              }}
            }}
            namespace inbox {{
              inbox = yes
              separator = /
              mailbox Junk {{
                special_use = \\Junk
                auto = subscribe
              }}
              mailbox Sent {{
                special_use = \\Sent
                auto = subscribe
              }}
              mailbox Trash {{
                special_use = \\Trash
                auto = subscribe
              }}
            }}
        """)
        self.conf.write_text(conf + textwrap.dedent(self.extra_conf))

    # -- process ---------------------------------------------------------------------------------

    def start(self) -> DovecotServer:
        assert DOVECOT, "dovecot is not installed"
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.wait_ready(self.port)
        return self

    def wait_ready(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited: {err}\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return
            except OSError as exc:
                last = exc
                # No sleep-as-synchronisation: this retries a refused connect, bounded.
                time.sleep(0.01)
        raise RuntimeError(f"dovecot did not greet on {port}: {last}\n{self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()
        # Children (imap, auth) die with the master; wait until the port is free again.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text()[-3000:]
        except OSError:
            return ""

    # -- users and mail -------------------------------------------------------------------------

    def add_user(self) -> str:
        """A user nobody has used yet (a fresh, empty mailbox)."""
        self._users += 1
        assert self._users <= 400, "raise the user pool in DovecotServer.__post_init__"
        return f"user{self._users}"

    def doveadm(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        assert DOVEADM
        return subprocess.run(
            [DOVEADM, "-c", str(self.conf), *args], input=input, capture_output=True, check=True
        )

    def save(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        self.doveadm("save", "-u", user, "-m", folder, input=raw)

    def deliver_offline(self, user: str, raw: bytes) -> None:
        """Drop a message into the user's Maildir as an MDA would, server running or not."""
        new = self.maildir(user) / "new"
        name = f"{time.time_ns()}.P{os.getpid()}.sg-test"
        tmp = self.maildir(user) / "tmp" / name
        tmp.write_bytes(raw)
        if os.geteuid() == 0:
            os.chown(tmp, 65534, 65534)
        tmp.rename(new / name)

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user

    def seed_maildir(self, user: str, messages: Iterable[bytes]) -> int:
        """Write messages straight into the user's Inbox Maildir, as a migration tool would,
        then have Dovecot index them: 20,000 messages in seconds, where one APPEND or
        `doveadm save` each takes minutes. Returns how many were written."""
        top = self.maildir(user)
        dirs = [top, *(top / sub for sub in ("cur", "new", "tmp"))]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        owner = (65534, 65534) if os.geteuid() == 0 else None
        stamp = int(time.time())
        count = 0
        for count, raw in enumerate(messages, 1):
            # S= is the size, so Dovecot needs no stat; ":2," is "no flags", in cur/ (seen
            # by an MDA already, like mail in a mailbox migrated from another server).
            path = top / "cur" / f"{stamp}.M{count}P{os.getpid()}.sg,S={len(raw)}:2,"
            path.write_bytes(raw)
            if owner:
                os.chown(path, *owner)
        if owner:
            for d in dirs:
                os.chown(d, *owner)
        self.doveadm("mailbox", "status", "-u", user, "messages", "INBOX")
        return count
