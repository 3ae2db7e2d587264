"""Download a model file by URL: sha256-verified, resumed with HTTP Range after a dropped link."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from spamguard.digest import file_digest
from spamguard.errors import ModelError

__all__ = ["download"]

CHUNK = 1 << 20


def download(
    url: str,
    dest: Path,
    sha256: str,
    *,
    timeout: float = 30.0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch ``url`` into ``dest``; bytes land in ``dest.part`` first, so a broken download
    resumes where it stopped (``Range: bytes=N-``) the next time, and ``dest`` only ever
    holds a file whose sha256 matched."""
    if not url.startswith(("https://", "http://")):
        raise ModelError(f"only http(s) URLs can be downloaded, not {url!r}")
    sha256 = sha256.lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ModelError("--sha256 must be the 64 hex digits published with the model")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "spamguard-model-download", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            response = None  # the part file is already complete
        else:
            raise ModelError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ModelError(
            f"download of {url} failed ({exc}); run the same command to resume"
        ) from exc
    if response is not None:
        with response:
            status = response.status
            if have and status == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {have}-"):
                    raise ModelError(f"server answered the resume with {content_range!r}; retry")
                mode, digest = "ab", file_digest(part)
            else:
                have, mode, digest = 0, "wb", hashlib.sha256()  # no resume: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            done = have
            try:
                with part.open(mode) as out:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if on_progress is not None:
                            on_progress(done, total)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                raise ModelError(
                    f"download of {url} broke off after {done} bytes ({exc}); run the same "
                    "command again to resume"
                ) from exc
            if total is not None and done < total:
                raise ModelError(
                    f"download of {url} broke off after {done} of {total} bytes; run the same "
                    "command again to resume"
                )
    else:
        digest = file_digest(part)
    actual = digest.hexdigest()
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise ModelError(
            f"downloaded file does not match the expected sha256 (got {actual[:16]}…, expected "
            f"{sha256[:16]}…); it was deleted. Check the URL and the checksum."
        )
    os.replace(part, dest)
    return dest
