"""`spamguard train` and `eval`: fit a head on a split's train half, evaluate on its test half."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from spamguard.cli.argtypes import count, non_negative_float, positive_float
from spamguard.cli.common import BATCH, ProgressBar, _add_model_args, _load_scorer, _thresholds
from spamguard.errors import SpamGuardError

# ---------------------------------------------------------------------------- train


def training_items(args: argparse.Namespace) -> tuple[list[Any], str]:
    """The labelled messages `train` was pointed at (a split's train half, or folders)."""
    from spamguard.learn.corpus import load_folders, load_split

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
    from spamguard.learn.fit import DEFAULT_BLOCKS, TrainOptions, train
    from spamguard.scoring.model import check_model_target, save_model

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
    from spamguard.evaluate import metrics
    from spamguard.learn.corpus import load_split
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


def register(sub: Any) -> None:
    """Add `spamguard train` and `eval` to the CLI."""
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
