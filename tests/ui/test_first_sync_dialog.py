"""Learning from an added account's existing mail in the app: consent off by default, a
progress display, Cancel, and a second run that continues where the first stopped."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from spamguard_ui.account_dialog import AccountDialog
from spamguard_ui.first_sync import FirstSyncDialog

from spamguard.learn.first_sync import FirstSyncOptions
from spamguard.learn.registry import ModelRegistry
from spamguard.store import Store
from tests.fixtures.make_corpus import render

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))

from dovecot_server import DOVECOT, PASSWORD, DovecotServer
from imap_helpers import account_toml, settings_for

OLD = datetime.now(UTC) - timedelta(days=20)


@pytest.fixture(scope="module")
def server() -> Iterator[DovecotServer]:
    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    s = DovecotServer().start()
    yield s
    s.cleanup()


def filled_account(server: DovecotServer, n_spam: int = 30, n_ham: int = 40) -> str:
    from imapclient import IMAPClient

    user = server.add_user()
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        for i in range(n_spam):
            raw = render(random.Random(f"s{i}"), "spam-a" if i % 3 else "spam-b", i, OLD)
            client.append("Junk", raw.replace(b"\n", b"\r\n"), msg_time=OLD)
        for i in range(n_ham):
            raw = render(random.Random(f"h{i}"), "hard-ham" if i % 2 else "ham-a", i, OLD)
            client.append("INBOX", raw.replace(b"\n", b"\r\n"), flags=["\\Seen"], msg_time=OLD)
    return user


@pytest.fixture
def registry(tmp_path: Path, tiny_model: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "data" / "models")
    reg.register_dir(tiny_model, activate=True)
    return reg


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data" / "spamguard.sqlite3")
    yield s
    s.close()


def test_the_consent_box_is_off_by_default(qtbot: Any, tmp_path: Path) -> None:
    dialog = AccountDialog(tmp_path / "config.toml")
    qtbot.addWidget(dialog)
    dialog.show()
    box = dialog.learn_existing
    assert box.isVisible() and box.isEnabled()
    assert not box.isChecked()
    assert "read-only" in box.text()
    box.click()
    assert box.isChecked()


def test_progress_then_what_it_learned_from(
    qtbot: Any,
    server: DovecotServer,
    tmp_path: Path,
    registry: ModelRegistry,
    store: Store,
    make_app: Any,
) -> None:
    user = filled_account(server)
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n\n' + account_toml(server, user))
    app = make_app(demo=False, config_path=config)
    app.store = store
    before = registry.active
    seen: list[tuple[str, int, int]] = []

    dialog = app.learn_existing("work", start=False)

    assert isinstance(dialog, FirstSyncDialog) and dialog.isVisible()
    qtbot.addWidget(dialog)
    dialog.runner.progressed.connect(lambda *a: seen.append(a))
    dialog.start()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120_000)
    assert dialog.result is not None and dialog.result.state == "learned"
    assert "Learned from 30 spam in Junk and 40 read messages" in dialog.status.text()
    reading = [(d, t) for step, d, t in seen if step == "reading"]
    assert reading[-1] == (70, 70) and any(0 < d < 70 for d, _ in reading)
    assert dialog.progress.value() == dialog.progress.maximum()
    assert registry.active not in (None, before)
    dialog.close()


def test_cancel_keeps_what_was_read_and_the_next_run_continues(
    qtbot: Any, server: DovecotServer, registry: ModelRegistry, store: Store
) -> None:
    user = filled_account(server)
    settings = settings_for(server, user)
    options = FirstSyncOptions(batch=10)
    before = registry.active
    first = FirstSyncDialog(settings, store, registry, options)
    qtbot.addWidget(first)
    first.show()

    def stop_after_20(step: str, done: int, total: int) -> None:
        if step == "reading" and done >= 20:
            first.runner.cancel()  # in the runner's thread: before its next batch

    first.runner.progressed.connect(stop_after_20, Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(first.runner.cancelled, timeout=60_000):
        first.start()
    assert "Stopped. 20 messages read so far are kept" in first.status.text()
    assert store.first_sync_count("work") == 20
    assert [v.version for v in registry.versions()] == [before]  # nothing new yet
    first.close()

    second = FirstSyncDialog(settings, store, registry, options)
    qtbot.addWidget(second)
    second.show()
    with qtbot.waitSignal(second.runner.finishedWith, timeout=120_000):
        second.start()
    assert second.result is not None
    assert (second.result.reused, second.result.fetched) == (20, 50)
    second.close()


def test_the_cancel_button_stops_a_running_learn(
    qtbot: Any, server: DovecotServer, registry: ModelRegistry, store: Store
) -> None:
    user = filled_account(server)
    dialog = FirstSyncDialog(settings_for(server, user), store, registry)
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.runner.cancelled, timeout=60_000):
        dialog.start()
        dialog.cancel_button.click()
        assert not dialog.cancel_button.isEnabled()
        assert "Stopping" in dialog.status.text()
    assert "Stopped." in dialog.status.text()
    assert [v.version for v in registry.versions()] == [registry.active]
    dialog.close()
