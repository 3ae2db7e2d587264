"""Scoring commands for the CLI: `spamguard bench`, `spamguard llm list|add|download`,
`spamguard cascade fit`. Registered by `spamguard.cli` through `register(subparsers)`.

Everything heavy is imported inside the command functions, so `spamguard --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spamguard.cli.argtypes import count, non_negative_count, non_negative_float
from spamguard.errors import ConfigError, ModelError
from spamguard.scoring.assemble import default_bands_path, default_cheap_dir

# --------------------------------------------------------------------------- llm


def cmd_llm_list(args: argparse.Namespace) -> int:
    from spamguard.llm.catalog import load_catalog, resolve_model_path

    out = sys.stdout
    out.write(f"{'name':<26} {'quant':<7} {'size MB':>8}  {'source':<8} {'state':<14} licence\n")
    for entry in load_catalog().values():
        try:
            path = resolve_model_path(entry) if not entry.assemble else None
            state = "installed" if entry.assemble is None else "package"
            if entry.assemble:
                import importlib.util

                state = "installed" if importlib.util.find_spec(entry.assemble) else "missing"
        except ModelError:
            path, state = None, "not installed"
        out.write(
            f"{entry.name:<26} {entry.quantization:<7} {entry.size / 1e6:>8.0f}  "
            f"{entry.source:<8} {state:<14} {entry.licence}\n"
        )
        if args.verbose_paths and path:
            out.write(f"    {path}\n")
    try:
        from spamguard.llm.engine import gpu_layers

        _, backend = gpu_layers("auto")
        out.write(f"\nllama.cpp backend: {backend}\n")
    except ImportError:
        out.write("\nllama-cpp-python is not installed: the LLM stage is off\n")
    return 0


def _entry_for(path: Path, name: str, sha256: str, prompt: str, url: str | None = None) -> Any:
    from spamguard.llm.catalog import CatalogEntry, _guess_quant

    return CatalogEntry(
        name=name,
        kind="gguf",
        file=path.name,
        sha256=sha256,
        licence="see the model's card",
        quantization=_guess_quant(path.name),
        size=path.stat().st_size,
        prompt=prompt,
        rationale_prompt=prompt.replace("classify", "rationale"),
        path=str(path.resolve()),
        url=url,
        source="user",
    )


def cmd_llm_add(args: argparse.Namespace) -> int:
    from spamguard.digest import file_sha256
    from spamguard.llm.catalog import add_user_model

    path = Path(args.file)
    if not path.is_file():
        raise ModelError(f"{path} does not exist")
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    actual = file_sha256(path)
    if args.sha256 and args.sha256.lower() != actual:
        raise ModelError(f"{path} has sha256 {actual}, not the {args.sha256} you gave")
    entry = _entry_for(path, args.name or path.stem, actual, args.prompt)
    where = add_user_model(entry)
    print(f"added {entry.name} ({entry.quantization}, sha256 {actual[:16]}…) to {where}")
    return 0


def cmd_llm_download(args: argparse.Namespace) -> int:
    from urllib.parse import urlparse

    from spamguard.llm.catalog import add_user_model, data_dir
    from spamguard.llm.download import download

    filename = Path(urlparse(args.url).path).name or "model.gguf"
    dest = Path(args.out) if args.out else data_dir() / "models" / filename

    def progress(done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            pct = f" {done / total:.0%}" if total else ""
            sys.stderr.write(f"\rdownloading {filename}: {done / 1e6:.1f} MB{pct}")

    path = download(args.url, dest, args.sha256, on_progress=progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    entry = _entry_for(path, args.name or path.stem, args.sha256.lower(), args.prompt, args.url)
    add_user_model(entry)
    print(path)
    return 0


# --------------------------------------------------------------------------- cascade fit


def cmd_cascade_fit(args: argparse.Namespace) -> int:
    import numpy as np

    from spamguard.learn.bands import cross_val_decisions
    from spamguard.learn.corpus import load_split
    from spamguard.scoring.cascade import choose_band
    from spamguard.scoring.model import load_model

    items = load_split(Path(args.split), Path(args.corpus), "train")
    cheap = load_model(args.cheap)
    full = load_model(args.full)
    y = np.asarray([it.is_spam for it in items])
    embeddings = None
    if full.featurizer.uses_embedding:
        embeddings = _train_embeddings(full, items)
    sys.stderr.write("cross-validating both heads on the train half...\n")
    p0 = cross_val_decisions(items, cheap.featurizer.weights, C=cheap.head.C)
    p1 = cross_val_decisions(items, full.featurizer.weights, embeddings=embeddings, C=full.head.C)
    band, info = choose_band(p0, p1, y, auc_slack=args.auc_slack)
    spec: dict[str, Any] = {
        "for_models": {"cheap": cheap.version, "full": full.version},
        "bands": [band.to_json()],
        "stacker": None,
        "chosen_on": {"split": str(args.split), "half": "train", "cv_folds": 5, **info},
    }
    if args.oof_out:
        np.savez_compressed(
            args.oof_out, p_cheap=p0, p_full=p1, y=y, refs=np.asarray([it.ref for it in items])
        )
    Path(args.out).write_text(json.dumps(spec, indent=2) + "\n", "utf-8")
    sys.stderr.write(
        f"stage 0 decides {info.get('decided_share', 0):.1%} of the train half "
        f"(cross-validated); band {band}\n"
    )
    print(args.out)
    return 0


def _train_embeddings(model: Any, items: Any) -> Any:
    """Embeddings for the train half: the full model's stored neighbour vectors when they
    cover every message (same encoder, already computed), else the encoder."""
    import numpy as np

    if model.neighbour_vectors is not None and model.neighbour_refs:
        index = {r: i for i, r in enumerate(model.neighbour_refs)}
        if all(it.ref in index for it in items):
            return model.neighbour_vectors[[index[it.ref] for it in items]].astype(np.float32)
    from spamguard.scoring.encoder import load_encoder

    enc = load_encoder("int8")
    return np.asarray(
        enc.encode([model.featurizer.encoder_input(it.message) for it in items]),
        dtype=np.float32,
    )


# --------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    if args.imap:
        from spamguard.cli.mail import cmd_bench_imap

        return cmd_bench_imap(args)
    if not args.split or not args.corpus:
        raise ConfigError("bench needs --split TSV and --corpus DIR (or --imap ACCOUNT)")
    from spamguard.bench.score import (
        BenchConfig,
        format_table,
        pick_messages,
        plot,
        run_bench,
        write_json,
    )
    from spamguard.scoring.model import default_model_dir

    split, corpus = Path(args.split), Path(args.corpus)
    messages = pick_messages(split, corpus, args.n)
    train = pick_messages(split, corpus, 10_000, half="train") if not args.no_peers else []
    full = Path(args.full) if args.full else default_model_dir()
    cheap = str(args.cheap or default_cheap_dir())
    configs: list[BenchConfig] = [
        BenchConfig("stage0 cheap head (no encoder)", "head", {"model": cheap})
    ]
    configs.append(
        BenchConfig("stage1 head + int8 encoder", "head", {"model": str(full), "encoder": "int8"})
    )
    if not args.quick:
        configs.append(
            BenchConfig(
                "stage1 head + fp32 encoder", "head", {"model": str(full), "encoder": "fp32"}
            )
        )
    bands = args.bands or str(default_bands_path())
    configs.append(
        BenchConfig(
            "cascade stage0 -> stage1",
            "cascade",
            {"cheap": cheap, "full": str(full), "bands": bands},
        )
    )
    configs.append(
        BenchConfig(
            "cascade, 2 worker processes (score --jobs 2)",
            "cascade",
            {"workers": 2},
            modes=("batch",),
        )
    )
    # The LLM joins the scoring cascade only with a stacker that beat the head in train-split
    # cross-validation; without one that row would repeat the cascade's.
    stacked = bool(json.loads(Path(bands).read_text("utf-8")).get("stacker"))
    if args.llm_n and stacked:
        configs.append(
            BenchConfig(
                "cascade stage0 -> stage1 -> LLM",
                "cascade",
                {"cheap": cheap, "full": str(full), "bands": bands, "llm": True},
            )
        )
    if args.llm_n:
        for mode in ("keep", "state", "off"):
            configs.append(
                BenchConfig(
                    f"LLM SmolLM2 Q4_1, prefix cache {mode}",
                    "llm",
                    {"prefix_cache": mode, "threads": args.llm_threads},
                    limit=args.llm_n,
                    modes=("streaming",),
                )
            )
        for extra in args.llm_file or []:
            configs.append(
                BenchConfig(
                    f"LLM {Path(extra).name}",
                    "llm",
                    {"file": extra, "threads": args.llm_threads},
                    limit=args.llm_n,
                    modes=("streaming",),
                )
            )
        if args.gemma:
            configs.append(
                BenchConfig(
                    "LLM Gemma 3 270M Q4_K_M",
                    "llm",
                    {"model": "gemma3-270m", "threads": args.llm_threads},
                    limit=args.llm_n,
                    modes=("streaming",),
                )
            )

    def show(res: dict[str, Any]) -> None:
        sys.stderr.write(f"bench: {res['name']} done\n")

    report = run_bench(configs, messages, train=train, peers=not args.no_peers, on_result=show)
    print(format_table(report))
    if args.json:
        write_json(report, Path(args.json))
    if args.plot:
        plot(report, Path(args.plot))
    return 0


# --------------------------------------------------------------------------- registration


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure speed, memory and energy of each scorer and peers")
    p.add_argument("--split", metavar="TSV", help="the corpus split (needed without --imap)")
    p.add_argument("--corpus", metavar="DIR", help="the corpus folder (needed without --imap)")
    p.add_argument(
        "--imap",
        metavar="ACCOUNT",
        help="instead: a first sync of a copy of ACCOUNT's newest -n messages, per phase "
        "(copied to a scratch folder that is deleted afterwards; your mail is not touched)",
    )
    p.add_argument("--folder", default="INBOX", help="with --imap: the folder to copy from")
    p.add_argument("--model", metavar="DIR", help="with --imap: model directory")
    p.add_argument(
        "-n", type=count, default=300, help="test-half (or --imap) messages to score (default 300)"
    )
    p.add_argument("--cheap", metavar="DIR", help="stage-0 model (default: the shipped one)")
    p.add_argument("--full", metavar="DIR", help="stage-1 model (default: the shipped one)")
    p.add_argument("--bands", metavar="FILE", help="cascade bands (default: models/cascade.json)")
    p.add_argument(
        "--llm-n", type=non_negative_count, default=0, help="messages for the LLM rows (0: no LLM)"
    )
    p.add_argument("--llm-threads", type=count, default=None)
    p.add_argument("--llm-file", action="append", metavar="GGUF", help="another GGUF to compare")
    p.add_argument("--gemma", action="store_true", help="also bench Gemma 3 270M")
    p.add_argument("--no-peers", action="store_true", help="skip SpamAssassin and bogofilter")
    p.add_argument("--quick", action="store_true", help="skip the fp32 encoder row")
    p.add_argument("--json", metavar="OUT", help="write every figure as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="save a chart")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("llm", help="local LLM models: list, add a GGUF file, download one")
    llm_sub = p.add_subparsers(dest="llm_command", metavar="ACTION", required=True)
    q = llm_sub.add_parser("list", help="models SpamGuard knows, and the llama.cpp backend")
    q.add_argument("--paths", dest="verbose_paths", action="store_true")
    q.set_defaults(func=cmd_llm_list)
    q = llm_sub.add_parser("add", help="use a GGUF file you already have")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--name")
    q.add_argument("--sha256", help="refuse the file unless it has this sha256")
    q.add_argument("--prompt", default="classify-chatml", help="prompt template (chat format)")
    q.set_defaults(func=cmd_llm_add)
    q = llm_sub.add_parser("download", help="download a GGUF by URL, verified and resumable")
    q.add_argument("url", metavar="URL")
    q.add_argument("--sha256", required=True, help="the checksum published with the model")
    q.add_argument("--name")
    q.add_argument("--out", metavar="FILE", help="where to save (default: your data folder)")
    q.add_argument("--prompt", default="classify-chatml")
    q.set_defaults(func=cmd_llm_download)

    p = sub.add_parser("cascade", help="the inference cascade")
    c_sub = p.add_subparsers(dest="cascade_command", metavar="ACTION", required=True)
    q = c_sub.add_parser("fit", help="choose band edges on the train half (cross-validated)")
    q.add_argument("--split", metavar="TSV", required=True)
    q.add_argument("--corpus", metavar="DIR", required=True)
    q.add_argument("--cheap", metavar="DIR", required=True)
    q.add_argument("--full", metavar="DIR", required=True)
    q.add_argument("--out", metavar="FILE", required=True)
    q.add_argument("--auc-slack", type=non_negative_float, default=0.0002)
    q.add_argument("--oof-out", metavar="NPZ", help=argparse.SUPPRESS)
    q.set_defaults(func=cmd_cascade_fit)
