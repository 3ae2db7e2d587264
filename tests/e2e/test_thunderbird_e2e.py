"""End to end in a real Thunderbird (Debian's, under Xvfb) with an IMAP account on a private
Dovecot and the SpamGuard add-on installed, its host installed by `spamguard thunderbird
install`. SpamGuard (the real default model) moves a spam to Junk; opening it in
Thunderbird shows SpamGuard's score from the native host; "Not spam" records the label and
the message is back in the Inbox, as Dovecot sees it.

Set SPAMGUARD_SCREENSHOTS=DIR to keep the pictures (scripts/screenshots-thunderbird does).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from thunderbird_session import (  # noqa: E402
    ADDON_WIDGET,
    THUNDERBIRD,
    XVFB,
    DovecotServer,
    ThunderbirdSession,
)

pytestmark = [
    pytest.mark.thunderbird,
    pytest.mark.imap,
    pytest.mark.skipif(
        THUNDERBIRD is None or XVFB is None or shutil.which("dovecot") is None,
        reason="needs thunderbird, Xvfb and dovecot: apt-get install thunderbird xvfb "
        "dovecot-imapd",
    ),
]

SPAM = ROOT / "tests" / "fixtures" / "corpus" / "spam-a" / "00015.eml"
HAM = ROOT / "tests" / "fixtures" / "corpus" / "ham-a" / "00001.eml"


class Setup:
    def __init__(self, root: Path) -> None:
        self.dovecot = DovecotServer().start()
        self.user = self.dovecot.add_user()
        self.data = root / "data"
        self.config = root / "config.toml"
        self.config.write_text(
            f'data_dir = "{self.data}"\n[accounts.work]\nhost = "127.0.0.1"\n'
            f'port = {self.dovecot.port}\nsecurity = "plain"\nusername = "{self.user}"\n'
            'password_command = "echo secret"\n',
            encoding="utf-8",
        )
        self.tb = ThunderbirdSession(self.dovecot, self.user)

    def spamguard(self, *args: str, home: Path | None = None) -> str:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if home is not None:
            env["HOME"] = str(home)
        proc = subprocess.run(
            [sys.executable, "-m", "spamguard", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def folders_of(self, message_id: str) -> list[str]:
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.dovecot.port, ssl=False, timeout=30)
        client.login(self.user, "secret")
        try:
            found = []
            for folder in ("INBOX", "Junk"):
                client.select_folder(folder, readonly=True)
                found += [folder] * len(client.search(["HEADER", "Message-ID", message_id]))
            return found
        finally:
            client.logout()

    def set_keyword(self, message_id: str, keyword: str) -> None:
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.dovecot.port, ssl=False, timeout=30)
        client.login(self.user, "secret")
        try:
            client.select_folder("INBOX")
            uids = client.search(["HEADER", "Message-ID", message_id])
            assert len(uids) == 1
            client.add_flags(uids, [keyword])
        finally:
            client.logout()

    def close(self) -> None:
        self.tb.cleanup()
        self.dovecot.cleanup()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    yield s
    log = s.tb.log.read_text(errors="replace") if s.tb.log.exists() else ""
    s.close()
    if log:
        sys.stderr.write(log[-3000:])


JS_OPEN_FOLDER = """
const [name] = arguments;
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const server = MailServices.accounts.getAccount("account1").incomingServer;
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.document.getElementById("tabmail").currentAbout3Pane;
const inbox = server.rootFolder.getChildNamed("INBOX");
if (name !== "INBOX") {
  about3Pane.displayFolder(inbox.URI);  // logs in and lists the folders
  for (let i = 0; i < 100 && !server.rootFolder.getChildNamed(name); i++) {
    await new Promise(r => win.setTimeout(r, 100));
  }
}
const folder = server.rootFolder.getChildNamed(name);
about3Pane.displayFolder(folder.URI);
folder.updateFolder(win.msgWindow);
return folder.URI;
"""

JS_SELECT_FIRST = """
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.document.getElementById("tabmail").currentAbout3Pane;
if (!about3Pane.gDBView || about3Pane.gDBView.rowCount < 1) return false;
about3Pane.threadTree.selectedIndex = 0;
return about3Pane.gDBView.getMsgHdrAt(0).messageId;
"""

JS_BADGE = """
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.document.getElementById("tabmail").currentAbout3Pane;
const doc = about3Pane.messageBrowser.contentDocument;
const button = doc.getElementById(arguments[0]);
const badge = button ? button.getAttribute("badge") : null;
return badge && badge !== "…" ? badge : null;
"""

JS_TAG_OF = """
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const server = MailServices.accounts.getAccount("account1").incomingServer;
const inbox = server.rootFolder.getChildNamed("INBOX");
for (const hdr of inbox.messages) {
  if (hdr.messageId !== arguments[0]) continue;
  const keywords = (hdr.getStringProperty("keywords") || "").split(" ").filter(Boolean);
  for (const k of keywords) {
    if (MailServices.tags.isValidKey(k)) return MailServices.tags.getTagForKey(k);
  }
  return null;
}
return null;
"""

JS_CLICK_BUTTON = """
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.document.getElementById("tabmail").currentAbout3Pane;
about3Pane.messageBrowser.contentDocument.getElementById(arguments[0]).click();
return true;
"""

# Run a function body in the popup's page (an out-of-process extension page, as users have
# it) through a frame script, and return what it returns as text; null while no popup is open.
JS_IN_POPUP = """
const [body] = arguments;
const win = Services.wm.getMostRecentWindow("mail:3pane");
const panel = [...win.document.querySelectorAll("panel.webextension-popup-panel")]
  .find(p => p.state === "open");
