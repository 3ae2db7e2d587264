"""Issue 18: three ways a local GGUF LLM could help on the cascade's uncertain band, side by side.

    python benchmarks/llm_routes_data.py                      # 1. the head's scores (cached)
    python benchmarks/llm_routes.py features --model NAME     # 2. each route's LLM outputs
    python benchmarks/llm_routes.py cost --model NAME         # 3. cost on 2 threads, RSS
    python benchmarks/llm_routes.py report                    # 4. CV, decision, table, JSON

Routes (spamguard/llm/routes.py): ``encoder`` (pooled hidden state + logistic block),
``fewshot`` (label log-odds after 3 neighbours that MiniLM retrieves from the shipped index),
``questions`` (yes/no log-odds of four narrow questions, each a stacker feature).

Bands, both chosen on the TRAIN halves only (out-of-fold scores for SpamAssassin train,
the shipped head's scores for the modern train half, which it never saw):
``narrow`` = what stage 1 leaves between flag (0.50) and move (0.90); ``wide`` = a margin
around it, the widest band of the fixed candidates that keeps the LLM on at most 2% of the
train halves' mail. For each route a logistic stacker over [logit(p_head), route features]
is fitted on the train halves' wide band; its errors at both thresholds are measured by
5-fold CV there (the decision) and, fitted on all train-band messages, on the SpamAssassin
test half and the modern dev half (reported only, never chosen on).

Every LLM output is cached under --cache (default /tmp/spamguard-routes), keyed by model,
route and message hash, so a rerun computes only what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_routes_data import CACHE, ROOT, SETS, TRAIN_SETS, load_sets

RESULTS = ROOT / "benchmarks" / "results"
FLAG, MOVE = 0.50, 0.90
NARROW = (FLAG, MOVE)
# Candidate margins around [flag, move), widest first; the first whose share of the train
# halves' mail is at most MAX_SHARE is the wide band.
WIDE_CANDIDATES = ((0.3, 0.95), (0.4, 0.93))
MAX_SHARE = 0.02
MIN_PER_CLASS = 10  # band messages of each class the LLM must have read for CV to decide
SPAM_CAP = 20
QUESTIONS = ("credentials", "payment", "urgent", "claimed_org_mismatch")
SHOTS = 3
SHOT_TOKENS = 48
TOKENS = 128
ROUTES = ("encoder", "fewshot", "questions")


# --------------------------------------------------------------------------- data


def heads(cache: Path, partial: bool = False) -> dict[str, np.ndarray]:
    """The head's scores of every set (``partial``: of the sets scored so far)."""
    path = cache / "heads.npz"
    if path.is_file():
        with np.load(path) as d:
            return {k: d[k] for k in d.files}
    parts = sorted(cache.glob("heads-*.npz"))
    if not partial or not parts:
        raise SystemExit(f"{path} is missing: run benchmarks/llm_routes_data.py first")
    merged: dict[str, list[np.ndarray]] = {}
    for f in parts:
        with np.load(f) as d:
            for k in ("hash", "y", "set", "p"):
                merged.setdefault(k, []).append(d[k])
    return {k: np.concatenate(v) for k, v in merged.items()}


