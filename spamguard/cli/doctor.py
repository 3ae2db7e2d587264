"""`spamguard doctor`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spamguard.cli.argtypes import positive_float
from spamguard.doctor import DEFAULT_TIMEOUT, run_checks, write_report


def cmd_doctor(args: argparse.Namespace) -> int:
    findings = run_checks(
        getattr(args, "config", None),
        model_dir=Path(args.model) if args.model else None,
        connect=not args.offline,
        timeout=args.timeout,
        llm_speed=not args.no_llm_speed,
    )
    failed = any(f.status == "FAIL" for f in findings)
    if args.json:
        report = {"ok": not failed, "checks": [asdict(f) for f in findings]}
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        write_report(findings, sys.stdout)
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add `spamguard doctor` to the CLI."""
    p = subparsers.add_parser(
        "doctor",
        help="check keyring, tray, llama.cpp, models, config and accounts; say how to fix",
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--offline", action="store_true", help="do not log in to the accounts")
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"per-account connection timeout (default {DEFAULT_TIMEOUT:.0f})",
    )
    p.add_argument("--model", metavar="DIR", help="head model directory to check")
    p.add_argument(
        "--no-llm-speed",
        action="store_true",
        help="skip loading the LLM to measure its backend and tokens per second",
    )
    p.set_defaults(func=cmd_doctor)
