"""A candidate default model next to the shipped one, on the modern dev half and the demo.

    python benchmarks/candidate_eval.py --model CANDIDATE_DIR [--baseline DIR]
        [--corpus MODERN_DIR] [--spam-every 10] [--embeddings-cache CACHE.npz] [--json OUT]

Both models score, in one run and with their full heads (no cascade: the shipped cascade's
band was fitted for default-3's heads): every legitimate message of the modern corpus's dev
half, every N-th spam of it, and the bundled demo mailbox. Printed side by side: legitimate
mail flagged (p >= 0.50) and moved (p >= 0.90), overall and for transactional mail and each
source; spam recall at both thresholds; and every demo message either model flags. The
sentence vectors are shared between the two (the encoder reads the same text), so the
second model costs little. Measurement only: nothing here chooses anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from evasion import _MemoEncoder  # noqa: E402

MOVE, FLAG = 0.90, 0.50


def score(scorer: object, messages: list) -> np.ndarray:
    out: list[float] = []
    for start in range(0, len(messages), 64):
        out += [s.p_spam for s in scorer.score(messages[start : start + 64])]  # type: ignore[attr-defined]
    return np.asarray(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the candidate's model directory")
    ap.add_argument("--baseline", help="model directory (default: the shipped default)")
    ap.add_argument("--corpus", type=Path, default=Path.home() / ".cache/spamguard/corpora/modern")
    ap.add_argument("--manifest", type=Path, default=ROOT / "data/modern/manifest.tsv")
    ap.add_argument("--spam-every", type=int, default=10)
    ap.add_argument("--embeddings-cache", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from spamguard.demo import demo_labels, demo_mailbox_path
    from spamguard.evaluate import auc
    from spamguard.learn.corpus import load_manifest
    from spamguard.message import learn_authserv_id, parse_message
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import load_scorer

    rows = load_manifest(args.manifest, args.corpus, "dev")
    ham = [(e, it) for e, it in rows if not e.is_spam]
    spam = [(e, it) for e, it in rows if e.is_spam][:: args.spam_every]
    labels = demo_labels()
    files = sorted(demo_mailbox_path().joinpath("cur").iterdir())
    files = [p for p in files if not p.name.startswith(".")]
    server = learn_authserv_id(parse_message(p.read_bytes()) for p in files)
    demo = [(p.name, parse_message(p.read_bytes(), authserv_id=server)) for p in files]

    memo = _MemoEncoder(load_encoder("int8", threads=1), args.embeddings_cache)
    result: dict = {"spam_every": args.spam_every, "models": {}}
    for name, model_dir in (("baseline", args.baseline), ("candidate", args.model)):
        scorer = load_scorer(Path(model_dir) if model_dir else None, encoder=memo)
        scorer.top_evidence = 0
        scorer.n_neighbours = 0
        p_ham = score(scorer, [it.message for _, it in ham])
        p_spam = score(scorer, [it.message for _, it in spam])
        p_demo = score(scorer, [m for _, m in demo])
        memo.save()
        by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for (e, _), p in zip(ham, p_ham, strict=True):
            c = by_source[e.source]
            c[0] += 1
            c[1] += int(p >= FLAG)
            c[2] += int(p >= MOVE)
        trans = np.asarray([e.category.startswith("transactional") for e, _ in ham])
        demo_ham = np.asarray([labels[n] == "ham" for n, _ in demo])
        y = np.concatenate([np.zeros(len(p_ham)), np.ones(len(p_spam))])
        r = {
            "version": scorer.version,
            "n_ham": len(ham),
            "ham_flagged": int((p_ham >= FLAG).sum()),
            "ham_moved": int((p_ham >= MOVE).sum()),
            "n_transactional": int(trans.sum()),
            "transactional_flagged": int((p_ham[trans] >= FLAG).sum()),
            "transactional_moved": int((p_ham[trans] >= MOVE).sum()),
            "n_spam": len(spam),
            "spam_recall_move": float(np.mean(p_spam >= MOVE)),
            "spam_recall_flag": float(np.mean(p_spam >= FLAG)),
            "roc_auc_sampled": float(auc(y, np.concatenate([p_ham, p_spam]))),
            "by_source_ham": {
                k: dict(zip(("n", "flagged", "moved"), v, strict=True))
                for k, v in sorted(by_source.items())
            },
            "ham_moved_list": sorted(
                (
                    (float(p), e.source, it.message.subject[:70])
                    for (e, it), p in zip(ham, p_ham, strict=True)
                    if p >= MOVE
                ),
                reverse=True,
            ),
            "demo": {
                "n_ham": int(demo_ham.sum()),
                "ham_flagged": int((p_demo[demo_ham] >= FLAG).sum()),
                "ham_moved": int((p_demo[demo_ham] >= MOVE).sum()),
                "n_spam": int((~demo_ham).sum()),
                "spam_moved": int((p_demo[~demo_ham] >= MOVE).sum()),
                "spam_flagged": int((p_demo[~demo_ham] >= FLAG).sum()),
                "scores": {
                    m.subject[:60]: [labels[n], round(float(p), 3)]
                    for (n, m), p in zip(demo, p_demo, strict=True)
                },
            },
        }
        result["models"][name] = r
        print(
            f"{name} {r['version']}: modern dev ham flagged {r['ham_flagged']}/{r['n_ham']}, "
            f"moved {r['ham_moved']} (transactional {r['transactional_moved']}/"
            f"{r['n_transactional']}); spam recall@0.90 {r['spam_recall_move']:.3f} "
            f"@0.50 {r['spam_recall_flag']:.3f} (n={r['n_spam']}); AUC {r['roc_auc_sampled']:.5f}; "
            f"demo ham flagged {r['demo']['ham_flagged']} moved {r['demo']['ham_moved']} of "
            f"{r['demo']['n_ham']}, spam moved {r['demo']['spam_moved']}/{r['demo']['n_spam']}",
            flush=True,
        )
    b, c = result["models"]["baseline"], result["models"]["candidate"]
    print("\ndemo message                                                  label  base   cand")
    for subj, (label, pb) in b["demo"]["scores"].items():
        pc = c["demo"]["scores"][subj][1]
        if max(pb, pc) >= FLAG or label == "spam":
            print(f"{subj:<62} {label:<5} {pb:.3f}  {pc:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