def in_band(p: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (p >= band[0]) & (p < band[1])


def choose_wide(h: dict[str, np.ndarray]) -> tuple[tuple[float, float], float]:
    train = np.isin(h["set"], TRAIN_SETS)
    for band in WIDE_CANDIDATES:
        share = float(in_band(h["p"][train], band).mean())
        if share <= MAX_SHARE:
            return band, share
    band = WIDE_CANDIDATES[-1]
    return band, float(in_band(h["p"][train], band).mean())


class Cache:
    """model/route -> {content hash: list of floats}, saved after every few messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.is_file():
            self.data = json.loads(path.read_text("utf-8"))

    def save(self) -> None:
        # Several feature runs may share a file: merge with what is on disk, never clobber.
        if self.path.is_file():
            on_disk = json.loads(self.path.read_text("utf-8"))
            self.data = {**on_disk, **self.data}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data), "utf-8")
        os.replace(tmp, self.path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


def sample(h: dict[str, np.ndarray], band_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which band messages the LLM reads, and each message's weight.

    Every legitimate message in a set's band, and at most SPAM_CAP of its spam (a fixed-seed
    sample): the modern halves put hundreds of phishing mails in the band, more than two
    shared cores can read. A sampled spam message weighs (band spam / sampled spam), an
    unsampled band message 0, everything else 1, so weighted counts estimate the whole set.
    """
    y, sets = h["y"].astype(bool), h["set"]
    chosen = band_mask & ~y
    w = np.ones(len(y))
    for name in SETS:
        spam = np.flatnonzero(band_mask & y & (sets == name))
        if not len(spam):
            continue
        rng = np.random.default_rng([0, SETS.index(name)])  # per set: same sample always
        keep = np.sort(rng.choice(spam, min(SPAM_CAP, len(spam)), replace=False))
        chosen[keep] = True
        w[spam] = 0.0
        w[keep] = len(spam) / len(keep)
    return chosen, w


def selected(
    cache: Path, band: tuple[float, float] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[float, float]]:
    """Scores, the messages the LLM reads and the band (``band`` overrides the train-chosen
    one, e.g. to start on a test set before the train halves are scored)."""
    h = heads(cache, partial=band is not None)
    wide = band if band is not None else choose_wide(h)[0]
    chosen, _ = sample(h, in_band(h["p"], wide))
    return h, chosen, wide


# --------------------------------------------------------------------------- features


def features(args: argparse.Namespace) -> int:
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.prompts import mail_for_prompt
    from spamguard.llm.routes import (
        LLMEmbedder,
        fewshot_logodds,
        question_logodds,
    )

    h, sel, wide = selected(args.cache, tuple(args.band) if args.band else None)
    want = {str(x) for x in h["hash"][sel & np.isin(h["set"], args.sets)]}
    print(f"wide band {wide}: {len(want)} messages in {', '.join(args.sets)}", file=sys.stderr)
    # The quoted mail and its neighbours, computed once (parsing the sets is slow) and kept.
    mail_store = Cache(args.cache / "mails.json")
    shot_store = Cache(args.cache / f"shots-{SHOTS}x{SHOT_TOKENS}.json")
    fewshot = "fewshot" in args.routes
    need = {k for k in want if k not in mail_store.data or (fewshot and k not in shot_store.data)}
    if need:
        names = set(args.sets) | ({"sa-train"} if fewshot else set())
        sets = load_sets(only_sets=names)
        by_hash: dict[str, Any] = {}
        pool: list[Any] = []
        for name in sets:
            for it in sets[name]:
                if it.message.content_hash in need:
                    by_hash[it.message.content_hash] = it
                if name == "sa-train":
                    pool.append(it)
        for k, it in by_hash.items():
            mail_store.data[k] = mail_for_prompt(it.message)
        mail_store.save()
        if fewshot:
            shot_store.data.update(_neighbours(sorted(by_hash), by_hash, pool, args.cache))
            shot_store.save()
    hashes = sorted(want)
    mails = {k: mail_store.data[k] for k in hashes}
    shots = {k: [tuple(x) for x in shot_store.data.get(k, [])] for k in hashes}

    settings = LLMSettings(
        model=args.model,
        model_path=Path(args.model_path) if args.model_path else None,
        threads=args.threads,
        token_budget=args.tokens,
        n_ctx=args.n_ctx,
    )
    tag = _safe(settings.model if not args.model_path else Path(args.model_path).stem)
    for route in args.routes:
        store = Cache(args.cache / f"feat-{tag}-{route}-t{args.tokens}.json")
        todo = [k for k in hashes if k not in store.data]
        print(f"{tag} {route}: {len(todo)} of {len(hashes)} to compute", file=sys.stderr)
        if not todo:
            continue
        if route == "encoder":
            emb = LLMEmbedder(settings).load()
            for i in range(0, len(todo), 8):
                chunk = todo[i : i + 8]
                for k, v in zip(chunk, emb.encode([mails[k] for k in chunk]), strict=True):
                    store.data[k] = [float(x) for x in v]
                store.save()
            emb.close()
            continue
        engine = LLMEngine(settings).load()
        for i in range(0, len(todo), 8):
            chunk = todo[i : i + 8]
            if route == "fewshot":
                out = fewshot_logodds(
                    engine,
                    [mails[k] for k in chunk],
                    [shots[k] for k in chunk],
                    shot_tokens=SHOT_TOKENS,
                )
                rows: list[list[float]] = [[x] for x in out]
            else:
                rows = question_logodds(engine, [mails[k] for k in chunk]).tolist()
            for k, row in zip(chunk, rows, strict=True):
                store.data[k] = row
            store.save()
            print(f"  {route} {i + len(chunk)}/{len(todo)}", file=sys.stderr)
        engine.close()
    return 0


def _neighbours(
    todo: list[str], by_hash: dict[str, Any], pool: list[Any], cache: Path
) -> dict[str, list[tuple[str, str]]]:
    """For each message, its SHOTS nearest labelled messages of the shipped neighbour index
    (the SpamAssassin train half, models/default/neighbours.npz: what the app retrieves from
    before the user's own labels exist), found by the MiniLM encoder as the app does."""
    from spamguard.llm.routes import shot_text
    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import load_model

    model = load_model(ROOT / "models" / "default")
    assert model.neighbour_vectors is not None
    by_ref = {it.ref: it for it in pool}
    index = [by_ref[r] for r in model.neighbour_refs]
    vecs = np.asarray(model.neighbour_vectors, dtype=np.float32)
    enc = load_encoder("int8")
    q = np.asarray(
        enc.encode([model.featurizer.encoder_input(by_hash[k].message) for k in todo]),
        dtype=np.float32,
    )
    index_hash = np.asarray([it.message.content_hash for it in index])
    sims = q @ vecs.T
    out: dict[str, list[tuple[str, str]]] = {}
    for row, k in enumerate(todo):
        s = np.where(index_hash == k, -np.inf, sims[row])
        top = np.argsort(-s)[:SHOTS]
        out[k] = [
            (
                "spam" if index[j].is_spam else "ham",
                shot_text(index[j].message.subject, index[j].message.text),
            )
            for j in top[::-1]  # nearest last, next to the new mail
        ]
    return out


# --------------------------------------------------------------------------- cost


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cost(args: argparse.Namespace) -> int:
    """Per route: ms/message, p95, prompt tokens/s with --threads threads, RSS after load."""
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.routes import (
        LLMEmbedder,
        RouteStats,
        fewshot_logodds,
        question_logodds,
    )
    from spamguard.llm.speed import measure_speed

    # The band messages' prompts and neighbours as `features` cached them (SpamAssassin test
    # half first), so measuring the cost does not parse the corpora again.
    h, sel, _ = selected(args.cache, tuple(args.band) if args.band else None)
    mail_store = Cache(args.cache / "mails.json").data
    shot_store = Cache(args.cache / f"shots-{SHOTS}x{SHOT_TOKENS}.json").data
    order = np.argsort(h["set"] != "sa-test", kind="stable")
    keys = [str(k) for k in h["hash"][order][sel[order]] if str(k) in shot_store]
    keys = keys[: args.n]
    if not keys:
        raise SystemExit("no cached band messages: run `llm_routes.py features` first")
    mails = [mail_store[k] for k in keys]
    shots = [[(lab, text) for lab, text in shot_store[k]] for k in keys]
    settings = LLMSettings(
        model=args.model,
        model_path=Path(args.model_path) if args.model_path else None,
        threads=args.threads,
        token_budget=args.tokens,
        n_ctx=args.n_ctx,
    )
    tag = _safe(settings.model if not args.model_path else Path(args.model_path).stem)
    base = _rss_mb()
    out: dict[str, Any] = {
        "model": tag,
        "threads": args.threads,
        "n": len(mails),
        "rss_before_mb": base,
        "loadavg": os.getloadavg(),
    }
    emb = LLMEmbedder(settings).load()
    out["encoder_rss_mb"] = _rss_mb()
    emb.encode(mails[:1])
    emb.stats = RouteStats()
    emb.encode(mails)
    out["encoder"] = emb.stats.to_json()
    emb.close()
    engine = LLMEngine(settings).load()
    out["engine_rss_mb"] = _rss_mb()
    for route in ("fewshot", "questions"):
        st = RouteStats()
        if route == "fewshot":
            fewshot_logodds(engine, mails[:1], shots[:1], shot_tokens=SHOT_TOKENS)
            fewshot_logodds(engine, mails, shots, stats=st, shot_tokens=SHOT_TOKENS)
        else:
            question_logodds(engine, mails[:1])
            question_logodds(engine, mails, stats=st)
        out[route] = st.to_json()
    # Prompt and generation tokens/s as `spamguard doctor` measures them (an explanation
    # prompt from an empty context, then greedy generation), best of three.
    speeds = [measure_speed(engine, generate=32) for _ in range(3)]
    out["speed"] = max(speeds, key=lambda s: s.prompt_tokens_per_s).to_json()
    out["speed"]["generation_tokens_per_s"] = max(s.generation_tokens_per_s for s in speeds)
    engine.close()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The app's footprint with the LLM stage, each in a fresh process: the default cascade
    # (head + MiniLM) scoring mail, and the LLM loaded beside it (the engine for the
    # fewshot/questions routes, the embedding-mode model for the encoder route).
    for kind in ("engine", "embedder"):
        cmd = [sys.executable, __file__, "app-rss", "--model", args.model, "--kind", kind]
        cmd += ["--threads", str(args.threads), "--tokens", str(args.tokens)]
        if args.model_path:
            cmd += ["--model-path", args.model_path]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[f"app_with_llm_{kind}_rss_mb"] = json.loads(done.stdout)["rss_mb"]
    out["app_with_llm_rss_mb"] = max(
        out["app_with_llm_engine_rss_mb"], out["app_with_llm_embedder_rss_mb"]
    )
    out["loadavg_after"] = os.getloadavg()
    path = args.cache / f"cost-{tag}-t{args.threads}.json"
    path.write_text(json.dumps(out, indent=2), "utf-8")
    print(json.dumps(out, indent=2))
    return 0


def app_rss(args: argparse.Namespace) -> int:
    """RSS of a fresh process holding what the app holds with the LLM stage on: the default
    cascade (stage 0 + MiniLM stage 1) after scoring mail, and the LLM run once on a mail."""
    from llm_routes_data import SA_CORPUS, SPLIT

    from spamguard.learn.corpus import load_split
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.prompts import mail_for_prompt
    from spamguard.llm.routes import LLMEmbedder, question_logodds
    from spamguard.scoring.assemble import load_default_scorer

    items = load_split(SPLIT, SA_CORPUS, "test", limit=32)
    scorer = load_default_scorer(ROOT / "models" / "default", cascade=True)
    scorer.score([it.message for it in items])
    settings = LLMSettings(
        model=args.model,
        model_path=Path(args.model_path) if args.model_path else None,
        threads=args.threads,
        token_budget=args.tokens,
        n_ctx=args.n_ctx,
    )
    mails = [mail_for_prompt(it.message) for it in items[:4]]
    if args.kind == "embedder":
        emb = LLMEmbedder(settings).load()
        emb.encode(mails)
    else:
        engine = LLMEngine(settings).load()
        question_logodds(engine, mails)
    print(json.dumps({"rss_mb": _rss_mb()}))
    return 0


# --------------------------------------------------------------------------- report


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)))


