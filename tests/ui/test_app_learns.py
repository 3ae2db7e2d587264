"""The desktop app learns from its own buttons: against a real Dovecot, Spam / Not spam clicks
in the window become labels with their bytes, and once the learner's rule says "enough new
labels" (here 4) the next scan retrains a personal version, which the Models page lists."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
MAIL = (
    "spam-a/00001.eml",
    "spam-b/00001.eml",
    "ham-a/00001.eml",
    "ham-a/00002.eml",
    "ham-a/00003.eml",
)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from dovecot_server import DOVECOT, DovecotServer

    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    srv = DovecotServer().start()
    yield srv
    srv.cleanup()


def test_app_labels_retrain_a_personal_version_shown_on_the_models_page(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path
) -> None:
    from dovecot_server import PASSWORD
    from imap_helpers import append_all
    from PySide6.QtCore import Qt

    from spamguard.learn.loop import LearnOptions

    user = server.add_user()
    append_all(server, user, [(CORPUS / ref).read_bytes() for ref in MAIL])
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_command = "echo {PASSWORD}"\njunk_folder = "Junk"\n'
    )
    app = make_app(
        demo=False,
        config_path=config,
        learn_options=LearnOptions(retrain_after=4, shadow_messages=0),
        review_first_scan=False,  # about labels; the first-scan review has its own tests
    )
    with qtbot.waitSignal(app.scansFinished, timeout=120_000):
        app.start(show_window=True)
    assert app.runtime is not None and app.runtime.learner is not None
    registry = app.runtime.registry
    assert registry.root == tmp_path / "data" / "models"  # the config's data_dir, not ~

    model = app.window.model
    rows = sorted(model.rows(), key=lambda r: r.subject)
    assert len(rows) == len(MAIL)
    page = app.models_page
    app.window.tabs.setCurrentWidget(page)
    qtbot.waitUntil(lambda: "Only the shipped model so far" in page.versions_note.text())
    app.window.tabs.setCurrentIndex(0)

    def label_of(key: tuple[str, str, str]) -> str:
        return next((r.label for r in model.rows() if r.key == key), "")

    def click(row: Any, label: str) -> None:
        assert app.window.select_key(row.key)
        pane = app.window.detail
        qtbot.waitUntil(lambda: pane.row is not None and pane.row.key == row.key, timeout=5000)
        button = pane.spam_button if label == "spam" else pane.ham_button
        qtbot.waitUntil(button.isEnabled, timeout=5000)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: label_of(row.key) == label, timeout=30_000)

    # What the user says, against what the model said where it can: each click is a label.
    wanted = ["spam" if "spam" in ref else "ham" for ref in MAIL]
    by_subject = {r.subject: r for r in rows}
    ordered = [by_subject[_subject(CORPUS / ref)] for ref in MAIL]
    for row, label in zip(ordered[:3], wanted[:3], strict=True):
        click(row, label)
    # Three labels: the rule (4 new labels) is not met; a scan must not retrain.
    with qtbot.waitSignal(app.scanDone, timeout=60_000):
        app.scan_now()
    assert app.runtime.learner.wait(60)
    assert registry.versions() == []
    # Every app label kept its bytes: nothing waits for a backfill from the server.
    for row in ordered[:3]:
        assert app.store is not None and app.store.label_raw(row.content_hash) is not None

    click(ordered[3], wanted[3])
    with qtbot.waitSignal(app.modelChanged, timeout=300_000):
        app.scan_now()
    [version] = registry.versions()
    assert version.n_labels == 4 and version.label_watermark > 0
    assert version.state in ("active", "rejected"), version  # either way, checked and kept
    app.window.tabs.setCurrentWidget(page)
    qtbot.waitUntil(lambda: version.version in page.versions_note.text(), timeout=10_000)
    assert "4 labels" in page.versions_note.text()


def _subject(path: Path) -> str:
    from spamguard.message import parse_message

    return parse_message(path.read_bytes()).subject
