"""The mail commands of the CLI: `run`, `undo`, `status`, `state reset`, `bench --imap`."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from spamguard.cli.argtypes import count, journal_id, probability
from spamguard.cli.common import config_of, say, warn
from spamguard.config import AccountSettings, Config, default_config_path
from spamguard.engine.runtime import load_scorer, model_registry, open_store
from spamguard.errors import ConfigError, SpamGuardError
from spamguard.logs import log_failure

__all__ = ["register"]

# Undoing more actions than this asks first (or wants --yes): every undone move also marks
# its message rescued, so it is never filtered again.
UNDO_WITHOUT_ASKING = 5


def register(subparsers: Any) -> None:
    """Add the mail subcommands to the top-level parser's subparsers."""
    p = subparsers.add_parser("run", help="watch the accounts and act on new mail")
    p.add_argument("--once", action="store_true", help="sync, score and act once, then exit (cron)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--account", action="append", metavar="NAME", help="only this account")
    p.add_argument("--model", metavar="DIR", help="model directory (default: the shipped model)")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument(
        "--move-above",
        type=probability,
        metavar="P",
        help="in this run, move to Junk only at or above P; flag the rest that would move "
        "(e.g. after a first --dry-run)",
    )
    limit.add_argument(
        "--flag-only",
        action="store_true",
        help="in this run, move nothing: flag what would go to Junk",
    )
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("undo", help="move mail back / remove marks SpamGuard made")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--last", type=count, metavar="N", help="the last N actions (default 1)")
    which.add_argument("--since", metavar="TIME", help="actions since TIME (ISO, or 30m, 2h, 1d)")
    which.add_argument("--id", type=journal_id, action="append", metavar="ID", help="journal id")
    p.add_argument("--account", metavar="NAME", help="only this account")
    p.add_argument(
        "--yes",
        action="store_true",
        help=f"undo more than {UNDO_WITHOUT_ASKING} actions without asking",
    )
    p.set_defaults(func=cmd_undo)

    p = subparsers.add_parser("status", help="accounts, last sync, counts, recent actions")
    p.add_argument("--journal", type=count, default=10, metavar="N", help="show the last N actions")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("state", help="the state file: set a lost or damaged one aside")
    sub = p.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    a = sub.add_parser(
        "reset",
        help="set an empty or damaged state file aside and act only on mail that arrives "
        "from now on",
    )
    a.set_defaults(func=cmd_state_reset)


# -- helpers --------------------------------------------------------------------------------------


def _scorer(config: Config, model: str | None) -> Any:
    return load_scorer(Path(model) if model else config.model_dir, registry=model_registry(config))


def _accounts(config: Config, names: list[str] | None) -> list[AccountSettings]:
    if not config.accounts:
        where = config.path or default_config_path()
        raise ConfigError(
            f"no accounts configured in {where}; add one with `spamguard account add`"
        )
    return [config.account(n) for n in names] if names else list(config.accounts.values())


