"""SpamGuard's shipped configuration against bogofilter on the same folds of the TRAIN half.

    .venv/bin/python benchmarks/peer_cv.py --embeddings ~/.cache/spamguard/work/emb_cache.npz \
        [--split SPLIT.tsv] [--corpus DIR] [--seed 0] [--json OUT.json]

Results for seeds 0, 1, 2: benchmarks/results/issue3-peer-cv-bogofilter-seed{0,1,2}.json.

The peer table in issue 3 measures each filter once on the test half. At 1% FPR that column
is decided by a handful of messages (1% of the test ham is 20 messages; 0.1 points of recall
is one spam), so this script asks the question again where a model may be compared as often
as we like: 5-fold cross-validation on the train half, the same folds for both filters.

- SpamGuard: the whole `spamguard train` pipeline with the shipped default's blocks (its own
  inner cross-validation, stacker and calibration) is run on four folds and scores the fifth.
- bogofilter (the Debian package, its default settings): a fresh word list per fold,
  ``-s``/``-n`` on the four training folds, ``-T`` scores for the fifth.
- bogofilter again on copies of the messages without the headers SpamGuard ignores on
  purpose (`HEADERS_IGNORED`: Received, list headers, Message-ID, Date, ...: the relays and
  mailing lists of 2002, which say nothing about mail today).
- Each bogofilter run summed with SpamGuard in log-odds: a diagnostic of whether bogofilter
  knows something SpamGuard does not, and from which headers.

It prints the figures, the spam each misses at 1% FPR and how many of those they share.
Only ``split == train`` rows are read: the test half is never parsed or scored.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_default import DEFAULT_MODEL_BLOCKS, SPLIT, VERSION, _LookupEncoder  # noqa: E402

from spamguard.evaluate import metrics, recall_at_fpr  # noqa: E402
from spamguard.learn.corpus import load_split  # noqa: E402
from spamguard.learn.fit import TrainOptions, train  # noqa: E402
from spamguard.scoring.encoder import encoder_text  # noqa: E402
from spamguard.scoring.features import HEADERS_IGNORED  # noqa: E402

FOLDS = 5


def strip_ignored_headers(raw: bytes) -> bytes:
    """The message without the header fields (and their continuation lines) SpamGuard ignores."""
    end = re.search(rb"\r?\n\r?\n", raw)
    head, body = (raw[: end.start()], raw[end.start() :]) if end else (raw, b"")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a continuation of the field above
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].decode("latin-1").strip().lower()
        dropping = line.startswith(b"From ") or bool(HEADERS_IGNORED.match(name))
        if not dropping:
            kept.append(line)
    return b"\n".join(kept) + body


def bogofilter_scores(
    paths: list[Path], y: np.ndarray, train_idx: np.ndarray, held_idx: np.ndarray
) -> np.ndarray:
    """bogofilter's spamicity of the held-out messages, trained on the others only."""
    with tempfile.TemporaryDirectory() as db:
        for flag, label in (("-s", True), ("-n", False)):
            files = [str(paths[i]) for i in train_idx if bool(y[i]) == label]
            subprocess.run(["bogofilter", "-d", db, flag, "-B", *files], check=True)
        held = [str(paths[i]) for i in held_idx]
        out = subprocess.run(
            ["bogofilter", "-d", db, "-T", "-B", *held], capture_output=True, text=True
        )
        if out.returncode not in (0, 1, 2):  # 0 spam, 1 ham, 2 unsure; 3 is an error
            raise RuntimeError(f"bogofilter failed: {out.stderr.strip()}")
    by_path: dict[str, float] = {}
    for line in out.stdout.splitlines():
        name, _verdict, score = line.rsplit(" ", 2)
        by_path[name] = float(score)
    return np.array([by_path[p] for p in held])


def spamguard_scores(
    items: list[Any], embeddings: np.ndarray, train_idx: np.ndarray, held_idx: np.ndarray, seed: int
) -> np.ndarray:
    """The shipped configuration trained on ``train_idx`` only, scoring ``held_idx``."""
    model = train(
        [items[i] for i in train_idx],
        TrainOptions(
            version=f"{VERSION}-fold", blocks=tuple(DEFAULT_MODEL_BLOCKS.items()), seed=seed
        ),
        embeddings=embeddings[train_idx],
    )
    held = [items[i].message for i in held_idx]
    X = model.featurizer.transform(held, embeddings[held_idx])
    return np.asarray(model.head.predict_proba(X)[:, 1])


