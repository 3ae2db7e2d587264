"""Labelled message collections: the shared split TSV, or ham/spam folders of the user's own."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from spamguard.errors import CorpusError, MessageError
from spamguard.message import Message, learn_authserv_id, parse_message, with_authserv_id
from spamguard.scoring.rules import is_gtube

__all__ = [
    "MANIFEST_COLUMNS",
    "LabelledMessage",
    "ManifestEntry",
    "data_hash",
    "iter_message_files",
    "labels_hash",
    "load_folders",
    "load_manifest",
    "load_split",
    "read_manifest",
    "scrub_placeholders",
    "trust_receiving_servers",
]


@dataclass(frozen=True, slots=True)
class LabelledMessage:
    ref: str
    is_spam: bool
    group: str
    message: Message


def iter_message_files(root: Path) -> Iterator[Path]:
    """Every regular file below ``root`` (sorted, hidden files and Maildir tmp/ skipped)."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") and p not in (".", "..") for p in rel[:-1]) and not any(
            p.startswith(".Junk") or p.startswith(".Spam") for p in rel
        ):
            continue
        if path.name.startswith(".") or "tmp" in rel[:-1]:
            continue
        if path.is_file():
            yield path


def _read(path: Path) -> Message | None:
    """The parsed message, or None when it cannot be read or must not be trained on (the
    GTUBE test line: a filter check, not an example of spam)."""
    try:
        msg = parse_message(path.read_bytes())
    except (MessageError, OSError):
        return None
    return None if is_gtube(msg) else msg


def load_split(
    split_tsv: Path,
    corpus_dir: Path,
    which: str,
    *,
    limit: int | None = None,
    skipped: list[Path] | None = None,
) -> list[LabelledMessage]:
    """Messages of one half (``train`` or ``test``) of a split TSV (path, label, group, split).

    Files that are not mail are left out and, when ``skipped`` is given, listed there.
    """
    if not split_tsv.is_file():
        raise CorpusError(f"split file {split_tsv} not found")
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"corpus folder {corpus_dir} not found; fetch it with "
            "shared/corpora/fetch-spamassassin (prints the folder to pass as --corpus)"
        )
    out: list[LabelledMessage] = []
    try:
        with split_tsv.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"split file {split_tsv} is not UTF-8 text (byte {exc.start}); give the "
            "tab-separated split (path, label, group, split)"
        ) from None
    except (OSError, csv.Error) as exc:
        raise CorpusError(f"cannot read split file {split_tsv}: {exc}") from None
    missing_cols = {"path", "label", "split"} - set(rows[0] if rows else {})
    if missing_cols:
        raise CorpusError(f"{split_tsv} lacks columns {sorted(missing_cols)}")
    for number, row in enumerate(rows, start=2):
        if row["split"] != which:
            continue
        if not row["path"] or row["label"] not in ("spam", "ham"):
            raise CorpusError(f"{split_tsv} line {number}: want a path and a label 'spam' or 'ham'")
        path = corpus_dir / row["path"]
        if not path.is_file():
            raise CorpusError(f"{path} listed in {split_tsv} is missing; re-fetch the corpus")
        msg = _read(path)
        if msg is None:
            if skipped is not None:
                skipped.append(path)
            continue
        out.append(LabelledMessage(row["path"], row["label"] == "spam", row.get("group", ""), msg))
        if limit and len(out) >= limit:
            break
    if not out:
        raise CorpusError(f"no '{which}' messages found in {split_tsv}")
    return trust_receiving_servers(out)


def load_folders(
    ham: Iterable[Path], spam: Iterable[Path], *, skipped: list[Path] | None = None
) -> list[LabelledMessage]:
    """Messages from folders (or Maildirs) of ham and spam, e.g. the user's own.

    Files that are not mail are left out and, when ``skipped`` is given, listed there.
    """
    ham, spam = list(ham), list(spam)
    for h in ham:
        for s in spam:
            if _overlap(h, s):
                raise CorpusError(
                    f"{h} (--ham) and {s} (--spam) hold the same messages; give separate "
                    "folders of ham and of spam"
                )
    out: list[LabelledMessage] = []
    for is_spam, roots in ((False, ham), (True, spam)):
        for root in roots:
            if not root.exists():
                raise CorpusError(f"{root} does not exist")
            found: list[LabelledMessage] = []
            for path in iter_message_files(root):
                msg = _read(path)
                if msg is not None:
                    found.append(
                        LabelledMessage(str(path), is_spam, "spam" if is_spam else "ham", msg)
                    )
                elif skipped is not None:
                    skipped.append(path)
            # Each folder is a mailbox of its own: its receiving server is learnt from it.
            out.extend(_trusted(found, learn_authserv_id(it.message for it in found)))
    return out


