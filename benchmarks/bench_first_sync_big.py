"""First sync of a big folder on a local Dovecot, end to end: `spamguard run --once` as a user
runs it, against fetching the same folder alone in the same run.

Not a test: prints a table and writes JSON. The folder (default 20,000 messages) is built from
the *train* halves of the SpamAssassin split and of the modern corpus (data/modern), repeated
in a fixed shuffle, every message with a fresh Message-ID (so every copy is new mail with its
own content hash: no score cache, no dedup). ``--mix corpora`` (the default) takes every
file, no label read; ``--mix inbox`` a ham-heavy Inbox (see `corpus_files`). This only times.

    python benchmarks/bench_first_sync_big.py [-n 20000] [--mix corpora|inbox] [--json out.json]
        [--outcomes scores.jsonl] [--profile prof.txt]

What is measured, in one run on the same folder:
- peer: the engine's own IMAP fetch of every message (same batches, same byte cap), nothing
  else: what the network/server part costs alone;
- sync: `nice -n 10 spamguard --config C run --once` with `backlog = "everything"` and the
  shipped model (no LLM: `run` never loads it), a fresh process as a user starts it: wall
  time, CPU seconds (user + system, from wait4), peak RSS (wait4's ru_maxrss) and an RSS
  timeline sampled from /proc (to see whether memory grows with the folder).
The table says which checkout ran (`git describe --dirty`), when, and the load average before,
at most during and after the run. On a loaded machine (other jobs on the cores; the sync runs
niced) the wall time follows the load, not the code: compare the CPU seconds by thread and
the "lower bound on an idle machine" line (the busiest thread's CPU, or all CPU over the
cores) between two checkouts run one after the other instead.
With --profile FILE the sync runs under `py-spy record` instead (figures then include py-spy's
overhead) and the top entries of the profile are printed and written to FILE.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "mail"))

from _corpora import MODERN_MANIFEST as MANIFEST  # noqa: E402
from _corpora import SPAMASSASSIN_SPLIT as SPLIT  # noqa: E402
from _corpora import modern_corpus, spamassassin_corpus  # noqa: E402
from dovecot_server import PASSWORD, DovecotServer  # noqa: E402
from imap_helpers import account_toml, settings_for, with_message_id  # noqa: E402

#: The folders a run can be built from (``--mix``).
MIXES = ("corpora", "inbox")
#: The "inbox" mix's share of spam (see `corpus_files`).
INBOX_SPAM_SHARE = 0.2


def corpus_files(half: str = "train", mix: str = "corpora") -> list[Path]:
    """The message files of one half of both corpora (paths only): ``train``, or ``test``
    (the SpamAssassin test half with the modern corpus's dev half: mail no shipped model
    trained on, for timing a model trained on both train halves).

    ``mix="corpora"``: every file of the half, as the corpora hold them (no label read).
    That is 55% modern honeypot phishing (phishing_pot), most of the corpora's spam and
    exactly the mail the shipped model (trained on 2002 mail) is least sure of: 58% of it
    reaches stage 1 against 0-4% of any ham, so this mix sends ~28% of the folder through
    the encoder. ``mix="inbox"``: what an Inbox behind a provider's filter looks like, every
    ham file of the half with spam added to `INBOX_SPAM_SHARE` of the folder, half
    SpamAssassin spam and half modern phishing, drawn with a fixed seed (labels of the
    train half are read to do it).
    """
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}, not {mix!r}")
    sa = spamassassin_corpus()
    labelled: list[tuple[Path, str, str]] = []  # (file, label, corpus)
    with SPLIT.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["split"] == half:
                labelled.append((sa / r["path"], r["label"], "sa"))
    modern = modern_corpus()
    modern_half = "dev" if half == "test" else half
    with MANIFEST.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["split"] == modern_half:
                owner_repo = r["source"].replace("/", "+")
                path = modern / owner_repo / r["commit"] / r["path"]
                labelled.append((path, r["label"], "modern"))
    if mix == "corpora":
        return [path for path, _, _ in labelled]
    ham = [path for path, label, _ in labelled if label == "ham"]
    want = round(len(ham) * INBOX_SPAM_SHARE / (1 - INBOX_SPAM_SHARE))
    rng = random.Random(0)
    spam: list[Path] = []
    for corpus in ("sa", "modern"):
        pool = [path for path, label, c in labelled if label == "spam" and c == corpus]
        spam += rng.sample(pool, min(len(pool), want // 2))
    return ham + spam


def folder_messages(files: list[Path], n: int, seed: int = 0) -> Iterator[bytes]:
    """``n`` messages: the files in a fixed shuffle, repeated, each with a fresh Message-ID."""
    order = list(files)
    random.Random(seed).shuffle(order)
    for i in range(n):
        copy, index = divmod(i, len(order))
        yield with_message_id(order[index].read_bytes(), f"big-{i}.copy{copy}@first-sync.invalid")


# -- the peer: fetching alone -----------------------------------------------------------------


def fetch_alone(server: DovecotServer, user: str) -> dict[str, float]:
    """Every message of the Inbox through the engine's own fetch, batch by batch, nothing else."""
    from spamguard.mail.imap import ImapMailStore

    settings = settings_for(server, user)
    started, cpu = time.perf_counter(), time.process_time()
    mail = ImapMailStore(settings)
    mail.connect()
    try:
        mail.select("INBOX")
        uids = mail.uids("INBOX")
        size = 0
        for i in range(0, len(uids), settings.batch_size):
            for item in mail.fetch(
                "INBOX", uids[i : i + settings.batch_size], settings.max_fetch_bytes
            ):
                size += len(item.raw)
    finally:
        mail.close()
    return {
        "messages": len(uids),
        "bytes": size,
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }


