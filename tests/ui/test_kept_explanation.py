"""The Why pane shows a message's kept explanation as soon as the message is selected, after a
restart too, without the user asking the language model again (issue 22, item 5).

A real Dovecot account, the app's real store; the kept explanation is put in the store the way
`AccountSession.rationale` keeps one (the language model itself is not what this is about)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mail"))

import pytest

KEPT = (
    "SpamGuard flagged this message: its wording resembles earlier spam, and its sender "
    "passed authentication."
)


def _mail(n: int) -> bytes:
    return (
        f"From: Shop {n} <news{n}@shop.example>\r\nTo: user@example.net\r\n"
        f"Subject: Weekly offers {n}\r\nMessage-ID: <offers-{n}@shop.example>\r\n"
        f"Date: Tue, 24 Nov 2026 10:0{n}:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
        f"Our offers this week, number {n}: see https://shop.example/offers/{n}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server() -> Any:
    from dovecot_server import DOVECOT, DovecotServer

    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")
    srv = DovecotServer().start()
    yield srv
    srv.cleanup()


def _keep(app: Any, row: Any, config: Path, text: str) -> None:
    """Keep ``text`` as ``row``'s checked explanation, under the context the session uses."""
    from spamguard.config import load_config
    from spamguard.engine.session import outcome_of
    from spamguard.llm.engine import LLMSettings
    from spamguard.llm.explain import explanation_context
    from spamguard.store import StoredExplanation

    settings = LLMSettings.from_config(load_config(config).llm)
    context = explanation_context(settings, row.model_version, outcome_of(row))
    app.store.save_explanation(
        row.account,
        row.message_id,
        row.content_hash,
        context,
        StoredExplanation(text, True, (), time.time()),
    )


def test_a_kept_explanation_is_shown_on_selection_after_a_restart(
    server: Any, make_app: Any, qtbot: Any, tmp_path: Path
) -> None:
    from dovecot_server import PASSWORD
    from imapclient import IMAPClient

    user = server.add_user()
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30) as client:
        client.login(user, PASSWORD)
        for n in (1, 2):
            client.append("INBOX", _mail(n))
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword_command = "echo {PASSWORD}"\njunk_folder = "Junk"\n'
    )
    first = make_app(demo=False, config_path=config)
    with qtbot.waitSignal(first.scansFinished, timeout=120_000):
        first.start(show_window=True)
    rows = sorted(first.window.model.rows(), key=lambda r: r.message_id)
    assert [r.message_id for r in rows] == ["<offers-1@shop.example>", "<offers-2@shop.example>"]
    _keep(first, rows[0], config, KEPT)
    assert first.shutdown()

    # A restart: a new app on the same config and store.
    app = make_app(demo=False, config_path=config)
    with qtbot.waitSignal(app.scansFinished, timeout=120_000):
        app.start(show_window=True)
    pane = app.window.detail
    kept_key = next(r.key for r in app.window.model.rows() if r.message_id == rows[0].message_id)
    other_key = next(r.key for r in app.window.model.rows() if r.message_id == rows[1].message_id)

    assert app.window.select_key(kept_key)
    # Shown by itself, from the store: the button was never pressed and stays available.
    qtbot.waitUntil(lambda: pane.llm_text.text() == KEPT, timeout=10_000)
    assert pane.llm_button.isEnabled()

    # A message with nothing kept shows nothing; the kept one shows it again.
    # The worker answers a selection's look-ups in order: the kept text first, then the
    # nearest messages, so once those arrive nothing kept is on its way.
    with qtbot.waitSignal(
        app.runners["work"].explained,
        timeout=30_000,
        check_params_cb=lambda key, _score: key == other_key,
    ):
        assert app.window.select_key(other_key)
    assert pane.row is not None and pane.row.key == other_key
    assert pane.llm_text.text() == ""
    assert app.window.select_key(kept_key)
    qtbot.waitUntil(lambda: pane.llm_text.text() == KEPT, timeout=10_000)
