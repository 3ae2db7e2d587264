"""Where the benchmarks find their mail: the shared SpamAssassin corpus and its fixed split,
and the modern corpus with its manifest.

The shared folder sits beside the checkout, ``ROOT.parent / "shared"``, as the tests find it
(a worktree in /work/wt has a ``shared`` link there). Each corpus folder is the one its fetch
script prints; the scripts exit at once when their corpus is complete and fetch it otherwise.
A fetch that fails ends the benchmark with one line naming the script and what it said on
stderr (`SystemExit`, no traceback).

Run as ``python benchmarks/NAME.py``, a benchmark imports this as ``_corpora`` (Python puts
the script's folder first on sys.path).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: The SpamAssassin corpus's fixed train/test split (shared/TESTING.md).
SPAMASSASSIN_SPLIT = SHARED / "corpora" / "spamassassin-split.tsv"
#: The modern corpus's manifest (its split column: train / dev).
MODERN_MANIFEST = ROOT / "data" / "modern" / "manifest.tsv"


def spamassassin_corpus() -> Path:
    """The SpamAssassin corpus folder: ``$SPAMGUARD_CORPUS`` when set (as the tests read it),
    else what shared/corpora/fetch-spamassassin prints."""
    env = os.environ.get("SPAMGUARD_CORPUS")
    if env:
        return Path(env)
    return _fetch([str(SHARED / "corpora" / "fetch-spamassassin")])


def modern_corpus() -> Path:
    """The modern corpus folder scripts/fetch-modern-corpus prints, read from the local git
    mirrors (``.mirror`` in a folder above the checkout) when this machine has them."""
    cmd = [str(ROOT / "scripts" / "fetch-modern-corpus")]
    mirror = next((p / ".mirror" for p in ROOT.parents if (p / ".mirror").is_dir()), None)
    if mirror is not None:
        cmd += ["--mirror", str(mirror)]
    return _fetch(cmd)


def _fetch(cmd: list[str]) -> Path:
    """Run a fetch script; the folder it prints on stdout, or SystemExit with one line."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise SystemExit(f"{cmd[0]} failed to start: {exc}") from None
    folder = proc.stdout.strip()
    if proc.returncode != 0 or not folder:
        said = " | ".join(line.strip() for line in proc.stderr.splitlines() if line.strip())
        raise SystemExit(f"{cmd[0]} failed (exit {proc.returncode}): {said or 'no stderr'}")
    return Path(folder)