# -- the sync: the real CLI -------------------------------------------------------------------


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, user + system CPU seconds) of every thread of ``pid`` now."""
    out: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _by_thread(pid: int, threads: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds of the main thread, then of each other thread (most first; Python 3.11
    names none of them, so they are told apart by their id)."""
    main = threads.get(pid, ("", 0.0))[1]
    others = sorted(((cpu, tid) for tid, (_, cpu) in threads.items() if tid != pid), reverse=True)
    return {"main": round(main, 1), **{f"thread {tid}": round(cpu, 1) for cpu, tid in others}}


def warm_cache_dir() -> Path:
    """The machine's encoder cache, built now if it is not there yet (outside the timing)."""
    from spamguard.scoring.encoder import default_cache_dir, ensure_onnx_model

    ensure_onnx_model("int8")
    return default_cache_dir().parent


def run_sync(
    server: DovecotServer,
    user: str,
    tmp: Path,
    profile: Path | None = None,
    *,
    cold_encoder: bool = False,
) -> dict[str, Any]:
    config = tmp / "config.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n\n'
        + account_toml(server, user, extra='backlog = "everything"\n')
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["HOME"] = str(tmp)
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp / "xdg-data")
    env["SPAMGUARD_NO_PROGRESS"] = "1"
    # The encoder's ONNX export is built once per machine (torch, ~25 s, ~1 GB); a fresh HOME
    # would time that instead of the sync. `--cold-encoder` times it on purpose.
    if not cold_encoder:
        env["SPAMGUARD_CACHE_DIR"] = str(warm_cache_dir())
    else:
        env["SPAMGUARD_CACHE_DIR"] = str(tmp / "cache")
    for key in ("SPAMGUARD_SCORER", "SPAMGUARD_FAILPOINT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "spamguard", "--config", str(config), "run", "--once"]
    if profile is not None:
        beside = Path(sys.executable).parent / "py-spy"
        cmd = [
            str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy",
            "record",
            "-r",
            "50",
            "--threads",
            "-f",
            "raw",
            "-o",
            str(profile),
            "--",
            *cmd,
        ]
    cmd = ["nice", "-n", "10", *cmd]
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timeline: list[tuple[float, int]] = []
    done = threading.Event()

    threads: dict[int, tuple[str, float]] = {}
    loads: list[float] = []

    def sample() -> None:
        while not done.wait(0.5):
            rss = _rss_kib(proc.pid)
            if rss is not None:
                timeline.append((round(time.perf_counter() - started, 1), rss))
            threads.update(_thread_cpu(proc.pid))
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
    ]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = b"".join(err).decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"spamguard run failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {
        "command": "nice -n 10 python -m spamguard --config C run --once"
        + (" (under py-spy record -r 50)" if profile is not None else ""),
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        # With py-spy in front, this is py-spy's own; the timeline still follows the engine.
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "rss_timeline_mib": [(t, round(k / 1024, 1)) for t, k in timeline],
        # CPU seconds per thread (up to the last sample, 0.5 s before the end): the main
        # thread's against the encoder's says how far the two cores overlapped.
        "thread_cpu_seconds": _by_thread(proc.pid, threads),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        # The 1-minute load average sampled every 0.5 s during the run.
        "load_max": max(loads, default=load_before[0]),
        "summary": stderr.strip().splitlines()[-1] if stderr.strip() else "",
        "stdout_lines": len(b"".join(out).splitlines()),
        "data": str(tmp / "data"),
    }


