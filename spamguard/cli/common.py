"""What the command modules share: the config, output lines, the progress bar, model and
threshold options."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from spamguard.cli.argtypes import probability
from spamguard.config import Config, load_config
from spamguard.engine.runtime import active_model_dir
from spamguard.errors import SpamGuardError
from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD, model_thresholds

BATCH = 64


def time_left(seconds: float) -> str:
    """ "about 40 s", "about 3 min", "about 1 h 20 min": a progress bar's estimate."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def config_of(args: argparse.Namespace) -> Config:
    """``--config FILE``, else the platform default (a missing default is an empty config)."""
    return load_config(getattr(args, "config", None))


def say(text: str) -> None:
    """A result line on stdout."""
    print(text, flush=True)


def warn(text: str) -> None:
    """A progress or warning line on stderr (stdout stays machine-readable)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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


def _load_scorer(args: argparse.Namespace, *, cascade: bool = False) -> Any:
    """The head of ``--model`` (default: the active model); with ``cascade``, the cascade
    in front of it when its bands fit (see `load_default_scorer`)."""
    from spamguard.scoring.assemble import load_default_scorer

    return load_default_scorer(
        _model_dir(args),
        encoder_kind=getattr(args, "encoder", None),
        cascade=cascade and not getattr(args, "no_cascade", False),
    )


def _model_dir(args: argparse.Namespace) -> Path:
    """``--model``, else the config's ``model_dir`` (what `run` scores with), else the active
    version in the config's data_dir. A configured folder that is missing is an error, not a
    silent fallback."""
    if getattr(args, "model", None):
        return Path(args.model)
    return active_model_dir(config_of(args))


def _thresholds(args: argparse.Namespace, scorer: Any) -> tuple[float, float]:
    saved = model_thresholds(scorer.model.thresholds)
    move = args.move if args.move is not None else saved.move
    flag = args.flag if args.flag is not None else saved.flag
    if not 0.0 <= flag <= move <= 1.0:
        raise SpamGuardError(f"thresholds must satisfy 0 <= flag ({flag}) <= move ({move}) <= 1")
    return float(move), float(flag)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="model directory (default: the shipped one)")
    p.add_argument(
        "--encoder",
        choices=["int8", "fp32", "torch"],
        help="sentence encoder path: int8 ONNX (default), fp32 ONNX, or the torch reference",
    )
    p.add_argument(
        "--move",
        type=probability,
        help=f"move-to-Junk threshold (default {DEFAULT_MOVE_THRESHOLD:.2f})",
    )
    p.add_argument(
        "--flag", type=probability, help=f"flag threshold (default {DEFAULT_FLAG_THRESHOLD:.2f})"
    )


def _add_authserv_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--authserv-id",
        metavar="ID",
        help="trust the Authentication-Results (SPF, DKIM, DMARC) that this receiving server "
        "(its authserv-id, e.g. mx.example.com) added at the top of the message. Without it a "
        "message file has no trusted results: any header in it could have been written by "
        "the sender, so authentication signals are left out",
    )
