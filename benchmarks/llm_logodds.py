"""Raw LLM label log-odds (both label variants) on fixed stratified subsets of the train and
test halves, one JSON line per message; resumable. Feeds benchmarks/llm_accuracy.py.

Subsets (seed 0): train 60 hard-ham + 80 other ham + 60 spam (plus any rows an earlier, larger
run left in the file); test every hard-ham (125) + 25 other ham + 50 spam, scored in a seeded
random order so a run cut short is still a stratified sample. One thread: on this shared
2-core machine that is the faster setting (about 4-10 s per message under load).

    python benchmarks/llm_logodds.py OUTDIR [MODEL]
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from _corpora import SPAMASSASSIN_SPLIT as SPLIT

from spamguard.learn.corpus import LabelledMessage, load_split
from spamguard.llm.engine import LLMEngine, LLMSettings
from spamguard.llm.prompts import mail_for_prompt

CORPUS = Path("/root/.cache/spamguard/corpora/spamassassin")


def subset(
    items: list[LabelledMessage], n_hard: int, n_easy: int, n_spam: int, seed: int = 0
) -> list[LabelledMessage]:
    rng = random.Random(seed)
    hard = [it for it in items if it.group.startswith("hard-ham")]
    easy = [it for it in items if not it.is_spam and not it.group.startswith("hard-ham")]
    spam = [it for it in items if it.is_spam]
    pick = rng.sample(hard, min(n_hard, len(hard)))
    pick += rng.sample(easy, n_easy) + rng.sample(spam, n_spam)
    pick.sort(key=lambda it: it.ref)
    rng.shuffle(pick)
    return pick


def main() -> None:
    out_dir = Path(sys.argv[1])
    model = sys.argv[2] if len(sys.argv) > 2 else "smollm2-135m-instruct"
    engine = LLMEngine(LLMSettings(model=model, threads=1, prompt_variant=None)).load()
    prompts = [engine.prompt, engine.prompt.variant("spam-ham")]
    print(engine.describe(), flush=True)
    for half, sizes in (("train", (60, 80, 60)), ("test", (125, 25, 50))):
        items = subset(load_split(SPLIT, CORPUS, half), *sizes)
        out = out_dir / f"{model}-{half}.jsonl"
        done = set()
        if out.exists():
            done = {json.loads(line)["ref"] for line in out.read_text().splitlines()}
        with out.open("a") as fh:
            for it in items:
                if it.ref in done:
                    continue
                t = time.perf_counter()
                row = engine.label_logodds_variants([mail_for_prompt(it.message)], prompts)[0]
                record = {
                    "ref": it.ref,
                    "group": it.group,
                    "is_spam": it.is_spam,
                    "logodds": dict(zip([p.version for p in prompts], row, strict=True)),
                    "seconds": time.perf_counter() - t,
                }
                fh.write(json.dumps(record) + "\n")
                fh.flush()
        print(half, "done", flush=True)


if __name__ == "__main__":
    main()