def summary(y: np.ndarray, p: np.ndarray, groups: list[str], refs: list[str]) -> dict[str, Any]:
    m = metrics(y, p, groups)
    _, bar = recall_at_fpr(y, p, 0.01)
    missed = sorted(refs[i] for i in np.flatnonzero(y & (p <= bar)))
    return {
        "roc_auc": m["roc_auc"],
        "recall_at_0.1pct_fpr": m["recall_at_0.1pct_fpr"],
        "recall_at_1pct_fpr": m["recall_at_1pct_fpr"],
        "spam_missed_at_1pct_fpr": missed,
    }


def main() -> int:
    from sklearn.model_selection import StratifiedKFold

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default=str(SPLIT))
    parser.add_argument(
        "--corpus", default=str(Path.home() / ".cache/spamguard/corpora/spamassassin")
    )
    parser.add_argument("--embeddings", help="a .npz of precomputed int8-encoder vectors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures and the missed messages here")
    args = parser.parse_args()
    if shutil.which("bogofilter") is None:
        print("bogofilter is not installed (apt-get install bogofilter)", file=sys.stderr)
        return 2

    corpus = Path(args.corpus)
    items = load_split(Path(args.split), corpus, "train")
    y = np.array([it.is_spam for it in items])
    groups = [it.group for it in items]
    refs = [it.ref for it in items]
    paths = [corpus / r for r in refs]
    stripped_dir = Path(tempfile.mkdtemp(prefix="spamguard-peer-cv-"))
    stripped = []
    for ref, path in zip(refs, paths, strict=True):
        copy = stripped_dir / ref
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(strip_ignored_headers(path.read_bytes()))
        stripped.append(copy)
    texts = [encoder_text(it.message.subject, it.message.text) for it in items]
    if args.embeddings:
        embeddings = np.asarray(_LookupEncoder(Path(args.embeddings)).encode(texts))
    else:
        from spamguard.scoring.encoder import load_encoder

        embeddings = np.asarray(load_encoder("int8").encode(texts), dtype=np.float32)

    bogo_plain, bogo_stripped = "bogofilter", "bogofilter, ignored headers stripped"
    scores = {name: np.zeros(len(y)) for name in ("spamguard", bogo_plain, bogo_stripped)}
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=args.seed)
    for k, (train_idx, held_idx) in enumerate(folds.split(np.zeros(len(y)), y)):
        scores[bogo_plain][held_idx] = bogofilter_scores(paths, y, train_idx, held_idx)
        scores[bogo_stripped][held_idx] = bogofilter_scores(stripped, y, train_idx, held_idx)
        scores["spamguard"][held_idx] = spamguard_scores(
            items, embeddings, train_idx, held_idx, args.seed
        )
        print(f"fold {k + 1}/{FOLDS} done", file=sys.stderr)
    shutil.rmtree(stripped_dir, ignore_errors=True)

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.asarray(np.log(p / (1 - p)))

    for name in (bogo_plain, bogo_stripped):  # diagnostics, not products
        summed = logit(scores["spamguard"]) + logit(scores[name])
        scores[f"spamguard + {name} (log-odds sum)"] = 1 / (1 + np.exp(-summed))

    out: dict[str, Any] = {
        "what": f"{FOLDS}-fold CV on the train half, seed {args.seed}, same folds for both",
        "n_spam": int(y.sum()),
        "n_ham": int((~y).sum()),
    }
    for name, p in scores.items():
        out[name] = summary(y, p, groups, refs)
    shared = set(out["spamguard"]["spam_missed_at_1pct_fpr"]) & set(
        out[bogo_plain]["spam_missed_at_1pct_fpr"]
    )
    out["missed_by_both_at_1pct_fpr"] = sorted(shared)

    print(f"{out['what']}: {out['n_spam']} spam, {out['n_ham']} ham")
    # No fixed-threshold column: bogofilter's scores are not calibrated probabilities (its own
    # spam cutoff is 0.99), so "ham at p >= 0.90" would compare different things.
    print("| filter | ROC AUC | recall @0.1% FPR | recall @1% FPR | spam missed @1% FPR |")
    print("|---|---|---|---|---|")
    for name in scores:
        r = out[name]
        print(
            f"| {name} | {r['roc_auc']:.5f} | {r['recall_at_0.1pct_fpr']:.2%} | "
            f"{r['recall_at_1pct_fpr']:.2%} | {len(r['spam_missed_at_1pct_fpr'])} |"
        )
    print(f"spam missed at 1% FPR by both SpamGuard and bogofilter: {len(shared)}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
