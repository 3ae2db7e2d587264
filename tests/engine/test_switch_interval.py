"""The pipelined first sync's shorter GIL switch interval is process-wide: two accounts
syncing at once must not leave it short, whichever finishes first."""

from __future__ import annotations

import sys

from spamguard.engine.service import _ShortSwitchInterval


def test_overlapping_syncs_put_the_interval_back_when_the_last_one_ends() -> None:
    before = sys.getswitchinterval()
    short = _ShortSwitchInterval(before / 10)
    try:
        short.__enter__()  # account A starts
        short.__enter__()  # account B starts while A runs
        assert sys.getswitchinterval() == before / 10
        short.__exit__(None, None, None)  # A ends first
        assert sys.getswitchinterval() == before / 10
        short.__exit__(None, None, None)  # B ends
        assert sys.getswitchinterval() == before
    finally:
        sys.setswitchinterval(before)
