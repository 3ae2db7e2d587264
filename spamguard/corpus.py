"""Labelled message collections: the shared split TSV, or ham/spam folders of the user's own."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from spamguard.errors import CorpusError, MessageError
from spamguard.message import Message, learn_authserv_id, parse_message, with_authserv_id
from spamguard.scoring.rules import is_gtube

__all__ = [
    "LabelledMessage",
    "data_hash",
    "iter_message_files",
    "load_folders",
    "load_split",
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
    split_tsv: Path, corpus_dir: Path, which: str, *, limit: int | None = None
) -> list[LabelledMessage]:
    """Messages of one half (``train`` or ``test``) of a split TSV (path, label, group, split)."""
    if not split_tsv.is_file():
        raise CorpusError(f"split file {split_tsv} not found")
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"corpus folder {corpus_dir} not found; fetch it with "
            "shared/corpora/fetch-spamassassin (prints the folder to pass as --corpus)"
        )
    out: list[LabelledMessage] = []
    with split_tsv.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    missing_cols = {"path", "label", "split"} - set(rows[0] if rows else {})
    if missing_cols:
        raise CorpusError(f"{split_tsv} lacks columns {sorted(missing_cols)}")
    for row in rows:
        if row["split"] != which:
            continue
        path = corpus_dir / row["path"]
        if not path.is_file():
            raise CorpusError(f"{path} listed in {split_tsv} is missing; re-fetch the corpus")
        msg = _read(path)
        if msg is None:
            continue
        out.append(LabelledMessage(row["path"], row["label"] == "spam", row.get("group", ""), msg))
        if limit and len(out) >= limit:
            break
    if not out:
        raise CorpusError(f"no '{which}' messages found in {split_tsv}")
    return trust_receiving_servers(out)


def load_folders(ham: Iterable[Path], spam: Iterable[Path]) -> list[LabelledMessage]:
    """Messages from folders (or Maildirs) of ham and spam, e.g. the user's own."""
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


def data_hash(items: Iterable[LabelledMessage]) -> str:
    """sha256 over (content hash, label) of the training messages, order-independent."""
    digest = hashlib.sha256()
    for key in sorted(f"{it.message.content_hash}:{int(it.is_spam)}" for it in items):
        digest.update(key.encode())
    return digest.hexdigest()
