"""`spamguard bench --imap NAME`: what a first sync costs on a real server, phase by phase.

The bench never touches the account's own mail: it copies the newest N messages of a folder
into a scratch folder, runs the real first sync on that copy (fetch, parse, score, plan, and
the journalled moves and flags into a scratch Junk) with a state database of its own, then
deletes both scratch folders. So the IMAP cost is measured, not guessed.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from spamguard.config import AccountSettings
from spamguard.engine.events import PHASES, ActionApplied, Error, Event, MessageScored
from spamguard.engine.service import AccountWorker
from spamguard.errors import MailStoreError
from spamguard.mail.imap import ImapMailStore
from spamguard.scoring.base import Scorer
from spamguard.store import Store

__all__ = ["SCRATCH", "SCRATCH_JUNK", "format_imap_bench", "run_imap_bench"]

SCRATCH = "SpamGuard-bench"
SCRATCH_JUNK = "SpamGuard-bench-Junk"


def run_imap_bench(
    settings: AccountSettings, scorer: Scorer, *, folder: str = "INBOX", n: int = 500
) -> dict[str, Any]:
    """Copy the newest ``n`` messages of ``folder`` to `SCRATCH`, sync that copy as a first
    run would, and return the figures. The scratch folders are deleted afterwards."""
    if settings.maildir is not None:
        raise MailStoreError(
            f"account {settings.name!r} is a local Maildir; bench --imap needs IMAP"
        )
    mail = ImapMailStore(settings)
    mail.connect()
    try:
        existing = {f.name for f in mail.list_folders()}
        for name in (SCRATCH, SCRATCH_JUNK):
            if name in existing:
                raise MailStoreError(
                    f"folder {name!r} already exists on {settings.host} (left by an interrupted "
                    "bench?); delete it in your mail client and run the bench again"
                )
        uids = mail.uids(folder)[-n:]
        if not uids:
            raise MailStoreError(f"folder {folder!r} of account {settings.name!r} is empty")
        mail.create_folder(SCRATCH)
        mail.create_folder(SCRATCH_JUNK)
        try:
            started = time.perf_counter()
            mail.copy_many(folder, uids, SCRATCH)
            copy_seconds = time.perf_counter() - started
            figures = _sync_scratch(settings, scorer, len(uids))
        finally:
            for name in (SCRATCH, SCRATCH_JUNK):
                mail.delete_folder(name)
    finally:
        mail.close()
    figures["copy_seconds"] = copy_seconds
    figures["folder"] = folder
    return figures


def _sync_scratch(settings: AccountSettings, scorer: Scorer, n: int) -> dict[str, Any]:
    bench = dataclasses.replace(
        settings,
        watch_folders=(SCRATCH,),
        junk_folder=SCRATCH_JUNK,
        backlog_messages=0,
        backlog_days=0,
    )
    counts = {"scored": 0, "moved": 0, "flagged": 0, "refused": 0}
    errors: list[str] = []

    def count(event: Event) -> None:
        if isinstance(event, Error) and event.fatal:
            errors.append(event.message)
        elif isinstance(event, MessageScored):
            counts["scored"] += 1
        elif isinstance(event, ActionApplied):
            if event.state != "applied":
                counts["refused"] += 1
            else:
                counts["moved" if event.dst else "flagged"] += 1

    recorder = getattr(scorer, "recorder", None)
    if recorder is not None:
        recorder.reset()
    # A state database of its own: no cached score, no journal row of the user's.
    with (
        tempfile.TemporaryDirectory(prefix="spamguard-bench-") as tmp,
        Store(Path(tmp) / "bench.sqlite3") as store,
    ):
        worker = AccountWorker(bench, scorer=scorer, store=store)
        worker.events.subscribe(count)
        started = time.perf_counter()
        ok = worker.run_once()
        wall = time.perf_counter() - started
    if not ok:
        raise MailStoreError("the bench's sync failed: " + "; ".join(errors))
    stages = {}
    if recorder is not None:
        for row in recorder.snapshot():
            if row["messages"]:
                stages[row["stage"]] = {
                    "messages": row["messages"],
                    "seconds": row["wall_seconds"],
                    "cpu_seconds": row["cpu_seconds"],
                }
    return {
        "messages": n,
        "wall_seconds": wall,
        "phases": {p: worker.timings[p] for p in PHASES},
        "phases_cpu": {p: worker.cpu_timings[p] for p in PHASES},
        "stages": stages,
        **counts,
    }


def format_imap_bench(f: dict[str, Any]) -> str:
    """The figures as a table: wall and CPU seconds per phase, share of the wall time, and
    messages/s. On a busy machine wall time includes waiting for a core; CPU time does not."""
    n, wall = f["messages"], f["wall_seconds"]
    lines = [
        f"first sync of {n} messages (copied from {f['folder']!r} in "
        f"{f['copy_seconds']:.2f} s): {wall:.2f} s wall, {n / wall:.0f} messages/s end to end",
        f"  {f['moved']} moved, {f['flagged']} flagged, {f['refused']} refused",
        f"  {'phase':<30} {'wall s':>8} {'share':>6} {'msgs/s':>8} {'CPU s':>8} {'CPU ms/msg':>10}",
    ]
    # (label, wall s, CPU s, messages the CPU is shared over)
    rows: list[tuple[str, float, float | None, int]] = [
        (p, s, f["phases_cpu"][p], n) for p, s in f["phases"].items() if p != "learn" or s
    ]
    for name, st in f["stages"].items():
        label = f"  of which {name} ({st['messages']})"
        rows.append((label, st["seconds"], st["cpu_seconds"], st["messages"]))
    rows.append(("connect, folders, Sent", wall - sum(f["phases"].values()), None, n))
    for phase, seconds, cpu, count in rows:
        rate = f"{n / seconds:8.0f}" if seconds > 0 and not phase.startswith("  ") else " " * 8
        cpu_text = f"{cpu:8.3f} {cpu * 1000 / count:10.2f}" if cpu is not None else ""
        line = f"  {phase:<30} {seconds:8.3f} {seconds / wall:6.1%} {rate} {cpu_text}"
        lines.append(line.rstrip())
    return "\n".join(lines)
