"""A real Thunderbird under Xvfb with an IMAP account on a private Dovecot and the SpamGuard
add-on installed, driven over Marionette. Used by the end-to-end test, the screenshot
script and the round-trip benchmark."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "mail"))

from dovecot_server import PASSWORD, DovecotServer  # noqa: E402
from marionette import Marionette  # noqa: E402

THUNDERBIRD = shutil.which("thunderbird")
XVFB = shutil.which("Xvfb")
ADDON_WIDGET = "spamguard_spamguard_invalid-messageDisplayAction-toolbarbutton"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefs(port: int, marionette_port: int, user: str) -> str:
    prefs: dict[str, Any] = {
        "marionette.port": marionette_port,
        "xpinstall.signatures.required": False,
        "extensions.autoDisableScopes": 0,
        "app.update.enabled": False,
        "app.update.disabledForTesting": True,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "mail.shell.checkDefaultClient": False,
        "mailnews.start_page.enabled": False,
        "mail.provider.suppress_dialog_on_startup": True,
        "mail.rights.version": 1,
        "mail.spotlight.firstRunDone": True,
        "mail.winsearch.firstRunDone": True,
        "mail.biff.play_sound": False,
        "mail.biff.show_alert": False,
        "mail.biff.show_tray_icon": False,
        "mailnews.auto_config_url": "",
        "mail.account.account1.server": "server1",
        "mail.account.account1.identities": "id1",
        "mail.account.account2.server": "server2",
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.identity.id1.useremail": f"{user}@example.org",
        "mail.identity.id1.fullName": "Test User",
        "mail.identity.id1.valid": True,
        "mail.server.server1.type": "imap",
        "mail.server.server1.hostname": "127.0.0.1",
        "mail.server.server1.port": port,
        "mail.server.server1.userName": user,
        "mail.server.server1.name": "Work",
        "mail.server.server1.socketType": 0,
        "mail.server.server1.authMethod": 3,
        "mail.server.server1.login_at_startup": False,
        "mail.server.server1.check_new_mail": False,
        "mail.server.server1.directory-rel": "[ProfD]ImapMail/127.0.0.1",
        "mail.server.server1.offline_download": False,
        "mail.server.server2.type": "none",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.server.server2.name": "Local Folders",
        "mail.server.server2.directory-rel": "[ProfD]Mail/Local Folders",
        "mail.server.default.autosync_offline_stores": False,
        "mail.startup.enabledMailCheckOnce": True,
        "mailnews.database.global.indexer.enabled": False,
        "browser.dom.window.dump.enabled": True,
        "devtools.console.stdout.chrome": True,
    }

    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"user_pref({lit(k)}, {lit(v)});\n" for k, v in prefs.items())


class ThunderbirdSession:
    """Xvfb + Thunderbird with a fresh profile; ``home`` is Thunderbird's $HOME, where
    `spamguard thunderbird install` puts the host manifest."""

    def __init__(self, dovecot: DovecotServer, user: str, *, width: int = 1400) -> None:
        self.dovecot = dovecot
        self.user = user
        self.root = Path(tempfile.mkdtemp(prefix="sg-thunderbird-"))
        self.home = self.root / "home"
        self.profile = self.root / "profile"
        self.home.mkdir()
        self.profile.mkdir()
        self.width = width
        self.procs: list[subprocess.Popen[bytes]] = []
        self.display = ""
        self.m: Marionette | None = None
        self.log = self.root / "thunderbird.log"

    def start(self, env: dict[str, str] | None = None) -> Marionette:
        assert THUNDERBIRD and XVFB
        # Xvfb picks a free display itself and writes its number to the pipe.
        read_fd, write_fd = os.pipe()
        xvfb = subprocess.Popen(
            [
                XVFB,
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                f"{self.width}x900x24",
                "-nolisten",
                "tcp",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        self.procs.append(xvfb)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"
        mport = _free_port()
        (self.profile / "user.js").write_text(_prefs(self.dovecot.port, mport, self.user))
        full_env = {
            **os.environ,
            **(env or {}),
            "HOME": str(self.home),
            "DISPLAY": self.display,
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
        }
        full_env.pop("WAYLAND_DISPLAY", None)
        self.log_file = self.log.open("wb")
        tb = subprocess.Popen(
            [
                THUNDERBIRD,
                "--marionette",
                "--remote-allow-system-access",
                "--no-remote",
                "--profile",
                str(self.profile),
            ],
            env=full_env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(tb)
        self.m = Marionette(mport, timeout=90)
        self.m.chrome()
        return self.m

    def add_password(self) -> None:
        assert self.m is not None
        self.m.js(
            """
            const [user, password] = arguments;
            const info = Cc["@mozilla.org/login-manager/loginInfo;1"]
              .createInstance(Ci.nsILoginInfo);
            info.init("imap://127.0.0.1", null, "imap://127.0.0.1", user, password, "", "");
            await Services.logins.addLoginAsync(info);
            return true;
            """,
            self.user,
            PASSWORD,
        )

    def stop(self) -> None:
        if self.m is not None:
            self.m.quit()
            self.m = None
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)
        if hasattr(self, "log_file"):
            self.log_file.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
