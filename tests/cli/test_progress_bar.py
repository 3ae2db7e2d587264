"""The CLI's progress bar: shown on a terminal only, with the rate and the time left."""

from __future__ import annotations

import io

import pytest

from spamguard.cli import common as cli
from spamguard.cli.common import ProgressBar, time_left


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "about 1 s"), (42, "about 42 s"), (150, "about 2 min"), (4800, "about 1 h 20 min")],
)
def test_time_left_in_words(seconds: float, text: str) -> None:
    assert time_left(seconds) == text


def test_bar_shows_rate_and_time_left_then_clears(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 110.0])  # made at t=100; 10 s later 500 of 2000 are done
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    monkeypatch.delenv("SPAMGUARD_NO_PROGRESS", raising=False)
    out = Terminal()
    bar = ProgressBar("[work] INBOX", 2000, stream=out)
    bar.update(500)
    line = out.getvalue()
    assert "500/2000" in line and "50/s" in line and "about 30 s left" in line
    bar.close()
    assert out.getvalue().endswith("\r") and not bar.shown


def test_bar_stays_silent_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = ProgressBar("[work] INBOX", 2000, stream=out)
    bar.update(500)
    bar.close()
    assert out.getvalue() == ""