def check_outcome(server: DovecotServer, user: str, n: int, data: Path) -> dict[str, int]:
    """Every message once on the server, every message scored once, no action left planned."""
    from imapclient import IMAPClient

    from spamguard.store import Store

    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        counts = {f: client.folder_status(f, [b"MESSAGES"])[b"MESSAGES"] for f in ("INBOX", "Junk")}
    with Store(data / "spamguard.sqlite3") as store:
        scored = store._query("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM messages")[0]
        stages = dict(store._query("SELECT stage, COUNT(*) FROM messages GROUP BY stage"))
        journal = collections.Counter((e.action, e.state) for e in store.journal(account="work"))
    result = {
        "inbox": counts["INBOX"],
        "junk": counts["Junk"],
        "scored_rows": scored[0],
        "scored_distinct": scored[1],
        "moved": journal[("move_junk", "applied")],
        "flagged": journal[("flag", "applied")],
        "planned_left": sum(v for (_, s), v in journal.items() if s == "planned"),
        # Which cascade stage decided: stage 1 (the sentence encoder) costs ~50 CPU-ms.
        **{f"decided_by_{k}": v for k, v in stages.items()},
    }
    problems = []
    if counts["INBOX"] + counts["Junk"] != n:
        problems.append(f"{counts['INBOX']} + {counts['Junk']} messages on the server, not {n}")
    if scored[0] != n or scored[1] != n:
        problems.append(f"{scored[0]} scored rows ({scored[1]} distinct), not {n}")
    if result["planned_left"]:
        problems.append(f"{result['planned_left']} actions left planned")
    if result["moved"] != counts["Junk"]:
        problems.append(f"{result['moved']} moves journalled, {counts['Junk']} in Junk")
    if problems:
        raise SystemExit("the first sync did not end as it should: " + "; ".join(problems))
    return result


def dump_outcomes(data: Path, out: Path) -> int:
    """Every message's score, stage, verdict, plan, evidence and journalled actions, one JSON
    line each in Message-ID order: two runs on the same folder must write the same file."""
    from spamguard.store import Store

    with Store(data / "spamguard.sqlite3") as store:
        rows = store._query(
            "SELECT message_id, p_spam, stage, verdict, plan, evidence FROM messages"
        )
        actions = collections.defaultdict(list)
        for e in store.journal(account="work"):
            actions[e.message_id].append((e.action, e.state, e.src, e.dst))
    with out.open("w", encoding="utf-8") as fh:
        for message_id, p, stage, verdict, plan, evidence in sorted(tuple(r) for r in rows):
            line = {
                "id": message_id,
                "p": repr(p),
                "stage": stage,
                "verdict": verdict,
                "plan": plan,
                "evidence": json.loads(evidence),
                "actions": sorted(actions[message_id]),
            }
            fh.write(json.dumps(line, sort_keys=True) + "\n")
    return len(rows)


