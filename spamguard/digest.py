"""The one way SpamGuard hashes a file: sha256, read in 1 MiB chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["file_digest", "file_sha256"]

CHUNK = 1 << 20


def file_digest(path: Path | str) -> Any:
    """The running sha256 of ``path``'s bytes (a `hashlib` object: more can be added)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest


def file_sha256(path: Path | str) -> str:
    """The sha256 of ``path``'s bytes, as lowercase hex."""
    return str(file_digest(path).hexdigest())