def _fit_lr(X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    return pipe.fit(X, y, logisticregression__sample_weight=w)


class RouteModel:
    """Stacker over [logit(p_head), route features]; for ``encoder`` the route feature is a
    logistic block's log-odds over the LLM's vectors (the block fitted on the same training
    messages; its inputs to the stacker are out-of-fold, so the stacker does not trust an
    overfitted block)."""

    def __init__(self, route: str, C_block: float = 0.1) -> None:
        self.route = route
        self.C_block = C_block

    def _block(self, V: np.ndarray, y: np.ndarray, w: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C_block, max_iter=3000).fit(V, y, sample_weight=w)

    def _route_feats_train(self, F: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.route != "encoder":
            return F
        from sklearn.model_selection import StratifiedKFold

        out = np.zeros((len(y), 1))
        k = min(5, int(min(y.sum(), (~y).sum())))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=1).split(F, y):
            out[te, 0] = self._block(F[tr], y[tr], w[tr]).decision_function(F[te])
        return out

    def fit(self, p: np.ndarray, F: np.ndarray | None, y: np.ndarray, w: np.ndarray) -> RouteModel:
        cols = [_logit(p)[:, None]]
        if F is not None:
            cols.append(self._route_feats_train(F, y, w))
            if self.route == "encoder":
                self.block = self._block(F, y, w)
        self.stacker = _fit_lr(np.hstack(cols), y, w)
        return self

    def predict(self, p: np.ndarray, F: np.ndarray | None) -> np.ndarray:
        cols = [_logit(p)[:, None]]
        if F is not None:
            cols.append(self.block.decision_function(F)[:, None] if self.route == "encoder" else F)
        return np.asarray(self.stacker.predict_proba(np.hstack(cols))[:, 1])


def band_figures(y: np.ndarray, p: np.ndarray, w: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Weighted AUC and errors at both thresholds over ``mask`` (weights undo the sampling)."""
    from sklearn.metrics import roc_auc_score

    m = mask & (w > 0)
    yy, pp, ww = y[m], p[m], w[m]
    out: dict[str, Any] = {
        "n": int(m.sum()),
        "n_est": float(ww.sum()),
        "spam_est": float(ww[yy].sum()),
        "auc": float(roc_auc_score(yy, pp, sample_weight=ww)) if 0 < yy.sum() < len(yy) else None,
        "flag": float(ww[(pp >= FLAG) != yy].sum()),
        "move": float(ww[(pp >= MOVE) != yy].sum()),
        "ham_flagged": float(ww[(pp >= FLAG) & ~yy].sum()),
        "ham_moved": float(ww[(pp >= MOVE) & ~yy].sum()),
    }
    return out


def load_feats(cache: Path, model: str, route: str, tokens: int = TOKENS) -> dict[str, list[float]]:
    path = cache / f"feat-{_safe(model)}-{route}-t{tokens}.json"
    return json.loads(path.read_text("utf-8")) if path.is_file() else {}


def coverage_weights(
    y: np.ndarray, sets: np.ndarray, band: np.ndarray, read: np.ndarray
) -> np.ndarray:
    """Weights that make the messages the LLM read stand for their set's whole band: per set
    and class, (band messages) / (band messages read); unread band messages 0; the rest 1."""
    w = np.ones(len(y))
    for name in SETS:
        for cls in (True, False):
            m = band & (sets == name) & (y == cls)
            r = m & read
            w[m] = 0.0
            if r.any():
                w[r] = m.sum() / r.sum()
    return w


VARIANTS = ("head", "head recalibrated", "route")


def _variant_p(
    variant: str,
    route: str,
    p: np.ndarray,
    F: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    fit_idx: np.ndarray,
    apply_idx: np.ndarray,
) -> np.ndarray:
    out = p.copy()
    if variant == "head" or not len(apply_idx):
        return out
    feats = F if variant == "route" else None
    m = RouteModel(route if variant == "route" else "recalibrated")
    m.fit(p[fit_idx], None if feats is None else feats[fit_idx], y[fit_idx], w[fit_idx])
    out[apply_idx] = m.predict(p[apply_idx], None if feats is None else feats[apply_idx])
    return out


def report(args: argparse.Namespace) -> int:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    h = heads(args.cache, partial=True)
    # The train halves scored so far (the SpamAssassin train half needs two 5-fold trainings
    # for its out-of-fold scores; without them, CV runs on the modern train half alone).
    have_train = bool(np.isin(h["set"], TRAIN_SETS).any())
    if args.band:
        wide, train_share = tuple(args.band), None
    else:
        wide, train_share = choose_wide(h)
    y, p, sets = h["y"].astype(bool), h["p"], h["set"]
    band = in_band(p, wide)
    narrow = in_band(p, NARROW)
    is_train = np.isin(sets, TRAIN_SETS)
    present = [s for s in SETS if (sets == s).any()]
    result: dict[str, Any] = {
        "head": str(h["head"]) if "head" in h else "default-3 cascade (stage 0 + stage 1)",
        "bands": {"narrow": NARROW, "wide": wide},
        "train_wide_band_share": train_share,
        "sets_scored": present,
        "train_sets_used": [t for t in TRAIN_SETS if t in present],
        "train_band_share": float(band[is_train].mean()) if is_train.any() else 1.0,
        "band_share": {
            s: {
                "narrow": float(narrow[sets == s].mean()),
                "wide": float(band[sets == s].mean()),
                "narrow_n": int((narrow & (sets == s)).sum()),
                "wide_n": int((band & (sets == s)).sum()),
                "wide_ham": int((band & (sets == s) & ~y).sum()),
            }
            for s in present
        },
        "sampling": f"the LLM reads every legitimate band message and at most {SPAM_CAP} band "
        "spam per set (seed 0); figures weight each read message by (band messages of its "
        "set and class) / (those read), so counts estimate the whole band",
        "tokens_per_mail": TOKENS,
        "shots": f"{SHOTS} neighbours x {SHOT_TOKENS} tokens",
        "rows": [],
    }
    ones = np.ones(len(p))
    result["head_exact"] = {
        s: {
            "wide": band_figures(y, p, ones, band & (sets == s)),
            "narrow": band_figures(y, p, ones, narrow & (sets == s)),
            "whole": band_figures(y, p, ones, sets == s),
        }
        for s in present
    }
    # The control without any LLM: the head recalibrated on the train halves' whole band
    # (a logistic over its logit alone), applied to each held-out band.
    tb = np.flatnonzero(is_train & band)
    if len(tb) and 0 < y[tb].sum() < len(tb):
        recal = RouteModel("recalibrated").fit(p[tb], None, y[tb], ones[tb])
        result["head_recalibrated_exact"] = {}
        for s in ("sa-test", "modern-dev"):
            if s in present:
                r = p.copy()
                m = band & (sets == s)
                r[m] = recal.predict(p[m], None)
                result["head_recalibrated_exact"][s] = {
                    "wide": band_figures(y, r, ones, m),
                    "narrow": band_figures(y, r, ones, narrow & (sets == s)),
                    "whole": band_figures(y, r, ones, sets == s),
                }
    hashes = h["hash"].astype(str)
    for model in args.models:
        for route in ROUTES:
            row: dict[str, Any] = {"model": model, "route": route}
            data = load_feats(args.cache, model, route)
            read = band & np.asarray([k in data for k in hashes])
            row["read"] = {s: int((read & (sets == s)).sum()) for s in present}
            if not read.any():
                row["missing"] = "no LLM outputs computed"
                result["rows"].append(row)
                continue
            dim = len(next(iter(data.values())))
            F = np.zeros((len(p), dim))
            F[read] = np.asarray([data[k] for k in hashes[read]], dtype=np.float64)
            w = coverage_weights(y, sets, band, read)
            idx = np.flatnonzero(is_train & read)
            yt = y[idx]
            row["train_read_by_class"] = {"ham": int((~yt).sum()), "spam": int(yt.sum())}
            # 1. the decision: 5-fold CV on the train halves' band
            if have_train and min(yt.sum(), (~yt).sum()) >= 5:
                folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(idx, yt))
                cv: dict[str, Any] = {}
                for v in VARIANTS:
                    q = p.copy()
                    for tr, te in folds:
                        q[idx[te]] = _variant_p(v, route, p, F, y, w, idx[tr], idx[te])[idx[te]]
                    cv[v] = {
                        "wide": band_figures(y, q, w, is_train & band),
                        "narrow": band_figures(y, q, w, is_train & narrow),
                    }
                if route != "encoder":
                    alone = np.zeros(len(idx))
                    for tr, te in folds:
                        lr = _fit_lr(F[idx[tr]], yt[tr], w[idx[tr]])
                        alone[te] = lr.predict_proba(F[idx[te]])[:, 1]
                    cv["route_alone_auc"] = float(roc_auc_score(yt, alone, sample_weight=w[idx]))
                row["train_cv"] = cv
            else:
                row["train_cv"] = None
                row["no_cv_because"] = (
                    "the train halves are not scored yet"
                    if not have_train
                    else f"the LLM read too few train-band messages ({len(idx)}, "
                    f"{int(yt.sum())} spam) for 5-fold CV"
                )
            # 2. fitted on every train-band message read; reported on the held-out halves
            for s in ("sa-test", "modern-dev"):
                if s not in present:
                    continue
                smask = sets == s
                todo = np.flatnonzero(smask & read)
                row[s] = {}
                # Nothing fitted: does the LLM's raw log-odds rank the band's mail at all?
                # (weighted AUC of each scalar output on the messages read, and the head's
                # AUC on the same messages; the encoder's vectors need a trained block)
                yy, ww = y[todo], w[todo]
                if route != "encoder" and 0 < yy.sum() < len(yy):
                    row[f"{s}_raw_auc"] = {
                        "head": float(roc_auc_score(yy, p[todo], sample_weight=ww)),
                        **{
                            name: float(roc_auc_score(yy, F[todo, j], sample_weight=ww))
                            for j, name in enumerate(
                                ["label log-odds"] if route == "fewshot" else list(QUESTIONS)
                            )
                        },
                    }
                for v in VARIANTS:
                    if v != "head" and row["train_cv"] is None:
                        continue
                    r = _variant_p(v, route, p, F, y, w, idx, todo)
                    row[s][v] = {
                        "wide": band_figures(y, r, w, smask & band),
                        "narrow": band_figures(y, r, w, smask & narrow),
                        "whole": band_figures(y, r, w, smask),
                    }
            result["rows"].append(row)
    _decide(result)
    for model in args.models:
        for f in sorted(args.cache.glob(f"cost-{_safe(model)}-t*.json")):
            result.setdefault("cost", {})[f.stem] = json.loads(f.read_text("utf-8"))
    print_table(result)
    out = args.json or RESULTS / "issue18-llm-routes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n", "utf-8")
    print(f"\nwrote {out}")
    if args.record:
        record(result, out)
    return 0


def _decide(result: dict[str, Any]) -> None:
    """A route enters the stacker only if train-half CV lowers the band's errors at both
    thresholds (neither higher, the sum lower) against the head as is AND recalibrated on
    the band (so a gain is the LLM's, not a shift of the band's calibration)."""
    decisions = {}
    for r in result["rows"]:
        key = f"{r['model']}/{r['route']}"
        cv = r.get("train_cv")
        if not cv:
            why = r.get("missing") or r.get("no_cv_because", "")
            decisions[key] = {"stacked": False, "why": f"not measured to a decision: {why}"}
            continue
        mine = cv["route"]["wide"]
        base = [cv["head"]["wide"], cv["head recalibrated"]["wide"]]
        wins = all(
            mine["flag"] <= b["flag"]
            and mine["move"] <= b["move"]
            and mine["flag"] + mine["move"] < b["flag"] + b["move"]
            for b in base
        )
        read = r["train_read_by_class"]
        enough = min(read["ham"], read["spam"]) >= MIN_PER_CLASS
        share = result["train_band_share"]
        share_ok = share <= MAX_SHARE
        why = []
        if not wins:
            why.append("train-half CV did not lower the band's errors at both thresholds")
        if wins and not enough:
            why.append(
                f"the CV gain rests on {read['ham']} legitimate and {read['spam']} spam band "
                f"messages (fewer than {MIN_PER_CLASS} of a class)"
            )
        if wins and not share_ok:
            why.append(
                f"the band it would read is {share:.0%} of the train halves' mail "
                f"(the LLM may run on at most {MAX_SHARE:.0%})"
            )
        decisions[key] = {
            "stacked": wins and enough and share_ok,
            "cv_wins": wins,
            "enough_evidence": enough,
            "band_share_ok": share_ok,
            "why": "; ".join(why) or "CV lowered the band's errors",
            "train_cv_errors": {"flag": mine["flag"], "move": mine["move"]},
            "head_errors": [{"flag": b["flag"], "move": b["move"]} for b in base],
        }
    result["decisions"] = decisions


def _f(x: Any, fmt: str = "{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def print_table(result: dict[str, Any]) -> None:
    w = result["bands"]["wide"]
    print(f"\nhead: {result['head']}; narrow band [{FLAG}, {MOVE}), wide band [{w[0]}, {w[1]})")
    for s, v in result["band_share"].items():
        print(
            f"  {s:13} narrow band {v['narrow']:6.2%} of mail ({v['narrow_n']}), "
            f"wide {v['wide']:6.2%} ({v['wide_n']}, {v['wide_ham']} legitimate)"
        )
    print(f"  {result['sampling']}")
    print("  the head alone, exact (every message), errors at flag / move:")
    for s, v in result["head_exact"].items():
        print(
            f"    {s:13} narrow band {v['narrow']['flag']:.0f} / {v['narrow']['move']:.0f} "
            f"(AUC {_f(v['narrow']['auc'])}); wide band {v['wide']['flag']:.0f} / "
            f"{v['wide']['move']:.0f} (AUC {_f(v['wide']['auc'])}); whole set "
            f"{v['whole']['flag']:.0f} / {v['whole']['move']:.0f}"
        )
    for s, v in result.get("head_recalibrated_exact", {}).items():
        print(
            f"    {s:13} recalibrated on the train band (no LLM): narrow band "
            f"{v['narrow']['flag']:.0f} / {v['narrow']['move']:.0f}; wide band "
            f"{v['wide']['flag']:.0f} / {v['wide']['move']:.0f}; whole set "
            f"{v['whole']['flag']:.0f} / {v['whole']['move']:.0f} (ham moved "
            f"{v['whole']['ham_moved']:.0f}, ham flagged {v['whole']['ham_flagged']:.0f})"
        )
    for where in ("train_cv", "sa-test", "modern-dev"):
        print(f"\n{where}: errors at flag {FLAG} / move {MOVE}, estimated counts on the band")
        print(
            f"  {'model':22} {'route':9} {'read':>4} │ {'wide band AUC':>21} │ "
            f"{'narrow band flag errors':>23} │ {'narrow band move errors':>23} │ "
            "whole set flag/move"
        )
        print(
            f"  {'':22} {'':9} {'':4} │ {'head':>6} {'recal':>6} {'route':>6}  │ "
            f"{'head':>7} {'recal':>7} {'route':>7} │ {'head':>7} {'recal':>7} {'route':>7} │"
        )
        for r in result["rows"]:
            cell = r.get(where)
            if where == "train_cv" and cell:
                cell = {k: cell[k] for k in VARIANTS}
            read = r.get("read", {})
            n = (
                sum(read.get(t, 0) for t in TRAIN_SETS)
                if where == "train_cv"
                else read.get(where, 0)
            )
            if not cell:
                why = r.get("missing") or r.get("no_cv_because") or "not measured"
                print(f"  {r['model'][:22]:22} {r['route']:9} {n:4d} │ {why}")
                continue
            v = [cell.get(k) for k in VARIANTS]
            auc = " ".join(_f(x["wide"]["auc"] if x else None).rjust(6) for x in v)
            fl = " ".join(_f(x["narrow"]["flag"] if x else None, "{:.0f}").rjust(7) for x in v)
            mv = " ".join(_f(x["narrow"]["move"] if x else None, "{:.0f}").rjust(7) for x in v)
            whole = ""
            if "whole" in (v[0] or {}):
                whole = " ".join(
                    f"{x['whole']['flag']:.0f}/{x['whole']['move']:.0f}" if x else "—" for x in v
                )
            print(f"  {r['model'][:22]:22} {r['route']:9} {n:4d} │ {auc}  │ {fl} │ {mv} │ {whole}")
    cost = result.get("cost", {})
    if cost:
        print("\ncost per message (SpamAssassin test-half band messages; -tN: N threads)")
        print(
            f"  {'run':28} {'route':10} {'median':>7} {'p95 ms':>7} {'tok/s':>6} "
            f"{'load':>5}   model: prompt / generation tok/s, app RSS with it loaded"
        )
        for name, c in cost.items():
            sp = c.get("speed")
            extra = (
                f"{sp['prompt_tokens_per_s']:.0f} / {sp['generation_tokens_per_s']:.0f}, "
                f"{c['app_with_llm_rss_mb']:.0f} MB"
                if sp
                else ""
            )
            for route in ROUTES:
                if route in c:
                    v = c[route]
                    med = v.get("median_ms", v["ms_per_message"])
                    print(
                        f"  {name.removeprefix('cost-')[:28]:28} {route:10} {med:7.0f} "
                        f"{v['p95_ms']:7.0f} "
                        f"{v['tokens_per_s']:6.0f} {c['loadavg'][0]:5.1f}   {extra}"
                    )
                    extra = ""
    print("\nraw LLM outputs, nothing fitted: weighted AUC on the wide band's messages read")
    for r in result["rows"]:
        for s in ("sa-test", "modern-dev"):
            raw = r.get(f"{s}_raw_auc")
            if raw:
                print(
                    f"  {r['model'][:22]:22} {r['route']:9} {s:10} n={r['read'][s]:3d}  "
                    + "  ".join(f"{k} {v:.3f}" for k, v in raw.items())
                )
    print("\ndecision (train-half CV on the wide band):")
    for k, d in result["decisions"].items():
        if "train_cv_errors" in d:
            e, hs = d["train_cv_errors"], d["head_errors"]
            print(
                f"  {k:36} {'STACKED' if d['stacked'] else 'not stacked':12} CV errors "
                f"flag {e['flag']:.0f} move {e['move']:.0f}; head as is "
                f"{hs[0]['flag']:.0f}/{hs[0]['move']:.0f}, recalibrated "
                f"{hs[1]['flag']:.0f}/{hs[1]['move']:.0f}\n  {'':36} {d['why']}"
            )
        else:
            print(f"  {k:36} not stacked  ({d['why']})")


def record(result: dict[str, Any], results_path: Path) -> None:
    """Write each route's numbers and the decision into models/cascade.json (llm_stage)."""
    path = ROOT / "models" / "cascade.json"
    spec = json.loads(path.read_text("utf-8"))
    rows = {f"{r['model']}/{r['route']}": r for r in result["rows"]}
    routes = []
    for key, d in result["decisions"].items():
        r = rows[key]
        entry: dict[str, Any] = {"model": r["model"], "route": r["route"], "stacked": d["stacked"]}
        if "train_cv_errors" in d:
            cv = r["train_cv"]
            entry.update(
                cv_wins=d["cv_wins"],
                enough_evidence=d["enough_evidence"],
                band_share_ok=d["band_share_ok"],
                why=d["why"],
                train_read_by_class=r["train_read_by_class"],
                train_cv_errors=d["train_cv_errors"],
                head_train_cv_errors=d["head_errors"],
                train_cv_auc_wide_band={v: cv[v]["wide"]["auc"] for v in VARIANTS},
                route_alone_train_cv_auc=cv.get("route_alone_auc"),
            )
        else:
            entry["not_measured"] = d["why"]
        for s in ("sa-test", "modern-dev"):
            if r.get(s):
                entry[f"{s}_narrow_band_errors"] = {
                    v: {"flag": c["narrow"]["flag"], "move": c["narrow"]["move"]}
                    for v, c in r[s].items()
                }
        routes.append(entry)
    wide = result["bands"]["wide"]
    won = [f"{r['model']}/{r['route']}" for r in routes if r["stacked"]]
    llm = spec.setdefault("llm_stage", {})
    llm.update(
        band={
            "ham_at_or_below": wide[0],
            "spam_at_or_above": wide[1],
            "note": "the band measured for the LLM: stage-1 scores in [low, high), a margin "
            "around [flag 0.50, move 0.90)",
        },
        band_share=result["band_share"],
        routes=routes,
        routes_measured_in=str(results_path.relative_to(ROOT)),
        routes_rule="a route is stacked only if 5-fold CV on the train halves' band lowers the "
        "errors at both thresholds against the head as is and recalibrated on the band",
    )
    if won:
        llm["stacker_decision"] = "stacked: " + ", ".join(won)
    else:
        reasons = "; ".join(
            f"{r['model']}/{r['route']}: {r.get('why') or r['not_measured']}" for r in routes
        )
        llm["stacker_decision"] = (
            f"not stacked. {reasons}. See {results_path.relative_to(ROOT)} and the README "
            "('Does the LLM help decide?'). Without a stacker the LLM stage only adds "
            "evidence, so build_cascade leaves it out of scoring."
        )
        spec["stacker"] = None
    path.write_text(json.dumps(spec, indent=2) + "\n", "utf-8")
    print(f"recorded the decision in {path}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("features", "cost", "app-rss"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="smollm2-135m-instruct")
        p.add_argument("--model-path", help="a GGUF file instead of a catalog model")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--tokens", type=int, default=TOKENS, help="token cap per mail")
        p.add_argument("--n-ctx", type=int, default=1024)
        p.add_argument("--cache", type=Path, default=CACHE)
        if name == "features":
            p.add_argument("--routes", nargs="+", default=list(ROUTES), choices=ROUTES)
            p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
            p.add_argument("--band", type=float, nargs=2, help="override the wide band")
        elif name == "cost":
            p.add_argument("--n", type=int, default=20)
            p.add_argument("--band", type=float, nargs=2, help="override the wide band")
        else:
            p.add_argument("--kind", choices=("engine", "embedder"), default="engine")
    p = sub.add_parser("report")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma3-270m"])
    p.add_argument("--json", type=Path)
    p.add_argument("--record", action="store_true", help="write the decision to cascade.json")
    p.add_argument("--band", type=float, nargs=2, help="band before the train halves are scored")
    args = ap.parse_args(argv)
    if args.cmd == "features":
        return features(args)
    if args.cmd == "cost":
        return cost(args)
    if args.cmd == "app-rss":
        return app_rss(args)
    return report(args)


if __name__ == "__main__":
    raise SystemExit(main())
