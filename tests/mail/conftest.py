"""Fixtures for mail tests: a real Dovecot per session, fresh users, a header-driven scorer."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dovecot_server import DOVECOT, PASSWORD, DovecotServer
from header_scorer import HeaderScorer
from imap_helpers import (  # noqa: F401  (re-exported for old imports)
    Recorder,
    account_toml,
    append_all,
    mailbox_snapshot,
    make_mail,
    settings_for,
)

from spamguard.store import Store

__all__ = ["PASSWORD", "HeaderScorer"]


def _need_dovecot() -> None:
    if DOVECOT is None:
        pytest.skip("the dovecot binary is missing: apt-get install -y dovecot-imapd")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    _need_dovecot()
    server = DovecotServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., DovecotServer]]:
    """Private servers for tests that restart or reconfigure theirs."""
    _need_dovecot()
    servers: list[DovecotServer] = []

    def make(**kwargs: Any) -> DovecotServer:
        server = DovecotServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def user(dovecot: DovecotServer) -> str:
    return dovecot.add_user()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite3")
    yield s
    s.close()


@pytest.fixture
def scorer() -> HeaderScorer:
    return HeaderScorer()