def trust_receiving_servers(
    items: Sequence[LabelledMessage], sources: Sequence[str] | None = None
) -> list[LabelledMessage]:
    """Read each message's Authentication-Results as an account would: only those of the
    receiving server of its source (one mailbox, one archive, one honeypot), whose
    authserv-id is learnt from that source's messages as an account's is from its Inbox
    (`learn_authserv_id`). ``sources`` names each item's source (default: its group); a
    source with no clear receiving server keeps no authentication results at all."""
    keys = list(sources) if sources is not None else [it.group for it in items]
    if len(keys) != len(items):
        raise ValueError("one source per item")
    members: dict[str, list[Message]] = {}
    for key, it in zip(keys, items, strict=True):
        members.setdefault(key, []).append(it.message)
    trusted = {key: learn_authserv_id(msgs) for key, msgs in members.items()}
    return [
        dataclasses.replace(it, message=with_authserv_id(it.message, trusted[key]))
        for key, it in zip(keys, items, strict=True)
    ]


def _trusted(items: list[LabelledMessage], authserv_id: str | None) -> list[LabelledMessage]:
    return [
        dataclasses.replace(it, message=with_authserv_id(it.message, authserv_id)) for it in items
    ]


def _overlap(a: Path, b: Path) -> bool:
    """Whether one folder is the other or inside it."""
    try:
        ra, rb = a.resolve(), b.resolve()
    except OSError:
        return False
    return ra == rb or ra in rb.parents or rb in ra.parents


def data_hash(items: Iterable[LabelledMessage]) -> str:
    """sha256 over (content hash, label) of the training messages, order-independent."""
    return labels_hash((it.message.content_hash, it.is_spam) for it in items)


def labels_hash(pairs: Iterable[tuple[str, bool]]) -> str:
    """sha256 over (content hash, is spam) pairs, order-independent (see `data_hash`)."""
    digest = hashlib.sha256()
    for key in sorted(f"{content_hash}:{int(spam)}" for content_hash, spam in pairs):
        digest.update(key.encode())
    return digest.hexdigest()


