"""The `spamguard` command line: the parser, `main`, and the one-line failure report.

Heavy libraries (numpy, scikit-learn, onnxruntime, torch) are imported inside the
commands, so `spamguard --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spamguard import __version__
from spamguard.cli import account, doctor, llm, mail, models, score, thunderbird, train
from spamguard.errors import SpamGuardError

__all__ = ["build_parser", "fail", "main"]

# The command modules, imported by name: a module missing from an install or a bundle fails
# loudly at start instead of its commands quietly vanishing. Each adds its commands through
# `register(subparsers)`, in this order (the order of `spamguard --help`).
COMMAND_GROUPS = (score, train, mail, account, llm, models, doctor, thunderbird)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spamguard",
        description="SpamGuard: a local, learning spam filter for your IMAP mail.",
    )
    parser.add_argument("--version", action="version", version=f"spamguard {__version__}")
    parser.add_argument("--config", metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
