"""Learning commands: `spamguard label`, `models list|promote|rollback|retrain|export|
import`, `learn existing`, `adapt`, and `--from` on `spamguard train`. Registered by
`spamguard.cli` via `register()`.

Everything heavy is imported inside the command functions, so `spamguard --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from spamguard.cli.argtypes import non_negative_count, non_negative_float
from spamguard.cli.common import ProgressBar, config_of, warn
from spamguard.engine.runtime import model_registry, open_store
from spamguard.errors import SpamGuardError

__all__ = ["register"]


# -- spamguard label -------------------------------------------------------------------------------


def cmd_label(args: argparse.Namespace) -> int:
    from spamguard.learn.labels import apply_label, labelling

    config = config_of(args)
    failed = 0
    with open_store(config) as store:
        found = []
        for ref in args.ids:
            scored = store.find_scored(ref, args.account)
            if scored is None:
                warn(f"{ref}: SpamGuard has not scored a message with that id or Message-ID")
                failed += 1
            else:
                found.append((ref, scored))
        for name in dict.fromkeys(s.account for _, s in found):
            with labelling(config.account(name), store) as (ctx, executor):
                for ref, scored in found:
                    if scored.account != name:
                        continue
                    try:
                        rec = apply_label(ctx, executor, scored, args.label)
                    except SpamGuardError as exc:
                        warn(f"{ref}: {exc}")
                        failed += 1
                        continue
                    what = "recorded" if rec is not None else "already labelled so"
                    warn(f"{ref} {scored.subject[:60]!r}: {args.label} ({what})")
    return 1 if failed else 0


# -- spamguard models --------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    registry = model_registry(config_of(args))
    versions = registry.versions()
    active = registry.active
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"active": active, "versions": [asdict(v) for v in versions]}, indent=2))
        return 0
    if active is None:
        print("active: the shipped default model")
    if not versions:
        print("no personal versions yet (they appear after labels are learnt from)")
        return 0
    print(f"{'':2}{'version':38} {'parent':38} {'state':11} {'labels':>11}  held-back  created")
    for v in versions:
        held = v.metrics.get("held_back", {})
        errs = f"{held.get('errors_candidate', '-')}/{held.get('n', '-')} err" if held else "-"
        mark = "* " if v.version == active else "  "
        labels = f"{v.n_labels} ({v.n_spam}s/{v.n_ham}h)"
        print(
            f"{mark}{v.version[:38]:38} {(v.parent or '-')[:38]:38} {v.state:11} "
            f"{labels:>11}  {errs:9}  {v.created_at}"
        )
        if v.reason:
            print(f"{'':4}why: {v.reason}")
        if v.shadow:
            print(
                f"{'':4}shadow: {v.shadow.get('disagreements', 0)} disagreements in "
                f"{v.shadow.get('seen', 0)} messages"
            )
            for ex in v.shadow.get("examples", [])[:5]:
                print(
                    f"{'':6}{ex['subject'][:50]!r}: active {ex['p_active']:.2f}, "
                    f"candidate {ex['p_candidate']:.2f}"
                )
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    info = model_registry(config_of(args)).promote(args.version, "promoted by hand")
    warn(f"active: {info.version}")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    previous = model_registry(config_of(args)).rollback()
    warn(f"active: {previous or 'the shipped default model'}")
    return 0


def cmd_models_register(args: argparse.Namespace) -> int:
    version = model_registry(config_of(args)).register_dir(Path(args.dir), activate=args.activate)
    warn(f"registered {version}" + (" (active)" if args.activate else ""))
    return 0


def cmd_models_retrain(args: argparse.Namespace) -> int:
    from spamguard.learn.loop import Learner, LearnOptions

    registry = model_registry(config_of(args))
    public = (Path(args.split), Path(args.corpus)) if args.split and args.corpus else None
    options = LearnOptions(shadow_messages=args.shadow, background=False, public_eval=public)
    with open_store(config_of(args)) as store:
        learner = Learner(store, registry=registry, options=options)
        bar = ProgressBar("retraining", None)
        outcome = learner.retrain(lambda p: bar.update(p.done, p.total, f"retraining: {p.step}"))
        bar.close()
    warn(f"{outcome.version}: {outcome.state} ({outcome.reason}) in {outcome.seconds:.1f} s")
    return 0 if outcome.state != "rejected" else 1


def cmd_models_export(args: argparse.Namespace) -> int:
    registry = model_registry(config_of(args))
    version = args.version or registry.active
    labels: dict[str, Any] = {}
    if version is not None:
        info = registry.get(version)
        labels = {"n": info.n_labels, "n_spam": info.n_spam, "n_ham": info.n_ham}
    out = registry.export(version, Path(args.out), labels=labels)
    print(out)
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    info = model_registry(config_of(args)).import_file(Path(args.file), activate=args.activate)
    warn(f"imported {info.version} ({info.state})")
    return 0


# -- spamguard learn existing --------------------------------------------------------------------


def first_sync_options(args: argparse.Namespace) -> Any:
    from spamguard.learn.first_sync import FirstSyncOptions

    defaults = FirstSyncOptions()
    return FirstSyncOptions(
        max_spam=getattr(args, "max_spam", None) or defaults.max_spam,
        max_ham=getattr(args, "max_ham", None) or defaults.max_ham,
        min_age_days=(
            args.min_age_days
            if getattr(args, "min_age_days", None) is not None
            else defaults.min_age_days
        ),
        shadow_messages=getattr(args, "shadow", None) or 0,
    )


def run_first_sync(args: argparse.Namespace, account: str) -> int:
    """Learn from ``account``'s existing mail with a progress bar; Ctrl-C stops it, and the
    next run continues where it stopped (`spamguard learn existing`, `account add`)."""
    from spamguard.learn.first_sync import learn_existing
    from spamguard.mail.connect import open_mailstore

    config = config_of(args)
    settings = config.account(account)
    registry = model_registry(config)
    options = first_sync_options(args)
    steps = {
        "looking": "looking at the folders",
        "reading": "reading (nothing is moved)",
        "features": "reading the messages' features",
    }
    with open_store(config) as store:
        mail = open_mailstore(settings, read_only=True)
        mail.connect()
        bar = ProgressBar("learning from existing mail", None)
        try:
            result = learn_existing(
                mail,
                settings,
                store,
                registry,
                options,
                on_progress=lambda p: bar.update(
                    p.done, p.total, f"{account}: {steps.get(p.step, 'learning: ' + p.step)}"
                ),
            )
        except KeyboardInterrupt:
            bar.close()
            kept = store.first_sync_count(account)
            warn(
                f"{account}: stopped; {kept:,} messages read so far are kept, and "
                f"`spamguard learn existing --account {account}` continues from there"
            )
            return 130
        finally:
            bar.close()
            mail.close()
    print(f"{account}: {result.message}", flush=True)
    if result.state == "too little":
        return 3
    return 1 if result.state == "rejected" else 0


def cmd_learn_existing(args: argparse.Namespace) -> int:
    return run_first_sync(args, args.account)


def add_first_sync_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-spam", type=int, metavar="N", help="the newest N in Junk at most (default 2000)"
    )
    p.add_argument(
        "--max-ham", type=int, metavar="N", help="the newest N read messages at most (2000)"
    )
    p.add_argument(
        "--min-age-days",
        type=int,
        metavar="D",
        help="only read mail older than D days counts as not spam (default 3)",
    )


# -- spamguard train --from ----------------------------------------------------------------------


def _train_with_from(original: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "from_model", None) is None:
            return int(original(args))
        return cmd_train_from(args)

    return run


def cmd_train_from(args: argparse.Namespace) -> int:
    from spamguard.cli.train import training_items
    from spamguard.learn.warm import WarmStartOptions, train_from
    from spamguard.scoring.model import check_model_target, save_model

    check_model_target(Path(args.out))  # before minutes of training, not after
    items, source = training_items(args)
    options = WarmStartOptions(
        l2=args.l2,
        augment_headerless=not args.no_headerless_augment,
        version=args.version or "",
    )
    bar = ProgressBar("training", None)
    model = train_from(
        args.from_model,
        items,
        options,
        source=source,
        on_progress=lambda p: bar.update(p.done, p.total, f"training: {p.step}"),
    )
    bar.close()
    out = save_model(model, Path(args.out))
    cv = model.metrics.get("user_cv", {})
    auc = cv.get("roc_auc")
    warn(
        f"trained {model.version} from {model.training['parent']} on {len(items)} messages"
        + (f" (cross-validated AUC {auc:.5f})" if isinstance(auc, float) else "")
    )
    print(out)
    return 0


# -- spamguard adapt -----------------------------------------------------------------------------


def cmd_adapt(args: argparse.Namespace) -> int:
    from spamguard.learn.adaptation import adapt_curve, plot_curve
    from spamguard.learn.corpus import load_folders
    from spamguard.learn.warm import WarmStartOptions
    from spamguard.scoring.model import default_model_dir, load_model

    model_dir = default_model_dir() if args.model in (None, "default") else Path(args.model)
    parent = load_model(model_dir)
    target = load_folders([Path(p) for p in args.ham], [Path(p) for p in args.spam])
    ks = [int(k) for k in str(args.k).split(",")]
    result = adapt_curve(
        parent, target, ks=ks, seed=args.seed, options=WarmStartOptions(l2=args.l2)
    )
    for row in result["rows"]:
        for name, m in row["sets"].items():
            b, a = m["before"], m["after"]
            print(
                f"K={row['k']:<4d} {name}: AUC {b['roc_auc']:.4f} -> {a['roc_auc']:.4f}, "
                f"recall@1%FPR {b['recall_at_1pct_fpr']:.3f} -> {a['recall_at_1pct_fpr']:.3f}, "
                f"errors {b['errors_at_flag']:.0f} -> {a['errors_at_flag']:.0f} "
                f"of {b['n']:.0f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    if args.plot:
        plot_curve(result, Path(args.plot))
        warn(f"curve: {args.plot}")
    return 0


# -- registration --------------------------------------------------------------------------------


def register(sub: Any) -> None:
    p = sub.add_parser("label", help="label messages spam or ham (moves them to match)")
    p.add_argument("label", choices=["spam", "ham"])
    p.add_argument("ids", nargs="+", metavar="ID", help="store message id or Message-ID")
    p.add_argument("--account", help="only this account's messages")
    p.set_defaults(func=cmd_label)

    models = sub.add_parser("models", help="personal model versions: list, promote, rollback")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p = msub.add_parser("list", help="versions with parents, labels, metrics and states")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser("promote", help="make a version the active model")
    p.add_argument("version")
    p.set_defaults(func=cmd_models_promote)
    p = msub.add_parser("rollback", help="back to the previously active model, at once")
    p.set_defaults(func=cmd_models_rollback)
    p = msub.add_parser("register", help="add a model directory as a version")
    p.add_argument("dir")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(func=cmd_models_register)
    p = msub.add_parser("retrain", help="retrain on your labels now")
    p.add_argument(
        "--shadow",
        type=non_negative_count,
        default=50,
        metavar="N",
        help="shadow messages (0: off)",
    )
    p.add_argument("--split", metavar="TSV", help="also check on this split's test half")
    p.add_argument("--corpus", metavar="DIR")
    p.set_defaults(func=cmd_models_retrain)
    p = msub.add_parser("export", help="write a version (default: active) to one .zip file")
    p.add_argument("out", metavar="OUT.zip")
    p.add_argument("--version", dest="version", metavar="NAME")
    p.set_defaults(func=cmd_models_export)
    p = msub.add_parser("import", help="add a version from an exported .zip")
    p.add_argument("file", metavar="FILE.zip")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(func=cmd_models_import)

    learn = sub.add_parser("learn", help="learn from mail an account already holds")
    lsub = learn.add_subparsers(dest="learn_command", metavar="ACTION", required=True)
    p = lsub.add_parser(
        "existing",
        help="learn from an account's Junk (spam) and the mail you read (not spam); "
        "read-only, resumable",
    )
    p.add_argument("--account", required=True, metavar="NAME")
    add_first_sync_args(p)
    p.add_argument(
        "--shadow",
        type=int,
        default=0,
        metavar="N",
        help="run the new version in shadow for N messages before it takes over (default 0: "
        "promote once the held-back checks pass)",
    )
    p.set_defaults(func=cmd_learn_existing)

    p = sub.add_parser(
        "adapt", help="adaptation curve: K labels from a mailbox, metrics on the rest"
    )
    p.add_argument("--model", metavar="DIR", help="model to adapt (default: the shipped one)")
    p.add_argument("--ham", metavar="DIR", action="append", required=True)
    p.add_argument("--spam", metavar="DIR", action="append", required=True)
    p.add_argument("--k", "--adapt", default="10,20,50,100", help="comma-separated K values")
    p.add_argument("--seed", type=non_negative_count, default=0)
    p.add_argument(
        "--l2", type=non_negative_float, default=0.1, help="pull towards the parent's weights"
    )
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--plot", metavar="OUT.png")
    p.set_defaults(func=cmd_adapt)

    # `spamguard train --from MODEL_DIR|default`: the train parser is cli/train.py's, so extend it
    # here instead of editing it; without --from it runs exactly as before.
    train = sub.choices.get("train")
    if train is not None:
        train.add_argument(
            "--from",
            dest="from_model",
            metavar="MODEL_DIR",
            help="warm-start from this model (or 'default') instead of training from scratch",
        )
        train.add_argument(
            "--l2",
            type=non_negative_float,
            default=0.1,
            help="with --from: pull towards its weights",
        )
        train.set_defaults(func=_train_with_from(train.get_default("func")))
