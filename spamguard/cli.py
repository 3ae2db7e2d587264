"""The `spamguard` command line: score, explain, train, eval, demo, and the mail commands.

Heavy libraries (numpy, scikit-learn, onnxruntime, torch) are imported inside the
commands, so `spamguard --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from spamguard import __version__, doctor, learning_commands, thunderbird
from spamguard.argtypes import count, non_negative_float, positive_float, probability
from spamguard.errors import SpamGuardError
from spamguard.mail import commands as mail_commands
from spamguard.scoring import commands as scoring_commands

__all__ = ["build_parser", "fail", "main"]

BATCH = 64
# Modules that add their own commands through `register(subparsers)`.
COMMAND_GROUPS = (mail_commands, scoring_commands, learning_commands, doctor, thunderbird)
# `score` and `explain` read at most this much of a file: the engine fetches far less from a
# server, and a 1.5 GB file must not take 1.5 GB of memory to be called spam.
MAX_INPUT_BYTES = 64 * 1024 * 1024


def time_left(seconds: float) -> str:
    """ "about 40 s", "about 3 min", "about 1 h 20 min": a progress bar's estimate."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


class ProgressBar:
    """A one-line progress bar on stderr that appears only for work taking over a second."""

    def __init__(self, label: str, total: int | None, stream: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.enabled = self.stream.isatty() and not os.environ.get("SPAMGUARD_NO_PROGRESS")
        self.shown = False
        self._last = 0.0

    def update(self, done: int, total: int | None = None, label: str | None = None) -> None:
        if total is not None:
            self.total = total
        if label is not None:
            self.label = label
        now = time.monotonic()
        if not self.enabled or now - self.start < 1.0 or now - self._last < 0.1:
            return
        self._last = now
        self.shown = True
        rate = done / max(now - self.start, 1e-9)
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {done}/{self.total} {rate:.0f}/s "
            if rate > 0 and done < self.total:
                text += f"{time_left((self.total - done) / rate)} left "
        else:
            text = f"\r{self.label} {done} {rate:.0f}/s "
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()
            self.shown = False


# ---------------------------------------------------------------------------- inputs


def _iter_inputs(paths: Sequence[str]) -> Iterator[tuple[str, bytes | Exception]]:
    """(path exactly as given or found, bytes or the error reading it)."""
    from spamguard.corpus import iter_message_files

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
    from spamguard.corpus import iter_message_files

    total = 0
    for given in paths:
        if given == "-":
            return None
        root = Path(given)
        total += sum(1 for _ in iter_message_files(root)) if root.is_dir() else 1
    return total


def _load_scorer(args: argparse.Namespace, *, cascade: bool = False) -> Any:
    """The head of ``--model`` (default: the active model); with ``cascade``, the cascade
    in front of it when its bands fit (see `load_default_scorer`)."""
    from spamguard.scoring.commands import load_default_scorer

    return load_default_scorer(
        _model_dir(args),
        encoder_kind=getattr(args, "encoder", None),
        cascade=cascade and not getattr(args, "no_cascade", False),
    )


def _model_dir(args: argparse.Namespace) -> Path | None:
    """``--model``, else the config's ``model_dir`` (what `run` scores with), else None (the
    active model). A configured folder that is missing is an error, not a silent fallback."""
    if getattr(args, "model", None):
        return Path(args.model)
    from spamguard.config import load_config

    return load_config(getattr(args, "config", None)).model_dir


def _thresholds(args: argparse.Namespace, scorer: Any) -> tuple[float, float]:
    model_thresholds = scorer.model.thresholds
    move = args.move if args.move is not None else model_thresholds.get("move", 0.90)
    flag = args.flag if args.flag is not None else model_thresholds.get("flag", 0.50)
    if not 0.0 <= flag <= move <= 1.0:
        raise SpamGuardError(f"thresholds must satisfy 0 <= flag ({flag}) <= move ({move}) <= 1")
    return float(move), float(flag)


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
    pending: list[tuple[str, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        nonlocal done
        scores = scorer.score([m for _, m in pending])
        for (path, msg), score in zip(pending, scores, strict=True):
            yield _score_record(path, msg, score, move, flag)
        done += len(pending)
        bar.update(done)
        pending.clear()

    try:
        for path, data in _iter_inputs(paths):
            if isinstance(data, Exception):
                yield {"path": path, "error": f"cannot read: {data}"}
                continue
            try:
                msg = parse_message(data, authserv_id=getattr(args, "authserv_id", None))
            except MessageError as exc:
                yield {"path": path, "error": str(exc)}
                continue
            pending.append((path, msg))
            if len(pending) >= BATCH:
                yield from flush()
        if pending:
            yield from flush()
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
    from spamguard.config import load_config
    from spamguard.store import Store

    config = load_config(args.config)
    return config.account(args.account), Store(config.state_path)


def _would(plan: Any) -> Any:
    """`llm.Outcome` of what an account's `policy.Plan` would do with a message."""
    from spamguard.scoring.llm import Outcome

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
    from spamguard.scoring.llm import Outcome

    outcome = Outcome.would(score.p_spam, move, flag)
    if account is not None:
        from spamguard.policy import plan_for
        from spamguard.service import policy_context

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

    from spamguard.scoring.explain import (
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
        from spamguard.scoring.explain import explain
        from spamguard.scoring.llm import LLMSettings

        settings = LLMSettings.from_config(load_config(args.config).llm)
        if settings.remote_url:
            sys.stderr.write(
                f"NOTE: [llm] remote_url sends this message's text to {settings.remote_url}. "
                "Message text leaves this machine.\n"
            )
        out.write("\n  The local LLM's reading (it explains; it never decides):\n    ")
        out.flush()
        from spamguard.scoring.explain import outcome_facts

        known = account[1].is_correspondent(account[0].name, msg.from_addr) if account else None
        facts = outcome_facts(msg, outcome, raw=data, known_sender=known)
        for token in explain(msg, score, outcome, settings=settings, facts=facts):
            out.write(token)
            out.flush()
        out.write("\n")
    return 0


# ---------------------------------------------------------------------------- train


def training_items(args: argparse.Namespace) -> tuple[list[Any], str]:
    """The labelled messages `train` was pointed at (a split's train half, or folders)."""
    from spamguard.corpus import load_folders, load_split

    skipped: list[Path] = []
    if args.split:
        if not args.corpus:
            raise SpamGuardError("--split needs --corpus DIR (the folder the split's paths are in)")
        items = load_split(Path(args.split), Path(args.corpus), "train", skipped=skipped)
        source = f"{Path(args.split).name} train half"
    elif args.ham and args.spam:
        items = load_folders(
            [Path(p) for p in args.ham], [Path(p) for p in args.spam], skipped=skipped
        )
        source = "folders"
    else:
        raise SpamGuardError("give --split TSV --corpus DIR, or --ham DIR --spam DIR")
    if skipped:
        import logging

        logging.getLogger("spamguard").warning(
            "skipped %d file(s) that are not mail or cannot be read, e.g. %s",
            len(skipped),
            skipped[0],
        )
    return items, source


def cmd_train(args: argparse.Namespace) -> int:
    from spamguard.scoring.model import check_model_target, save_model
    from spamguard.training import DEFAULT_BLOCKS, TrainOptions, train

    check_model_target(Path(args.out))  # before minutes of training, not after
    items, source = training_items(args)
    blocks = dict(DEFAULT_BLOCKS)
    for spec in args.block or []:
        name, _, weight = spec.partition("=")
        if name not in blocks:
            raise SpamGuardError(f"unknown block {name!r}; known: {', '.join(blocks)}")
        try:
            blocks[name] = non_negative_float(weight)
        except argparse.ArgumentTypeError as exc:
            raise SpamGuardError(f"--block {spec}: the weight {exc}; e.g. {name}=0.5") from None
    options = TrainOptions(
        blocks=tuple(blocks.items()),
        C=args.C,
        augment_headerless=not args.no_headerless_augment,
        keep_neighbours=not args.no_neighbours,
        encoder_kind=args.encoder or "int8",
        version=args.version or "",
    )
    bar = ProgressBar("training", None)
    model = train(
        items,
        options,
        source=source,
        on_progress=lambda p: bar.update(p.done, p.total, f"training: {p.step}"),
    )
    bar.close()
    out = save_model(model, Path(args.out))
    cv = model.metrics["train_cv"]
    sys.stderr.write(
        f"trained {model.version} on {len(items)} messages "
        f"(cross-validated on train: AUC {cv['roc_auc']:.5f}, "
        f"recall@0.1%FPR {cv['recall_at_0.1pct_fpr']:.3f})\n"
    )
    print(out)
    return 0


# ---------------------------------------------------------------------------- eval


def evaluate_split(args: argparse.Namespace) -> dict[str, Any]:
    from spamguard.corpus import load_split
    from spamguard.evaluate import metrics
    from spamguard.message import parse_message
    from spamguard.scoring.features import headerless_bytes

    items = load_split(Path(args.split), Path(args.corpus), "test", limit=args.limit)
    scorer = _load_scorer(args)
    move, flag = _thresholds(args, scorer)
    scorer.top_evidence = 0
    scorer.n_neighbours = 0
    messages = [it.message for it in items]
    if args.headerless:
        messages = [parse_message(headerless_bytes(m)) for m in messages]
    bar = ProgressBar("evaluating", len(messages))
    probs: list[float] = []
    start = time.perf_counter()
    for i in range(0, len(messages), BATCH):
        probs.extend(s.p_spam for s in scorer.score(messages[i : i + BATCH]))
        bar.update(len(probs))
    elapsed = time.perf_counter() - start
    bar.close()
    result = metrics(
        [it.is_spam for it in items], probs, [it.group for it in items], move=move, flag=flag
    )
    result.update(
        model_version=scorer.version,
        variant="headerless" if args.headerless else "full",
        msgs_per_s=len(messages) / elapsed if elapsed else float("nan"),
        split=str(args.split),
    )
    if args.plot:
        import numpy as np

        from spamguard.evaluate import plot

        plot(
            np.asarray([it.is_spam for it in items]),
            np.asarray(probs),
            Path(args.plot),
            move=move,
            flag=flag,
            title=f"{scorer.version} on the test half ({result['variant']})",
        )
    return result


def cmd_eval(args: argparse.Namespace) -> int:
    result = evaluate_split(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    _print_eval(result, sys.stdout)
    return 0


def _print_eval(r: dict[str, Any], out: IO[str]) -> None:
    at_move, at_flag = r["at_move"], r["at_flag"]
    out.write(
        f"model {r['model_version']} — test half ({r['variant']}), {r['n']} messages "
        f"({r['n_spam']} spam, {r['n_ham']} ham)\n"
    )
    out.write(f"  ROC AUC                 {r['roc_auc']:.5f}\n")
    out.write(f"  recall at 0.1% FPR      {r['recall_at_0.1pct_fpr']:.2%}\n")
    out.write(f"  recall at 1% FPR        {r['recall_at_1pct_fpr']:.2%}\n")
    for name, at in (("move", at_move), ("flag", at_flag)):
        out.write(
            f"  at {name} ≥ {at['threshold']:.2f}: precision {at['precision']:.2%}, recall "
            f"{at['recall']:.2%}, F1 {at['f1']:.4f}, FPR {at['fpr']:.3%} "
            f"({at['false_positives']} ham)\n"
        )
    for g, info in r.get("groups", {}).items():
        if info["label"] == "ham":
            out.write(
                f"  {g:<12} ham at ≥ move: {info['count_at_move']}/{info['n']}, "
                f"at ≥ flag: {info['count_at_flag']}/{info['n']}\n"
            )
    out.write(f"  expected calibration error {r['ece']:.4f}\n")
    out.write(f"  throughput              {r['msgs_per_s']:.1f} msgs/s\n")


# ---------------------------------------------------------------------------- demo


def _mailbox_authserv_id(root: Path) -> str | None:
    from spamguard.corpus import iter_message_files
    from spamguard.errors import MessageError
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


# ---------------------------------------------------------------------------- parser


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="model directory (default: the shipped one)")
    p.add_argument(
        "--encoder",
        choices=["int8", "fp32", "torch"],
        help="sentence encoder path: int8 ONNX (default), fp32 ONNX, or the torch reference",
    )
    p.add_argument("--move", type=probability, help="move-to-Junk threshold (default 0.90)")
    p.add_argument("--flag", type=probability, help="flag threshold (default 0.50)")


def _add_authserv_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--authserv-id",
        metavar="ID",
        help="trust the Authentication-Results (SPF, DKIM, DMARC) that this receiving server "
        "(its authserv-id, e.g. mx.example.com) added at the top of the message. Without it a "
        "message file has no trusted results: any header in it could have been written by "
        "the sender, so authentication signals are left out",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spamguard",
        description="SpamGuard: a local, learning spam filter for your IMAP mail.",
    )
    parser.add_argument("--version", action="version", version=f"spamguard {__version__}")
    parser.add_argument("--config", metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    p = sub.add_parser("train", help="train a head model")
    p.add_argument("--split", metavar="TSV", help="split file (trains on its train half)")
    p.add_argument("--corpus", metavar="DIR", help="folder the split's paths are relative to")
    p.add_argument("--ham", metavar="DIR", action="append", help="folder of ham (repeatable)")
    p.add_argument("--spam", metavar="DIR", action="append", help="folder of spam (repeatable)")
    p.add_argument("--out", metavar="DIR", required=True, help="where to write the model")
    p.add_argument(
        "--C", type=positive_float, default=100.0, help="inverse regularisation strength"
    )
    p.add_argument(
        "--block",
        action="append",
        metavar="NAME=WEIGHT",
        help="feature block weight, e.g. embedding=0.5 (0 drops the block)",
    )
    p.add_argument("--encoder", choices=["int8", "fp32", "torch"])
    p.add_argument(
        "--no-neighbours",
        action="store_true",
        help="do not keep training embeddings for 'looks like' explanations",
    )
    p.add_argument("--no-headerless-augment", action="store_true")
    p.add_argument("--version", dest="version", metavar="NAME", help="model version name")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a model on a split's test half")
    p.add_argument("--split", metavar="TSV", required=True)
    p.add_argument("--corpus", metavar="DIR", required=True)
    _add_model_args(p)
    p.add_argument("--json", metavar="OUT", help="write all figures as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="save ROC curve and score histogram")
    p.add_argument(
        "--headerless",
        action="store_true",
        help="reduce each message to its Subject and text first",
    )
    p.add_argument("--limit", type=count, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="score the bundled demo mailbox and print the table")
    _add_model_args(p)
    p.set_defaults(func=cmd_demo)

    # Rooms that own more commands register them here, imported by name so a module missing
    # from an install or a bundle fails loudly instead of its commands quietly vanishing.
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from spamguard.logs import setup_logging

    setup_logging(verbose=args.verbose)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpamGuardError as exc:
        return fail(str(exc))
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("spamguard: interrupted\n")
        return 130
    except OSError as exc:
        return fail(_os_error_line(exc), exc)
    except MemoryError as exc:
        return fail("out of memory; give fewer or smaller inputs at a time", exc)
    except Exception as exc:  # a bug: one line here, the traceback in the log
        from spamguard.logs import current_log_file

        where = current_log_file() or "the log"
        return fail(
            f"unexpected {type(exc).__name__}: {exc}. This is a bug in SpamGuard; the details "
            f"are in {where}. Please report it",
            exc,
        )


def fail(message: str, exc: BaseException | None = None) -> int:
    """Tell the user on one line of stderr, keep it in the log file too; exit status 1."""
    from spamguard.logs import log_failure

    line = " ".join(message.split())
    sys.stderr.write(f"spamguard: error: {line}\n")
    sys.stderr.flush()
    log_failure(line, exc_info=exc)
    return 1


def _os_error_line(exc: OSError) -> str:
    import errno

    what = exc.strerror or str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    hint = {
        errno.ENOSPC: "free some space and run again (no mail is lost: the next run finishes "
        "what was interrupted)",
        errno.EACCES: "check the permissions",
        errno.EPERM: "check the permissions",
        errno.EROFS: "the disk is read-only; choose a writable place",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "check the path",
        errno.EISDIR: "give a file, not a folder",
    }.get(exc.errno or 0, "check the path and the disk, then run again")
    return f"{where}{what}; {hint}"