# -- the profile ------------------------------------------------------------------------------


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Own-time and inclusive shares of py-spy's collapsed stacks (one line per stack, the
    first frame naming the thread): of all threads, then of the main thread alone (the
    sync's critical path: the encoder and the fetch run beside it in threads of their own)."""
    stacks: list[tuple[str, list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        thread, *frames = stack.split(";")
        if not thread.startswith("thread"):
            thread, frames = "thread (?)", [thread, *frames]
        stacks.append((thread, [_frame(f) for f in frames], int(count_text)))
    main = {t for t, frames, _ in stacks if any("spamguard/__main__.py" in f for f in frames)}
    out = _profile_shares(stacks, top, "all threads")
    out += ["", "", *_profile_shares([x for x in stacks if x[0] in main], top, "main thread")]
    return "\n".join(out)


def _profile_shares(stacks: list[tuple[str, list[str], int]], top: int, what: str) -> list[str]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for _, frames, count in stacks:
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = max(total, 1)
    lines = [f"{what}: {total} samples", "", "Top entries by own time:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    lines += [
        "",
        "Top entries including callees (spamguard's frames and the libraries' main ones):",
    ]
    shown = [(f, c) for f, c in inclusive.most_common() if "spamguard" in f or c / total > 0.05]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in shown[: top + 10]]
    return lines


def _frame(text: str) -> str:
    # "function (path/to/file.py:123)" -> "function (short/path.py)"
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/spamguard/", "lib/python3"):
        if marker in path:
            path = (
                path.split(marker, 1)[1]
                if marker != "/spamguard/"
                else "spamguard/" + path.split(marker, 1)[1]
            )
            break
    return f"{name} ({path})"


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="messages in the folder")
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="corpora",
        help="corpora: every train-half file (55%% modern phishing); inbox: the ham with "
        f"{INBOX_SPAM_SHARE * 100:.0f}%% spam, as an Inbox behind a provider's filter",
    )
    parser.add_argument(
        "--half",
        choices=("train", "test"),
        default="train",
        help="train: both corpora's train halves; test: the SpamAssassin test half and the "
        "modern dev half (mail no shipped model trained on)",
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--profile", help="run the sync under py-spy; write the summary here")
    parser.add_argument(
        "--cold-encoder",
        action="store_true",
        help="start with an empty encoder cache (a machine's very first start: the export)",
    )
    parser.add_argument(
        "--outcomes",
        help="write every message's score and actions here (JSON lines; to compare two runs)",
    )
    args = parser.parse_args()

    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    files = corpus_files(args.half, args.mix)
    server = DovecotServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="sg-big-sync-") as tmp_name:
            tmp = Path(tmp_name)
            user = server.add_user()
            started = time.perf_counter()
            size = 0

            def counted() -> Iterator[bytes]:
                nonlocal size
                for raw in folder_messages(files, args.n):
                    size += len(raw)
                    yield raw

            server.seed_maildir(user, counted())
            seed_seconds = time.perf_counter() - started
            peer = fetch_alone(server, user)
            profile_raw = tmp / "profile.raw" if args.profile else None
            sync = run_sync(server, user, tmp, profile_raw, cold_encoder=args.cold_encoder)
            outcome = check_outcome(server, user, args.n, tmp / "data")
            if args.outcomes:
                dump_outcomes(tmp / "data", Path(args.outcomes))
            profile_text = summarize_profile(profile_raw) if profile_raw else None
    finally:
        server.cleanup()

    n = args.n
    figures = {
        "command": " ".join(["python", *sys.argv]),
        "revision": revision(),
        "started_utc": started_utc,
        "messages": n,
        "folder_mib": size / 2**20,
        "sources": f"{len(files)} {args.half}-half files (SpamAssassin + modern), repeated, "
        "each with a fresh Message-ID",
        "mix": args.mix,
        "seed_seconds": seed_seconds,
        "fetch_alone": peer,
        "sync": sync,
        "outcome": outcome,
        "ratio_sync_to_fetch_wall": sync["wall_seconds"] / peer["wall_seconds"],
        "cpus": os.cpu_count(),
        "profiled": bool(args.profile),
        "cold_encoder": args.cold_encoder,
    }
    print(format_table(figures))
    if profile_text:
        print()
        print(profile_text)
        Path(args.profile).write_text(profile_text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def revision() -> str:
    """The checkout timed: its commit, and whether files differ from it."""
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def format_table(f: dict[str, Any]) -> str:
    n, peer, sync = f["messages"], f["fetch_alone"], f["sync"]
    rows = [
        ("fetch alone (peer)", peer["wall_seconds"], peer["cpu_seconds"], None),
        ("first sync, run --once", sync["wall_seconds"], sync["cpu_seconds"], sync["peak_rss_mib"]),
    ]
    lines = [
        f"$ {f.get('command', '')}",
        f"checkout {f.get('revision', '?')}, started {f.get('started_utc', '?')}",
        f"first sync of {n} messages ({f['folder_mib']:.0f} MiB, mix {f.get('mix')!r}) "
        "on a local Dovecot, "
        f"{f['cpus']} CPUs, load average (1 min) {sync['load_before'][0]:.1f} before, "
        f"{sync.get('load_max', float('nan')):.1f} at most during, "
        f"{sync['load_after'][0]:.1f} after" + (" (under py-spy)" if f["profiled"] else ""),
        f"  {'':<26} {'wall s':>8} {'msgs/s':>8} {'CPU s':>8} {'CPU ms/msg':>10} {'peak RSS':>9}",
    ]
    for label, wall, cpu, rss in rows:
        rss_text = f"{rss:6.0f} MiB" if rss is not None else ""
        lines.append(
            f"  {label:<26} {wall:8.1f} {n / wall:8.0f} {cpu:8.1f} {cpu * 1000 / n:10.2f} "
            + rss_text
        )
    o = f["outcome"]
    by_thread = sync.get("thread_cpu_seconds", {})
    busiest = max(by_thread.values(), default=0.0)
    lines += [
        f"  sync / fetch alone (wall): {f['ratio_sync_to_fetch_wall']:.1f}x",
        "  CPU s by thread: "
        + ", ".join(f"{k} {v:.1f}" for k, v in list(by_thread.items())[:4])
        + " (main: parsing, stage 0, plan, journal, moves, and stage-1 encoding when it would"
        " wait; the largest other: the encoder's; the next: the IMAP fetch)",
        f"  lower bound on an idle machine: {max(busiest, sync['cpu_seconds'] / f['cpus']):.1f} s"
        f" (the busiest thread {busiest:.1f} CPU-s, or all CPU / {f['cpus']} cores"
        f" {sync['cpu_seconds'] / f['cpus']:.1f} s); with a high load, compare these, not wall",
        f"  outcome: {o['inbox']} in INBOX, {o['junk']} in Junk ({o['moved']} moves journalled), "
        f"{o['flagged']} flagged, {o['scored_rows']} scored once each",
        "  decided by: "
        + ", ".join(f"{k[11:]} {v}" for k, v in o.items() if k.startswith("decided_by_")),
        f"  targets: <= 120 s wall, <= 350 MiB peak RSS; seeding took {f['seed_seconds']:.0f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