@contextmanager
def _stop_on_signals(stop: Any) -> Iterator[threading.Event]:
    """SIGINT/SIGTERM ask the workers to finish their batch and stop: a clean shutdown."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        asked.set()
        stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- run ------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from spamguard.cli.common import ProgressBar
    from spamguard.engine.events import (
        ActionApplied,
        ConnectionState,
        Error,
        Event,
        MessageScored,
        Progress,
    )
    from spamguard.engine.service import Service

    config = config_of(args)
    accounts = _accounts(config, args.account)
    from spamguard.engine.runtime import Runtime

    runtime = Runtime(config, model_dir=Path(args.model) if args.model else None)
    try:
        scorer = runtime.scorer()
    except BaseException:
        runtime.close()
        raise
    fatal: list[Error] = []
    counts = {"scored": 0, "applied": 0, "failed": 0, "planned": 0}
    # A first sync of a big folder takes minutes: a bar with the rate and the time left, on
    # a terminal (one per folder being scanned; elsewhere the lines below say what it does).
    bars: dict[tuple[str, str], ProgressBar] = {}

    def progress(event: Progress) -> None:
        key = (event.account, event.folder)
        if event.done == 0:
            bars[key] = ProgressBar(f"[{event.account}] {event.folder}", event.total)
        elif key in bars:
            bars[key].update(event.done, event.total)
            if event.done >= event.total:
                bars.pop(key).close()

    def show(event: Event) -> None:
        if isinstance(event, Progress):
            progress(event)
        elif isinstance(event, ActionApplied | Error) or args.dry_run or args.verbose:
            for bar in bars.values():
                bar.close()  # clear its line for what is printed; the next update redraws it
        if isinstance(event, MessageScored):
            counts["scored"] += 1
            counts["planned"] += event.planned
            if args.dry_run:
                say(
                    f"[{event.account}] {event.folder} {event.uid}: p={event.p_spam:.2f} "
                    f"{event.verdict:4} {event.subject[:60]!r} -> {event.plan}"
                )
        elif isinstance(event, ActionApplied):
            counts["applied" if event.state == "applied" else "failed"] += 1
            where = f" -> {event.dst}" if event.dst else ""
            line = (
                f"[{event.account}] #{event.journal_id} {event.action} {event.src}{where} "
                f"{event.subject[:60]!r}: {event.state}"
            )
            line += f" ({event.error})" if event.error else ""
            # Why, so a protected message's flag says what kept it out of Junk.
            say(line + (f" — {event.reason}" if event.reason else ""))
        elif isinstance(event, Error):
            if event.fatal:
                fatal.append(event)
            line = f"[{event.account}] {event.message}"
            warn(f"spamguard: {'error' if event.fatal else 'warning'}: {line}")
            log_failure(line, level=logging.ERROR if event.fatal else logging.WARNING)
        elif isinstance(event, Progress) and event.total and event.done == 0 and event.scope:
            # A first sync says what it looks at: the `backlog` setting in words.
            warn(
                f"[{event.account}] {event.folder}: {event.phase} scan of {event.scope}: "
                f"{event.total} messages"
            )
        elif isinstance(event, Progress) and event.total and args.verbose:
            warn(f"[{event.account}] {event.folder}: {event.done}/{event.total} ({event.phase})")
        elif isinstance(event, ConnectionState) and args.verbose:
            warn(f"[{event.account}] {event.state} {event.detail}")

    from spamguard.engine.first_scan import Choice, ReviewRecorder, chain

    choice: Choice | None = None
    if args.flag_only:
        choice = Choice("flag")
    elif args.move_above is not None:
        if args.move_above <= 0:
            raise ConfigError("--move-above must be above 0 (0 would move everything)")
        choice = Choice("above", args.move_above)
    recorders: list[ReviewRecorder] = []
    with runtime:
        service = Service(
            accounts,
            scorer=scorer,
            store=runtime.store,
            dry_run=args.dry_run,
            learner=runtime.learner,
        )
        for worker in service.workers:
            recorder = ReviewRecorder(worker.name) if args.dry_run else None
            if recorder is not None:
                recorders.append(recorder)
            worker.plan_hook = chain(choice.hook(worker.settings) if choice else None, recorder)
        service.subscribe(show)
        with _stop_on_signals(service.stop) as asked:
            if args.once:
                ok = service.run_once()
            else:
                service.start()
                while not asked.wait(0.5):
                    if all(not t.is_alive() for t in service._threads):
                        break
                service.stop()
                service.join(60)
                ok = not fatal
    if args.dry_run:
        # Nothing reaches the server in a dry run: the summary counts what was planned.
        warn(
            f"spamguard: scored {counts['scored']} messages, would act on {counts['planned']} "
            "(dry run: nothing changed)"
        )
        for recorder in recorders:
            review = recorder.review()
            if review.total:
                warn(f"[{review.account}] {review.summary()}")
        warn(_apply_hint(args))
    else:
        warn(
            f"spamguard: scored {counts['scored']} messages, acted on "
            f"{counts['applied']}, {counts['failed']} refused"
        )
    return 0 if ok and not fatal else 1


def _apply_hint(args: argparse.Namespace) -> str:
    """The one line after a dry run that says how to do what it showed."""
    import shlex

    command = ["spamguard"]
    if getattr(args, "config", None):
        command += ["--config", str(args.config)]
    command += ["run", "--once"]
    for name in args.account or ():
        command += ["--account", name]
    if args.flag_only:
        command.append("--flag-only")
    elif args.move_above is not None:
        command += ["--move-above", f"{args.move_above:g}"]
    line = shlex.join(command)
    if args.flag_only or args.move_above is not None:
        return f"spamguard: to do this: {line}"
    return (
        f"spamguard: to do this: {line} (add --move-above 0.97 to move only the surest, "
        "or --flag-only to move nothing)"
    )


# -- bench --imap ---------------------------------------------------------------------------------


def cmd_bench_imap(args: argparse.Namespace) -> int:
    """`spamguard bench --imap NAME`: a first sync of a scratch copy, timed per phase."""
    import json

    from spamguard.bench.imap import format_imap_bench, run_imap_bench

    if args.n < 1:
        raise ConfigError(f"-n must be at least 1, not {args.n}")
    config = config_of(args)
    settings = _accounts(config, [args.imap])[0]
    scorer = _scorer(config, args.model)
    figures = run_imap_bench(settings, scorer, folder=args.folder, n=args.n)
    say(format_imap_bench(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


# -- undo -----------------------------------------------------------------------------------------


def parse_since(text: str, *, now: float | None = None) -> float:
    """ "30m", "2h", "1d", "1w" ago, or an ISO date/time (local time when no zone)."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return now - float(match.group(1)) * unit
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SpamGuardError(
            f"--since {text!r}: give a time like 2h, 30m, 1d or 2026-11-23T09:00"
        ) from None
    return when.timestamp()


