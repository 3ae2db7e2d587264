"""The Qt binding itself must not corrupt Python's reference counts.

PySide6 6.12.0's ``SignalInstance.emit()`` returns ``True`` without taking a reference to it,
so every emit made from Python steals one reference to ``True``. Thousands of emits later
(the account workers emit per batch) the count reaches zero and the interpreter aborts with
"Fatal Python error: bool_dealloc", usually while collecting garbage at exit (exit code 134),
long after the emit that did it. pyproject.toml excludes that release; this test names the
cause at once should a broken binding be installed anyway.
"""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    plain = Signal()
    text = Signal(str)


def test_emit_keeps_the_reference_counts_of_true_and_false(qapp: object) -> None:
    emitter = _Emitter()
    received: list[str] = []
    emitter.text.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(50):
        emitter.plain.emit()
        emitter.text.emit("x")
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert len(received) == 50
    # A correct binding leaves both counts where they were (give or take a cached reference);
    # the broken one drops True's by one per emit, here 100.
    assert after[0] - before[0] > -5, (
        f"PySide6 {PySide6.__version__}: Signal.emit() steals a reference to True "
        f"({after[0] - before[0]} after 100 emits); the process will abort at exit with "
        "'bool_dealloc'. Install a PySide6 release without this bug (see pyproject.toml)."
    )
    assert after[1] - before[1] > -5
