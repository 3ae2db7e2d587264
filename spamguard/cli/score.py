"""`spamguard score`, `explain` and `demo`: messages from files, folders or stdin, scored."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from spamguard.cli.argtypes import count
from spamguard.cli.common import (
    BATCH,
    ProgressBar,
    _add_authserv_arg,
    _add_model_args,
    _load_scorer,
    _model_dir,
    _thresholds,
    config_of,
)
from spamguard.errors import SpamGuardError

# `score` and `explain` read at most this much of a file: the engine fetches far less from a
# server, and a 1.5 GB file must not take 1.5 GB of memory to be called spam.
MAX_INPUT_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------------------- inputs


def _iter_inputs(paths: Sequence[str]) -> Iterator[tuple[str, bytes | Exception]]:
    """(path exactly as given or found, bytes or the error reading it)."""
    from spamguard.learn.corpus import iter_message_files

    for given in paths:
        if given == "-":
            yield "-", _read_stdin()
            continue
        root = Path(given)
        if root.is_dir():
            for path in iter_message_files(root):
                yield _join(given, path.relative_to(root)), _read_bytes(path)
        elif root.exists():
            yield given, _read_bytes(root)
        else:
            yield given, FileNotFoundError(f"no such file or folder: {given}")


def _join(given: str, rel: Path) -> str:
    return given.rstrip("/") + "/" + rel.as_posix()


def _read_bytes(path: Path) -> bytes | Exception:
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_INPUT_BYTES)
    except OSError as exc:
        return exc


def _read_stdin() -> bytes | Exception:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return OSError("standard input is closed; pipe a message into it or give a file")
    try:
        return bytes(stream.read(MAX_INPUT_BYTES))
    except (OSError, ValueError) as exc:
        return OSError(f"cannot read standard input ({exc}); give a file instead")


def _count_inputs(paths: Sequence[str]) -> int | None:
    from spamguard.learn.corpus import iter_message_files

    total = 0
    for given in paths:
        if given == "-":
            return None
        root = Path(given)
        total += sum(1 for _ in iter_message_files(root)) if root.is_dir() else 1
    return total


# ---------------------------------------------------------------------------- score


def _score_record(path: str, msg: Any, score: Any, move: float, flag: float) -> dict[str, Any]:
    return {
        "path": path,
        "p_spam": round(score.p_spam, 6),
        "verdict": score.verdict(move, flag),
        "stage": score.stage,
        "model_version": score.model_version,
        "subject": msg.subject,
        "from": msg.from_addr,
        "evidence": [e.to_json() for e in score.evidence],
        "neighbours": [n.to_json() for n in score.neighbours],
    }


def scored_records(args: argparse.Namespace, paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Score every input in batches; yields one record per input, errors included."""
    from spamguard.errors import MessageError
    from spamguard.message import parse_message
    from spamguard.scoring.base import score_batches

    if getattr(args, "jobs", 1) > 1:
        yield from _scored_records_parallel(args, paths)
        return
    scorer = _load_scorer(args, cascade=True)
    move, flag = _thresholds(args, scorer)
    bar = ProgressBar("scoring", None)
    if bar.enabled:
        # Counting walks the folders a second time: only worth it when a bar is drawn.
        bar.total = _count_inputs(paths)
    done = 0
    # Each batch handed to the scorer, as its inputs in order: (path, message) or, for an
    # input that could not be read or parsed, (path, its error record).
    sent: deque[list[tuple[str, Any]]] = deque()

    def batches() -> Iterator[list[Any]]:
        items: list[tuple[str, Any]] = []
        count = 0
        for path, data in _iter_inputs(paths):
            if isinstance(data, Exception):
                items.append((path, {"path": path, "error": f"cannot read: {data}"}))
                continue
            try:
                msg = parse_message(data, authserv_id=getattr(args, "authserv_id", None))
            except MessageError as exc:
                items.append((path, {"path": path, "error": str(exc)}))
                continue
            items.append((path, msg))
            count += 1
            if count >= BATCH:
                sent.append(items)
                yield [m for _, m in items if not isinstance(m, dict)]
                items, count = [], 0
        if items:
            sent.append(items)
            yield [m for _, m in items if not isinstance(m, dict)]

    try:
        # Pipelined (`score_batches`): the cascade's later stages on one batch overlap the
        # reading, parsing and stage 0 of the next. Records come in input order.
        for scores in score_batches(scorer, batches()):
            scored = iter(scores)
            for path, item in sent.popleft():
                if isinstance(item, dict):
                    yield item
                else:
                    yield _score_record(path, item, next(scored), move, flag)
                done += 1
            bar.update(done)
    finally:
        bar.close()