def cmd_undo(args: argparse.Namespace) -> int:
    from spamguard.mail.connect import open_mailstore
    from spamguard.mail.executor import Executor

    config = config_of(args)
    with open_store(config) as store:
        if args.id:
            entries = [e for e in (store.journal_entry(i) for i in args.id) if e is not None]
            missing = set(args.id) - {e.id for e in entries}
            if missing:
                raise SpamGuardError(
                    f"no journal entries with id {', '.join(map(str, sorted(missing)))}"
                )
        else:
            since = parse_since(args.since) if args.since else None
            entries = store.journal(
                account=args.account,
                states=["applied"],
                actions=["move_junk", "move", "flag", "keyword"],
                since=since,
                limit=None if since else (args.last or 1),
            )
        if args.account:
            entries = [e for e in entries if e.account == args.account]
        if not entries:
            say("nothing to undo")
            return 0
        if len(entries) > UNDO_WITHOUT_ASKING and not args.yes and not _confirm_undo(entries):
            raise SpamGuardError(
                f"this would undo {len(entries)} actions and never filter those messages "
                "again; nothing was undone. Add --yes to go ahead, or choose fewer "
                "with --last N, --since or --id"
            )
        failed = 0
        for name in dict.fromkeys(e.account for e in entries):
            settings = config.account(name)
            mail = open_mailstore(settings)
            mail.connect()
            try:
                executor = Executor(mail, store, settings, junk_folder=None)
                mine = [e for e in entries if e.account == name]
                for entry, result in zip(mine, executor.undo(mine), strict=True):
                    failed += result.outcome == "not found"
                    say(
                        f"#{entry.id} {entry.action} {entry.subject[:60]!r}: {result.outcome}"
                        + (f" ({result.detail})" if result.detail else "")
                    )
            finally:
                mail.close()
    return 1 if failed else 0


def _confirm_undo(entries: list[Any]) -> bool:
    """Ask on a terminal; anywhere else (cron, scripts) the answer is no."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    accounts = ", ".join(dict.fromkeys(e.account for e in entries))
    sys.stderr.write(
        f"Undo {len(entries)} actions in {accounts}? Their messages will never be "
        "filtered again. [y/N] "
    )
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


# -- status ---------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    config = config_of(args)
    if not config.accounts:
        say(f"no accounts configured in {config.path or default_config_path()}")
        return 0
    with open_store(config) as store:
        for name, a in config.accounts.items():
            where = (
                f"maildir {a.maildir}"
                if a.maildir
                else f"{a.username}@{a.host}:{a.port} ({a.security})"
            )
            say(f"{name}: {where}; move ≥ {a.thresholds.move:.2f}, flag ≥ {a.thresholds.flag:.2f}")
            server = store.authserv_id(name)
            say(
                f"  authentication results trusted from: {server}"
                if server
                else "  authentication results: not read yet (no receiving server learnt "
                "from the Inbox)"
            )
            if not a.protect_known_senders:
                say("  known senders are not protected from Junk (protect_known_senders = false)")
            for state in store.folder_states(name):
                when = dt.datetime.fromtimestamp(state.last_sync).strftime("%Y-%m-%d %H:%M:%S")
                say(f"  {state.folder}: last sync {when}, next UID {state.uidnext}")
            counts = store.counts(name)
            if counts:
                say("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            pending = store.journal(account=name, states=["planned"])
            if pending:
                say(f"  {len(pending)} actions interrupted; the next run settles them")
        recent = store.journal(limit=args.journal)
        if recent:
            say("recent actions:")
        for e in recent:
            when = dt.datetime.fromtimestamp(e.created_at).strftime("%m-%d %H:%M")
            dst = f" -> {e.dst}" if e.dst else ""
            say(
                f"  #{e.id} {when} [{e.account}] {e.action} {e.src}{dst} "
                f"{e.subject[:50]!r} {e.state}"
            )
    return 0


# -- state --------------------------------------------------------------------------------------


def cmd_state_reset(args: argparse.Namespace) -> int:
    """Set a lost state file aside; a new one starts every account from its next message.

    Without the old file SpamGuard cannot know which messages the user rescued from Junk.
    A first-run backlog scan would move them back, so after a reset the mail already in the
    folders is left as it is and only mail that arrives afterwards is scored and acted on.
    """
    from spamguard.errors import StateLostError
    from spamguard.store import Store

    config = config_of(args)
    path = config.state_path
    if not path.exists():
        say(f"there is no state file at {path}; nothing to reset")
        return 0
    try:
        Store(path).close()
    except StateLostError:
        pass
    else:
        raise SpamGuardError(
            f"{path} is readable; a reset would forget which messages you rescued from Junk. "
            "Nothing was changed"
        )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, aside.with_name(aside.name + suffix))
    with Store(path) as store:
        store.start_from_new_mail(config.accounts)
    say(f"set the damaged state file aside as {aside}")
    say(
        "a new one starts now: mail already in your folders is left as it is, and only "
        "mail that arrives from now on is scored and moved"
    )
    return 0