const browser = panel?.querySelector("browser");
if (!browser?.messageManager) return null;
const mm = browser.messageManager;
const name = "spamguard-test:" + Math.random();
return await new Promise(resolve => {
  const listener = m => { mm.removeMessageListener(name, listener); resolve(m.data); };
  mm.addMessageListener(name, listener);
  const reply = `(v) => sendAsyncMessage(${JSON.stringify(name)}, String(v))`;
  const code = `try { (${reply})(((document) => { ${body} })(content.document)); }
                catch (e) { (${reply})(""); }`;
  mm.loadFrameScript("data:," + encodeURIComponent(code), false);
  win.setTimeout(() => resolve(null), 5000);
});
"""


def popup(m: Any, body: str, what: str, timeout: float = 60) -> str:
    """Wait until ``body`` (run in the popup's page) returns a non-empty string."""
    return str(m.wait(JS_IN_POPUP, body, timeout=timeout, what=what))


def test_open_spam_see_the_score_press_not_spam_back_in_inbox(setup: Setup) -> None:
    setup.dovecot.save(setup.user, SPAM.read_bytes())
    setup.dovecot.save(setup.user, HAM.read_bytes())
    setup.data.mkdir()
    setup.spamguard("run", "--once")
    spam_id = "<spam-a.015.5474cbb303@promo-winners.example.org>"
    assert setup.folders_of(spam_id) == ["Junk"]

    from spamguard.store import Store

    with Store(setup.data / "spamguard.sqlite3") as store:
        scored = store.find_scored(spam_id, "work")
    assert scored is not None and scored.p_spam >= 0.9

    # SpamGuard's "suspicious" keyword on the ham, as its flag band leaves it.
    ham_id = HAM.read_text().split("Message-ID:", 1)[1].split()[0]
    setup.set_keyword(ham_id, "$SpamGuardFlag")

    setup.spamguard("thunderbird", "install", home=setup.tb.home)
    manifest = setup.tb.home / ".mozilla" / "native-messaging-hosts" / "spamguard.json"
    assert manifest.exists()

    m = setup.tb.start()
    setup.tb.add_password()
    xpi = Path(
        subprocess.run(
            [sys.executable, str(ROOT / "packaging" / "build-xpi"), str(setup.tb.root)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    m.install_addon(xpi)
    m.js(JS_OPEN_FOLDER, "Junk")
    shown = m.wait(JS_SELECT_FIRST, timeout=60, what="the spam in Thunderbird's Junk")
    assert f"<{shown}>" == spam_id

    expected = f"{math.floor(scored.p_spam * 100)}%"
    badge = m.wait(
        JS_BADGE,
        ADDON_WIDGET,
        timeout=90,
        what="the SpamGuard badge",
    )
    assert badge == expected
    shots = os.environ.get("SPAMGUARD_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        m.screenshot(Path(shots) / "thunderbird-banner.png")

    # The popup, as the user opens it: the score from the native host, then "Not spam".
    m.js(JS_CLICK_BUTTON, ADDON_WIDGET)
    shown_pct = popup(
        m,
        'return document.getElementById("reasons").children.length ? '
        'document.getElementById("percent").textContent : "";',
        "the popup to show the score",
    )
    assert shown_pct == expected.replace("%", " %")
    reasons = popup(m, 'return document.getElementById("reasons").innerText;', "reasons")
    assert reasons.strip()
    if shots:
        popup(
            m,
            'return document.querySelector("#similar .w") ? "ok" : "";',
            "the similar known messages",
            timeout=120,
        )
        _screenshots(setup, Path(shots))
    popup(m, 'document.getElementById("ham").click(); return "clicked";', "Not spam pressed")
    done = popup(
        m,
        'const d = document.getElementById("done"); return d.hidden ? "" : d.textContent;',
        "the label to be recorded",
        timeout=120,
    )
    assert done == "Labelled not spam: SpamGuard learnt it; SpamGuard moved it back"
    assert setup.folders_of(spam_id) == ["INBOX"]  # as Dovecot sees it

    with Store(setup.data / "spamguard.sqlite3") as store:
        rows = store.feedback_rows("work")
        assert [(r.message_id, r.label, r.source) for r in rows] == [
            (spam_id, "ham", "thunderbird add-on")
        ]
        assert store.is_rescued("work", spam_id, scored.content_hash)
    # SpamGuard's keyword shows as a named Thunderbird tag on the message that carries it.
    m.js(JS_OPEN_FOLDER, "INBOX")
    tag = m.wait(JS_TAG_OF, ham_id.strip("<>"), timeout=60, what="the keyword as a tag")
    assert tag == "SpamGuard: suspicious"

    # SpamGuard's next run leaves the rescued message in the Inbox.
    setup.spamguard("run", "--once")
    assert setup.folders_of(spam_id) == ["INBOX"]


def _screenshots(setup: Setup, out: Path) -> None:
    """The message pane with the banner (Thunderbird's own window capture) and the popup
    (a capture of the X screen: the popup is a separate window)."""
    from PIL import ImageGrab

    assert setup.tb.m is not None
    box = setup.tb.m.js(
        'const w = Services.wm.getMostRecentWindow("mail:3pane");'
        "return [w.screenX, w.screenY, w.screenX + w.outerWidth, w.screenY + w.outerHeight];"
    )
    out.mkdir(parents=True, exist_ok=True)
    ImageGrab.grab(xdisplay=setup.tb.display).crop(tuple(box)).save(out / "thunderbird-popup.png")


JS_OPEN_LOCAL = """
const [name] = arguments;
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const root = MailServices.accounts.getAccount("account2").incomingServer.rootFolder;
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.document.getElementById("tabmail").currentAbout3Pane;
const folder = root.getChildNamed(name);
about3Pane.displayFolder(folder.URI);
return [folder.URI, folder.getFlag(Ci.nsMsgFolderFlags.Junk)];
"""

JS_LOCAL_COUNT = """
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const root = MailServices.accounts.getAccount("account2").incomingServer.rootFolder;
return root.getChildNamed(arguments[0]).getTotalMessages(false);
"""


def test_a_local_folder_message_is_scored_from_its_bytes_and_spam_moves_it(
    setup: Setup,
) -> None:
    """Mail SpamGuard has never seen (a local folder, as POP mail lands): the add-on sends the
    message's bytes, the host scores them, and Spam records the label and moves it to Junk."""
    raw = (ROOT / "tests" / "fixtures" / "corpus" / "spam-a" / "00008.eml").read_bytes()
    local = setup.tb.profile / "Mail" / "Local Folders"
    local.mkdir(parents=True)
    (local / "Inbox").write_bytes(b"From - Mon Dec 07 00:00:00 2026\n" + raw + b"\n")
    (local / "Junk").write_bytes(b"")
    setup.data.mkdir()
    explained = json.loads(
        setup.spamguard("explain", "--json", str(ROOT / "tests/fixtures/corpus/spam-a/00008.eml"))
    )
    expected = f"{math.floor(explained['p_spam'] * 100)}%"
    setup.spamguard("thunderbird", "install", home=setup.tb.home)

    m = setup.tb.start()
    xpi = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build-xpi"), str(setup.tb.root)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    m.install_addon(Path(xpi))
    _, junk_flagged = m.js(JS_OPEN_LOCAL, "Junk")
    assert junk_flagged is True  # Thunderbird's Local Folders know their Junk folder
    m.js(JS_OPEN_LOCAL, "Inbox")
    m.wait(JS_SELECT_FIRST, timeout=60, what="the local message listed")
    badge = m.wait(JS_BADGE, ADDON_WIDGET, timeout=120, what="the SpamGuard badge")
    assert badge == expected

    m.js(JS_CLICK_BUTTON, ADDON_WIDGET)
    source = popup(
        m,
        'return document.getElementById("reasons").children.length ? '
        'document.getElementById("source").textContent : "";',
        "the popup to show the score",
    )
    assert source.startswith("scored now")
    popup(m, 'document.getElementById("spam").click(); return "clicked";', "Spam pressed")
    # The message leaves the folder on display, so the popup closes with it.
    assert m.wait(JS_LOCAL_COUNT, "Junk", timeout=120, what="the message in Junk") == 1
    assert m.js(JS_LOCAL_COUNT, "Inbox") == 0

    from spamguard.store import Store

    with Store(setup.data / "spamguard.sqlite3") as store:
        rows = store.feedback_rows("thunderbird:Local Folders")
        assert [(r.label, r.source) for r in rows] == [("spam", "thunderbird add-on")]
        stored = store.label_raw(rows[0].content_hash)
        assert stored is not None
        # Thunderbird's bytes of the message, as the user has it.
        for line in raw.splitlines()[:5] + raw.splitlines()[-2:]:
            assert line in stored