def _scored_records_parallel(
    args: argparse.Namespace, paths: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """`scored_records` over ``args.jobs`` worker processes; same records, same order."""
    from spamguard.scoring.parallel import WorkerPool

    thresholds_from = _load_scorer(args)  # only its model's thresholds; no encoder is loaded
    move, flag = _thresholds(args, thresholds_from)
    bar = ProgressBar("scoring", None)
    if bar.enabled:
        bar.total = _count_inputs(paths)
    # Every input in order: (path, None) waits for its score, (path, text) is an error.
    order: deque[tuple[str, str | None]] = deque()

    def raws() -> Iterator[bytes]:
        for path, data in _iter_inputs(paths):
            if isinstance(data, Exception):
                order.append((path, f"cannot read: {data}"))
                continue
            order.append((path, None))
            yield data

    def errors_first() -> Iterator[dict[str, Any]]:
        while order and order[0][1] is not None:
            path, error = order.popleft()
            yield {"path": path, "error": error}

    model = _model_dir(args)
    done = 0
    with WorkerPool(
        args.jobs,
        model_dir=model,
        encoder_kind=getattr(args, "encoder", None),
        cascade=not getattr(args, "no_cascade", False),
        authserv_id=getattr(args, "authserv_id", None),
    ) as pool:
        try:
            for result in pool.score_raw(raws()):
                yield from errors_first()
                path, _ = order.popleft()
                if isinstance(result, str):
                    yield {"path": path, "error": result}
                else:
                    parsed, score = result
                    yield _score_record(path, parsed, score, move, flag)
                done += 1
                bar.update(done)
            yield from errors_first()
        finally:
            bar.close()


def cmd_score(args: argparse.Namespace) -> int:
    records = scored_records(args, args.paths)
    out = sys.stdout
    scored = failed = 0
    if args.jsonl:
        for rec in records:
            scored += "error" not in rec
            failed += "error" in rec
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            out.flush()
    else:
        all_records = list(records)
        scored = sum("error" not in r for r in all_records)
        failed = len(all_records) - scored
        if args.json:
            json.dump(all_records, out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            _print_table(all_records, out)
    if not scored:
        # Some output may be useful (each input's error), but nothing was scored.
        what = f"none of the {failed} inputs could be scored" if failed else "no input found"
        raise SpamGuardError(f"{what}; give raw .eml/RFC 822 message files, folders or -")
    return 0


def _print_table(records: Sequence[dict[str, Any]], out: IO[str]) -> None:
    width = max((len(r["path"]) for r in records), default=4)
    width = min(max(width, 4), 60)
    out.write(f"{'p_spam':>7}  {'verdict':<7}  {'path':<{width}}  subject\n")
    counts = {"spam": 0, "flag": 0, "ham": 0, "error": 0}
    for rec in records:
        path = rec["path"] if len(rec["path"]) <= width else "…" + rec["path"][-(width - 1) :]
        if "error" in rec:
            counts["error"] += 1
            out.write(f"{'-':>7}  {'error':<7}  {path:<{width}}  {rec['error']}\n")
            continue
        counts[rec["verdict"]] += 1
        subject = " ".join(rec["subject"].split())[:60]
        out.write(f"{rec['p_spam']:>7.3f}  {rec['verdict']:<7}  {path:<{width}}  {subject}\n")
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    out.write(f"\n{len(records)} messages: {summary}\n")


# ---------------------------------------------------------------------------- explain


def _explain_account(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """(settings, store) of ``--account``, or None without it."""
    if not args.account:
        return None
    from spamguard.engine.runtime import open_store

    config = config_of(args)
    return config.account(args.account), open_store(config)


def _would(plan: Any) -> Any:
    """`llm.Outcome` of what an account's `policy.Plan` would do with a message."""
    from spamguard.llm.prompts import Outcome

    kinds = {a.kind for a in plan.actions}
    reason = plan.protected or "; ".join(a.reason for a in plan.actions)
    if "junk" in kinds:
        return Outcome(plan.verdict, "it would be moved to Junk", moved_to_junk=True)
    if "move" in kinds:
        folder = next(a.folder for a in plan.actions if a.kind == "move")
        return Outcome(plan.verdict, f"it would be moved to {folder} by your rule")
    if kinds & {"flag", "keyword"}:
        return Outcome(plan.verdict, "it would be flagged and left where it is", flagged=True)
    return Outcome(plan.verdict, f"it would be left alone, because {reason}")


def cmd_explain(args: argparse.Namespace) -> int:
    from spamguard.errors import MessageError
    from spamguard.message import parse_message

    if args.file != "-" and Path(args.file).is_dir():
        raise SpamGuardError(
            f"{args.file} is a folder; explain takes one message file "
            "(`spamguard score FOLDER` scores a whole folder)"
        )
    first = next(iter(_iter_inputs([args.file])), None)
    if first is None:
        raise SpamGuardError(f"{args.file}: nothing to explain")
    data = first[1]
    if isinstance(data, Exception):
        raise SpamGuardError(f"{args.file}: cannot read: {data}")
    account = _explain_account(args)
    authserv_id = args.authserv_id
    if account is not None and authserv_id is None:
        authserv_id = account[1].authserv_id(account[0].name)
    try:
        msg = parse_message(data, authserv_id=authserv_id)
    except MessageError as exc:
        raise SpamGuardError(f"{args.file}: {exc}") from exc
    scorer = _load_scorer(args)
    move, flag = _thresholds(args, scorer)
    score = scorer.score([msg])[0]
    rec = _score_record(args.file, msg, score, move, flag)
    rec["authserv_id"] = authserv_id or None
    # A file on disk has not been acted on: the LLM is told what would be done (at these
    # thresholds, or by the account's policy with --account), and its text is checked.
    from spamguard.llm.prompts import Outcome

    outcome = Outcome.would(score.p_spam, move, flag)
    if account is not None:
        from spamguard.engine.service import policy_context
        from spamguard.policy import plan_for

        settings, store = account
        with store:
            plan = plan_for(msg, score, settings, policy_context(store, settings.name, msg))
        outcome = _would(plan)
        rec["account"] = settings.name
        rec["plan"] = plan.describe()
        rec["protected"] = plan.protected
    if args.json:
        json.dump(rec, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    verdict_words = {
        "spam": "spam: would be moved to Junk",
        "flag": "suspicious: would stay in the Inbox, flagged",
        "ham": "not spam: left alone",
    }
    out.write(f"{rec['path']}\n")
    out.write(f"  Subject: {rec['subject']}\n  From:    {rec['from']}\n")
    if account is None:
        out.write(f"  Spam probability {rec['p_spam']:.3f} → {verdict_words[rec['verdict']]}\n")
    else:
        out.write(f"  Spam probability {rec['p_spam']:.3f} → in {rec['account']}: {rec['plan']}\n")
        if rec["protected"]:
            out.write(f"  Protected from Junk: {rec['protected']}\n")
    out.write(f"  (model {rec['model_version']}, stage {rec['stage']})\n")
    if authserv_id:
        out.write(f"  Authentication results trusted from: {authserv_id}\n")
    else:
        out.write(
            "  Authentication results: not read (no trusted server; give --account or "
            "--authserv-id)\n"
        )
    out.write("\n")
    import textwrap

    from spamguard.llm.explain import (
        NEIGHBOUR_MIN_SIMILARITY,
        meaningful_neighbours,
        plain_reasons,
    )

    reasons = " ".join(r.sentence for r in plain_reasons(score.evidence))
    if reasons:
        out.write(
            textwrap.fill("In short: " + reasons, 90, initial_indent="  ", subsequent_indent="    ")
        )
        out.write("\n\n")
    out.write("  What pushed the score (log-odds; + towards spam, − towards not spam):\n")
    for ev in rec["evidence"]:
        out.write(f"    {ev['weight']:+6.2f}  {ev['detail']}\n")
    if score.neighbours:
        near = meaningful_neighbours(score.neighbours)
        if near:
            out.write("\n  Looks like these known messages:\n")
        else:
            out.write(
                "\n  No known message is alike enough to compare with (listed from "
                f"{NEIGHBOUR_MIN_SIMILARITY:.2f} similarity).\n"
            )
        for nb in near:
            subject = " ".join(nb.subject.split())[:60]
            out.write(f"    {nb.similarity:.2f}  {nb.label:<4}  {subject}\n")
    if args.llm:
        from spamguard.config import load_config
        from spamguard.llm.engine import LLMSettings
        from spamguard.llm.explain import explain

        settings = LLMSettings.from_config(load_config(args.config).llm)
        if settings.remote_url:
            sys.stderr.write(
                f"NOTE: [llm] remote_url sends this message's text to {settings.remote_url}. "
                "Message text leaves this machine.\n"
            )
        out.write("\n  The local LLM's reading (it explains; it never decides):\n    ")
        out.flush()
        from spamguard.llm.explain import outcome_facts

        known = account[1].is_correspondent(account[0].name, msg.from_addr) if account else None
        facts = outcome_facts(msg, outcome, raw=data, known_sender=known)
        for token in explain(msg, score, outcome, settings=settings, facts=facts):
            out.write(token)
            out.flush()
        out.write("\n")
    return 0


# ---------------------------------------------------------------------------- demo


def _mailbox_authserv_id(root: Path) -> str | None:
    from spamguard.errors import MessageError
    from spamguard.learn.corpus import iter_message_files
    from spamguard.message import learn_authserv_id, parse_message

    messages = []
    for path in iter_message_files(root):
        try:
            messages.append(parse_message(path.read_bytes()))
        except (MessageError, OSError):
            continue
    return learn_authserv_id(messages)


def cmd_demo(args: argparse.Namespace) -> int:
    from spamguard.demo import demo_mailbox_path

    mailbox = demo_mailbox_path()
    # The demo mailbox is an account's Inbox: its server's authserv-id is learnt from it,
    # as `run` learns each account's.
    args.authserv_id = _mailbox_authserv_id(mailbox)
    records = list(scored_records(args, [str(mailbox)]))
    for rec in records:
        rec["path"] = rec["path"].replace(str(mailbox) + "/", "")
    _print_table(records, sys.stdout)
    labels_file = mailbox.parent / "labels.json"
    if labels_file.is_file():
        labels = json.loads(labels_file.read_text("utf-8"))
        right = sum(
            1
            for r in records
            if "error" not in r
            and (r["verdict"] == "spam") == (labels.get(Path(r["path"]).name) == "spam")
        )
        print(
            f"demo mailbox: {right}/{len(records)} verdicts match the hand labels "
            "(spam = moved to Junk; flagged counts as not moved)"
        )
    return 0


def register(sub: Any) -> None:
    """Add `spamguard score`, `explain` and `demo` to the CLI."""
    p = sub.add_parser("score", help="score message files, folders or stdin")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a message file, a folder, or -")
    _add_model_args(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--jsonl", action="store_true", help="one JSON object per message")
    fmt.add_argument("--json", action="store_true", help="one JSON array")
    p.add_argument(
        "--no-cascade",
        action="store_true",
        help="score every message with the full head (default: the cheap stage decides the "
        "clear cases when the shipped cascade bands fit the model)",
    )
    p.add_argument(
        "--jobs",
        type=count,
        default=1,
        metavar="N",
        help="score in N worker processes (a large backlog on N cores; default 1)",
    )
    _add_authserv_arg(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("explain", help="show a message's score and what drove it")
    p.add_argument("file", metavar="FILE")
    _add_model_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--llm", action="store_true", help="also ask the local LLM for a short rationale (streamed)"
    )
    _add_authserv_arg(p)
    p.add_argument(
        "--account",
        metavar="NAME",
        help="explain as this account would act: its learnt authserv-id, its correspondents "
        "and kept senders, its thresholds and rules (what would be done, and any protection)",
    )
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("demo", help="score the bundled demo mailbox and print the table")
    _add_model_args(p)
    p.set_defaults(func=cmd_demo)