MANIFEST_COLUMNS = (
    "source",
    "commit",
    "path",
    "sha256",
    "label",
    "category",
    "language",
    "year",
    "label_how",
    "split",
)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One row of the modern corpus manifest (data/modern/manifest.tsv)."""

    source: str
    commit: str
    path: str
    sha256: str
    is_spam: bool
    category: str
    language: str
    year: int | None
    label_how: str
    split: str

    @property
    def local_path(self) -> str:
        """Where scripts/fetch-modern-corpus puts the message, below its target folder."""
        return f"{self.source.replace('/', '+')}/{self.commit}/{self.path}"


def read_manifest(manifest: Path) -> list[ManifestEntry]:
    if not manifest.is_file():
        raise CorpusError(f"manifest {manifest} not found")
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    missing = set(MANIFEST_COLUMNS) - set(rows[0] if rows else {})
    if missing:
        raise CorpusError(f"{manifest} lacks columns {sorted(missing)}")
    out = []
    for row in rows:
        if row["label"] not in ("spam", "ham") or row["split"] not in ("train", "dev"):
            raise CorpusError(
                f"{manifest}: {row['source']} {row['path']} has label {row['label']!r} "
                f"and split {row['split']!r} (want spam/ham and train/dev)"
            )
        out.append(
            ManifestEntry(
                row["source"],
                row["commit"],
                row["path"],
                row["sha256"],
                row["label"] == "spam",
                row["category"],
                row["language"],
                int(row["year"]) if row["year"].isdigit() else None,
                row["label_how"],
                row["split"],
            )
        )
    return out


# phishing_pot's contributors replaced the honeypot's own address with "phishing@pot" (and
# a few samples still name its owner). Left in, these constants would mark every sample
# of that one source: a model would learn the placeholder, not phishing. Each message gets
# a stand-in address and name of its own instead, derived from its hash, so no token recurs.
_HONEYPOT_ADDR = re.compile(r"(?i)phishing@pot\b|rodrigo[-_.]?f[-_.]?p@[\w.-]+")
_HONEYPOT_NAME = re.compile(
    r"(?i)\b(rodrigo(\s+f\.?\s*p\.?\b|\s+ferreira\s+peixoto)?|ferreira\s+peixoto)\b"
)
# email-to-lunchmoney's developer redacted his own receipts the same way (recipient
# "testuser@example.com", Message-ID "<REDACTED@example.com>", link parameters "REDACTED_*"):
# left in, they would mark those train-half receipts as a source, and a model would learn
# "example.com" as a sign of legitimate mail.
_REDACTED_ADDR = re.compile(r"(?i)\b(?:testuser|redacted)@example\.com\b")
_REDACTED_TOKEN = re.compile(r"REDACTED_[A-Z]+")
_SCRUB_SOURCES = frozenset(
    {
        "rf-peixoto/phishing_pot",
        "evanpurkhiser/email-to-lunchmoney",
        "thetestgame/email-to-lunchmoney",
    }
)
_DOMAINS = ("gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "gmx.de", "uol.com.br")
_NAMES = ("Maria", "Daniel", "Anna", "Lukas", "Sofia", "Pedro", "Emma", "Thomas")


def scrub_placeholders(msg: Message) -> Message:
    """The message with a source's anonymisation placeholders replaced (see above)."""
    digest = hashlib.sha256(msg.content_hash.encode()).hexdigest()
    addr = f"{digest[:10]}@{_DOMAINS[int(digest[10:12], 16) % len(_DOMAINS)]}"
    name = _NAMES[int(digest[12:14], 16) % len(_NAMES)]

    def fix(text: str) -> str:
        text = _REDACTED_TOKEN.sub(digest[14:22], _REDACTED_ADDR.sub(addr, text))
        return _HONEYPOT_NAME.sub(name, _HONEYPOT_ADDR.sub(addr, text))

    return dataclasses.replace(
        msg,
        headers=tuple((k, fix(v)) for k, v in msg.headers),
        subject=fix(msg.subject),
        from_addr=fix(msg.from_addr),
        from_name=fix(msg.from_name),
        to=tuple(fix(t) for t in msg.to),
        text=fix(msg.text),
        urls=tuple(fix(u) for u in msg.urls),
        content_hash=hashlib.sha256(f"{msg.content_hash}:scrubbed".encode()).hexdigest(),
    )


def load_manifest(
    manifest: Path, corpus_dir: Path, which: str | None = None, *, sources: Iterable[str] = ()
) -> list[tuple[ManifestEntry, LabelledMessage]]:
    """Messages of the modern corpus (one split, or all), each with its manifest row.

    ``corpus_dir`` is the folder scripts/fetch-modern-corpus printed. A message whose bytes
    no longer match the manifest's sha256 is an error (re-fetch), never silently used.
    """
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"modern corpus folder {corpus_dir} not found; fetch it with "
            "scripts/fetch-modern-corpus (prints the folder to pass)"
        )
    wanted = set(sources)
    out = []
    for entry in read_manifest(manifest):
        if (which and entry.split != which) or (wanted and entry.source not in wanted):
            continue
        path = corpus_dir / entry.local_path
        try:
            raw = path.read_bytes()
        except OSError:
            raise CorpusError(
                f"{path} listed in {manifest} is missing; run scripts/fetch-modern-corpus"
            ) from None
        if hashlib.sha256(raw).hexdigest() != entry.sha256:
            raise CorpusError(f"{path} does not match its sha256 in {manifest}; re-fetch it")
        try:
            msg = parse_message(raw)
        except MessageError:
            continue
        if entry.source in _SCRUB_SOURCES:
            msg = scrub_placeholders(msg)
        ref = f"{entry.source}@{entry.commit[:12]}:{entry.path}"
        out.append((entry, LabelledMessage(ref, entry.is_spam, entry.category, msg)))
    if not out:
        raise CorpusError(f"no {which or ''} messages found in {manifest}".replace("  ", " "))
    # Each source is read as one account would read it: Authentication-Results count only
    # under the authserv-id of that source's own receiving server (learnt from its messages).
    trusted = trust_receiving_servers([it for _, it in out], [e.source for e, _ in out])
    return [(e, it) for (e, _), it in zip(out, trusted, strict=True)]
