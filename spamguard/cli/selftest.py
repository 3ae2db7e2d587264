"""`--self-test`: verify the shipped model files' sha256 and score the demo mailbox with them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["MIN_DEMO_AUC", "Step", "command_paths", "main", "run"]

Status = Literal["OK", "WARN", "FAIL"]

# The demo mail is hand-labelled; a model that ranks it this badly (ROC AUC; 0.5 is chance)
# was mixed up or mis-bundled even if every hash matched. Ranking, not verdicts: thresholds
# move between head versions, the ordering of obvious spam above ham does not.
MIN_DEMO_AUC = 0.80
LLM_SAMPLE = 2


@dataclass
class Step:
    """One line of the self-test report."""

    name: str
    status: Status
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


def _timed(name: str, fn: Callable[[], tuple[Status, str, dict[str, Any]]]) -> Step:
    started = time.perf_counter()
    try:
        status, detail, data = fn()
    except Exception as exc:
        # The self-test must report every failure as a line, never die with a traceback.
        status, detail, data = "FAIL", f"{type(exc).__name__}: {exc}", {}
    return Step(name, status, detail, time.perf_counter() - started, data)


def _head(model_dir: Path | None) -> tuple[Status, str, dict[str, Any]]:
    from spamguard.scoring.model import default_model_dir, load_model

    path = model_dir or default_model_dir()
    # load_model re-hashes every file listed in config.json and raises on a mismatch.
    model = load_model(path)
    files = json.loads((path / "config.json").read_text("utf-8")).get("files") or {}
    return (
        "OK",
        f"{model.version} at {path}; sha256 verified for {', '.join(sorted(files)) or 'no files'}",
        {"path": str(path), "version": model.version, "sha256": files},
    )


def _encoder() -> tuple[Status, str, dict[str, Any]]:
    from spamguard.scoring.encoder import MANIFEST, ensure_onnx_model

    # Verifies every file in the cache's manifest.json (and would export when missing).
    path = ensure_onnx_model("int8")
    manifest = json.loads((path.parent / MANIFEST).read_text("utf-8"))
    digest = manifest["files"][path.name]["sha256"]
    # A run, not only a hash: proves onnxruntime and the tokenizer work where it is installed.
    import numpy as np

    from spamguard.scoring.encoder import EMBEDDING_DIM, load_encoder

    vectors = load_encoder("int8").encode(["Claim your prize now", "Minutes of Monday's meeting"])
    norms = np.linalg.norm(vectors, axis=1)
    if vectors.shape != (2, EMBEDDING_DIM) or not np.allclose(norms, 1.0, atol=1e-3):
        return "FAIL", f"{path} runs but gives vectors of shape {vectors.shape}", {}
    detail = f"{path} sha256 {digest[:16]}… verified; encodes ({EMBEDDING_DIM} dims)"
    return "OK", detail, {"path": str(path), "sha256": digest}


def _demo(model_dir: Path | None) -> tuple[Status, str, dict[str, Any]]:
    from spamguard.demo import demo_labels, demo_mailbox_path
    from spamguard.learn.corpus import iter_message_files
    from spamguard.learn.registry import active_model_dir
    from spamguard.message import parse_message
    from spamguard.scoring.model import load_scorer
    from spamguard.verdict import model_thresholds

    scorer = load_scorer(model_dir or active_model_dir())
    saved = model_thresholds(scorer.model.thresholds)
    move, flag = saved.move, saved.flag
    labels = demo_labels()
    files = sorted(iter_message_files(demo_mailbox_path()))
    messages = [parse_message(p.read_bytes()) for p in files]
    started = time.perf_counter()
    scores = scorer.score(messages)
    elapsed = time.perf_counter() - started
    verdicts = [s.verdict(move, flag) for s in scores]
    right = sum(
        (v == "spam") == (labels.get(p.name) == "spam")
        for p, v in zip(files, verdicts, strict=True)
    )
    counts = {k: verdicts.count(k) for k in ("spam", "flag", "ham")}
    auc = _auc([s.p_spam for s in scores], [labels.get(p.name) == "spam" for p in files])
    status: Status = "OK" if auc >= MIN_DEMO_AUC else "FAIL"
    detail = (
        f"{len(files)} messages in {elapsed:.2f} s: {counts['spam']} to Junk, "
        f"{counts['flag']} flagged, {counts['ham']} left; {right}/{len(files)} verdicts match "
        f"the hand labels, ROC AUC {auc:.3f} (model {scorer.version})"
    )
    data = {"auc": auc, "agree": right, "n": len(files), "counts": counts, "seconds": elapsed}
    return status, detail, data


def _auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Probability that a random spam outscores a random ham (ties count half)."""
    pos = [s for s, y in zip(scores, positive, strict=True) if y]
    neg = [s for s, y in zip(scores, positive, strict=True) if not y]
    if not pos or not neg:
        return 0.0
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def command_paths(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """Every command of ``parser`` and its sub-commands, e.g. ("label",), ("models", "list")."""
    paths: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((name,))
                paths.extend((name, *rest) for rest in command_paths(sub))
    return paths


def _commands() -> tuple[Status, str, dict[str, Any]]:
    """`--help` of every command group: a command module missing from a bundle shows here."""
    import contextlib
    import io

    from spamguard.cli.root import build_parser, main

    paths = command_paths(build_parser())
    failed: list[str] = []
    for path in paths:
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                main([*path, "--help"])
            code: object = 0
        except SystemExit as exc:
            code = exc.code
        if code not in (0, None) or "usage:" not in sink.getvalue():
            failed.append(f"{' '.join(path)} (exit {code}: {sink.getvalue().strip()[-120:]})")
    groups = sorted({p[0] for p in paths})
    data = {"commands": [" ".join(p) for p in paths], "failed": failed}
    if failed:
        return "FAIL", f"--help failed for {'; '.join(failed)}", data
    return "OK", f"--help of {len(paths)} commands answers ({', '.join(groups)})", data


def _llm() -> tuple[Status, str, dict[str, Any]]:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return "FAIL", "llama_cpp is not importable (the llama.cpp library is missing)", {}
    from spamguard.demo import demo_mailbox_path
    from spamguard.learn.corpus import iter_message_files
    from spamguard.llm.catalog import verify_sha256
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.prompts import mail_for_prompt
    from spamguard.message import parse_message

    # verify=False and an explicit uncached hash: the self-test must really read the file.
    engine = LLMEngine(LLMSettings(threads=1, token_budget=96, verify=False))
    try:
        verify_sha256(engine.path, engine.entry.sha256, use_cache=False)
        engine.load()
        files = sorted(iter_message_files(demo_mailbox_path()))[:LLM_SAMPLE]
        logodds = engine.label_logodds(
            [mail_for_prompt(parse_message(p.read_bytes())) for p in files]
        )
        info = engine.describe()
    finally:
        engine.close()
    detail = (
        f"{info['model']} ({info['quantization']}) sha256 {info['sha256'][:16]}… verified; "
        f"loaded in {engine.load_seconds:.2f} s on {info['backend']}; "
        f"scored {len(logodds)} demo messages"
    )
    return "OK", detail, {**info, "logodds": logodds}


def run(
    argv: Sequence[str] | None = None,
    *,
    out: IO[str] | None = None,
    extra: Sequence[Callable[[], Step]] = (),
    only: Sequence[str] | None = None,
) -> int:
    """Run the self-test, print its report; 0 when nothing failed.

    ``extra`` lets the front end (which may import Qt) add its own steps to the report;
    ``only`` names the engine steps to run (all, and the extra ones, when None).
    """
    parser = argparse.ArgumentParser(prog="spamguard --self-test")
    parser.add_argument("--self-test", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-llm", action="store_true", help="skip the LLM stage")
    parser.add_argument("--model", metavar="DIR", help="head model directory")
    args = parser.parse_args(list(argv) if argv is not None else [])
    stream = out or sys.stdout
    model_dir = Path(args.model) if args.model else None
    started = time.perf_counter()

    # The encoder is checked even for a head that does not use it: the bundle ships it and
    # a retrained head (or the user's own) may need it.
    planned: list[tuple[str, Callable[[], tuple[Status, str, dict[str, Any]]]]] = [
        ("head model", lambda: _head(model_dir)),
        ("sentence encoder", _encoder),
        ("demo mailbox", lambda: _demo(model_dir)),
        ("commands", _commands),
    ]
    if not args.no_llm:
        planned.append(("LLM", _llm))
    steps = [_timed(name, fn) for name, fn in planned if only is None or name in only]
    if only is None:
        steps.extend(step() for step in extra)
    total = time.perf_counter() - started
    failed = [s for s in steps if s.status == "FAIL"]

    if args.json:
        report = {
            "ok": not failed,
            "seconds": total,
            "frozen": bool(getattr(sys, "frozen", False)),
            "steps": [asdict(s) for s in steps],
        }
        stream.write(json.dumps(report, indent=2) + "\n")
    else:
        from spamguard import __version__

        stream.write(f"SpamGuard {__version__} self-test\n")
        for s in steps:
            stream.write(f"  {s.status:<4}  {s.name:<17} {s.detail} [{s.seconds:.2f} s]\n")
        verdict = "FAILED" if failed else "passed"
        stream.write(f"self-test {verdict} in {total:.2f} s\n")
    stream.flush()
    return 1 if failed else 0


def main() -> int:
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
