"""The native-messaging host the Thunderbird add-on talks to (``spamguard thunderbird host``).

Thunderbird starts this process when the add-on connects and speaks the WebExtension
native-messaging protocol on stdin/stdout: each message is a 4-byte length in native byte
order followed by that many bytes of UTF-8 JSON. Requests carry an ``id`` and a ``type``;
every request gets exactly one final answer with the same ``id`` and ``ok`` true or false
(the LLM explanation sends ``partial`` pieces first). Bad input -- a frame that is not JSON,
an unknown request, a message that is not mail, a frame over `MAX_REQUEST_BYTES` -- gets an
error answer naming what was wrong, and the host reads on; it never dies of a request.

Only the SpamGuard add-on may use it: Thunderbird passes the calling add-on's ID as an
argument, and any other caller is told so and the host exits.

Over 600 lines on purpose: one request handler per add-on request, sharing the host's config,
store and scorer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from spamguard import __version__
from spamguard.config import DEFAULT_FLAG_KEYWORD, default_data_dir, load_config
from spamguard.engine.runtime import active_model_dir
from spamguard.errors import NotMailError, SpamGuardError
from spamguard.learn.labels import apply_label, labelling, record_label
from spamguard.llm.prompts import Outcome
from spamguard.message import parse_message
from spamguard.scoring.assemble import load_default_scorer
from spamguard.store import Store, StoredExplanation
from spamguard.verdict import verdict_for

__all__ = [
    "ADDON_ID",
    "HOST_NAME",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "FrameTooLarge",
    "Host",
    "encode_frame",
    "iter_frames",
    "read_frame",
    "run",
    "write_frame",
]

log = logging.getLogger(__name__)

# The add-on's ID (manifest.json browser_specific_settings.gecko.id) and the host's name
# (the string it passes to runtime.connectNative); the host manifest repeats both.
ADDON_ID = "spamguard@spamguard.invalid"
HOST_NAME = "spamguard"
# A request carries at most one message, base64-encoded: 48 MiB holds a 30 MB message with
# room to spare. Bigger frames are read past and answered with an error.
MAX_REQUEST_BYTES = 48 * 1024 * 1024
# Thunderbird (like Firefox) refuses messages from a host over 1 MB and drops the port.
MAX_RESPONSE_BYTES = 1024 * 1024
# How much of a message is scored: the head of the message, as the IMAP engine fetches it.
DEFAULT_MAX_RAW = 256 * 1024
_HEADER = struct.Struct("=I")
_DISCARD_CHUNK = 1024 * 1024
_MAX_REASONS = 8
_MAX_SIMILAR = 5
LAST_CONTACT_FILE = "thunderbird-host.json"


class FrameTooLarge(Exception):
    """A frame longer than the limit; its bytes have been read past."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _RequestError(SpamGuardError):
    """A request the host cannot carry out; the text goes back to the add-on as is."""


def read_frame(stream: IO[bytes], limit: int = MAX_REQUEST_BYTES) -> bytes | None:
    """The next frame's bytes; None at end of input (also mid-frame: Thunderbird hung up).

    A frame over ``limit`` is read past in chunks (never held in memory) and raises
    `FrameTooLarge`, so the next frame is read from the right place.
    """
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > limit:
        left = size
        while left:
            chunk = stream.read(min(left, _DISCARD_CHUNK))
            if not chunk:
                return None
            left -= len(chunk)
        raise FrameTooLarge(size)
    return _read_exactly(stream, size)


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    parts: list[bytes] = []
    left = n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def write_frame(stream: IO[bytes], obj: Any) -> None:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_RESPONSE_BYTES:
        data = json.dumps(
            {
                "id": obj.get("id") if isinstance(obj, dict) else None,
                "ok": False,
                "error": f"the answer was {len(data)} bytes, over the 1 MB Thunderbird accepts",
            }
        ).encode("utf-8")
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


# -- what the host knows --------------------------------------------------------------------


@dataclass
class Host:
    """Answers the add-on's requests from SpamGuard's config, state store and models."""

    config_path: str | None = None
    data_dir: Path | None = None
    max_raw: int = DEFAULT_MAX_RAW
    _config: Any = None
    _store: Any = None
    _scorer: Any = None
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.handlers = {
            "hello": self.hello,
            "lookup": self.lookup,
            "score": self.score,
            "label": self.label,
            "explain": self.explain,
        }

    # -- lazily opened parts ------------------------------------------------------------

    @property
    def config(self) -> Any:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def _data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir

        return Path(self.config.data_dir) if self.config.data_dir else default_data_dir()

    @property
    def store(self) -> Any:
        if self._store is None:
            path = self._data_dir() / "spamguard.sqlite3"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._store = Store(path)
        return self._store

    @property
    def scorer(self) -> Any:
        """The full head (not the cascade): it gives the reasons and the similar messages."""
        if self._scorer is None:
            self._scorer = load_default_scorer(active_model_dir(self.config), cascade=False)
        return self._scorer

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- requests -----------------------------------------------------------------------

    def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        """Who we are, the limits, SpamGuard's keywords as tags; records the contact."""
        record_contact(self._data_dir(), str(req.get("addon_version", "")))
        return {
            "version": __version__,
            "max_raw_bytes": self.max_raw,
            "accounts": sorted(self.config.accounts),
            "tags": keyword_tags(self.config),
        }

    def lookup(self, req: dict[str, Any]) -> dict[str, Any]:
        """A message SpamGuard already scored, by Message-ID (and account, when it knows)."""
        message_id = _text(req, "message_id")
        scored = self._find(message_id, req.get("account"))
        if scored is None:
            return {"found": False}
        return {"found": True, "result": self._stored_result(scored)}

    def score(self, req: dict[str, Any]) -> dict[str, Any]:
        """Score the raw message the add-on sent (mail SpamGuard has not seen: POP, local
        folders, accounts it does not watch) with the full head."""
        msg, _ = self._message(req)
        score = self.scorer.score([msg])[0]
        move, flag = self._thresholds(None)
        verdict = score.verdict(move, flag)
        return {
            "result": {
                "source": "scored now",
                "p_spam": round(score.p_spam, 6),
                "band": _BANDS[verdict],
                "stage": score.stage,
                "model_version": score.model_version,
                "reasons": _reasons(score.evidence),
                "similar": [
                    {"label": n.label, "similarity": round(n.similarity, 3), "subject": n.subject}
                    for n in score.neighbours[:_MAX_SIMILAR]
                ],
                "subject": msg.subject,
                "thresholds": {"move": move, "flag": flag},
            }
        }

    def explain(self, req: dict[str, Any], send: Callable[[str], None] | None = None) -> Any:
        """The local LLM's short explanation, checked against the evidence and what SpamGuard
        did before it is sent (`llm.explain`): the model's text, or SpamGuard's own summary
        with a note when the text contradicted them. Kept per message once written."""
        from spamguard.llm.engine import LLMSettings
        from spamguard.llm.explain import (
            checked_explanation,
            explanation_context,
            outcome_facts,
        )

        msg, raw = self._message(req)
        score = self.scorer.score([msg])[0]
        settings = LLMSettings.from_config(self.config.llm)
        account, outcome = self._outcome(req, msg, score)
        context = explanation_context(settings, score.model_version, outcome)
        kept = self.store.explanation(account, msg.message_id, msg.content_hash, context)
        if kept is None:
            known = account in self.config.accounts and self.store.is_correspondent(
                account, msg.from_addr
            )
            facts = outcome_facts(msg, outcome, raw=raw, known_sender=known or None)
            result = checked_explanation(msg, score, outcome, settings=settings, facts=facts)
            kept = StoredExplanation(result.text, result.from_llm, result.problems, time.time())
            self.store.save_explanation(account, msg.message_id, msg.content_hash, context, kept)
        if send is not None:
            send(kept.text)
        note = (
            f"[llm] remote_url sends this message's text to {settings.remote_url}"
            if settings.remote_url
            else ""
        )
        return {"text": kept.text, "note": note, "checked": True, "from_llm": kept.from_llm}

    def _outcome(self, req: dict[str, Any], msg: Any, score: Any) -> tuple[str, Any]:
        """(account, `llm.Outcome`): what SpamGuard did with a message it scored on an account
        it watches (from the journal), else that it did nothing (scored in Thunderbird)."""

        scored = self._find(msg.message_id, req.get("account")) if msg.message_id else None
        account = scored.account if scored is not None else SOURCE
        move, flag = self._thresholds(scored.account if scored is not None else None)
        verdict = score.verdict(move, flag)
        if scored is not None:
            entries = self.store.journal(
                account=scored.account, message=(scored.message_id, scored.content_hash)
            )
            done = [e for e in sorted(entries, key=lambda e: e.id) if e.action != "undo"]
            last = done[-1] if done else None
            if last is not None and last.state == "applied":
                if last.action == "move_junk":
                    return account, Outcome(verdict, "moved it to Junk", moved_to_junk=True)
                if last.action in ("flag", "keyword"):
                    return account, Outcome(
                        verdict, "flagged it and left it where it was", flagged=True
                    )
            if last is not None and last.state == "undone":
                return account, Outcome(verdict, "acted on it, then that was undone")
            return account, Outcome(verdict, "left it where it was")
        return account, Outcome(verdict, "nothing: it was scored in Thunderbird, not acted on")

    def label(self, req: dict[str, Any]) -> dict[str, Any]:
        """Record the user's Spam / Not spam through the same path as `spamguard label`.

        A message SpamGuard scored on an IMAP account it watches goes through
        `feedback.apply_label` (journalled move, its own marks undone, rescued for good) and
        the answer says SpamGuard moved it. Anything else -- POP, local folders, accounts
        SpamGuard does not watch -- is recorded with its bytes by `feedback.record_label`,
        and the add-on moves it in Thunderbird.
        """

        label = req.get("label")
        if label not in ("spam", "ham"):
            raise _RequestError('"label" must be "spam" or "ham"')
        given = req.get("account")
        account: dict[str, Any] = given if isinstance(given, dict) else {}
        message_id = str(req.get("message_id") or "")
        scored = self._find(message_id, account) if message_id else None
        imap = account.get("type") == "imap"
        if scored is not None and imap and scored.account in self.config.accounts:
            return self._label_on_server(scored, label)
        msg, raw = self._message(req)
        name = scored.account if scored is not None else _local_account_name(account)
        rec = record_label(
            self.store,
            name,
            msg.message_id,
            msg.content_hash,
            label,
            SOURCE,
            message=msg,
            raw=raw,
            folder=str(req.get("folder") or ""),
            rescued=label == "ham",
        )
        return {"recorded": rec is not None, "moved_by": "addon", "account": name}

    def _label_on_server(self, scored: Any, label: str) -> dict[str, Any]:

        with labelling(self.config.account(scored.account), self.store) as (ctx, executor):
            rec = apply_label(ctx, executor, scored, label, source=SOURCE)  # type: ignore[arg-type]
        return {"recorded": rec is not None, "moved_by": "spamguard", "account": scored.account}

    # -- helpers ------------------------------------------------------------------------

    def _find(self, message_id: str, account: Any) -> Any:
        """The newest scored row for this Message-ID; with several accounts holding it, the
        one whose name or address matches the Thunderbird account."""
        if not message_id.strip().strip("<>"):
            raise _RequestError('"message_id" is empty')
        bare = message_id.strip().strip("<>")
        hint = account if isinstance(account, dict) else {}
        names = {str(hint.get("name", "")).lower()}
        names |= {str(e).lower() for e in hint.get("emails", []) if isinstance(e, str)}
        candidates = [
            a
            for a, s in self.config.accounts.items()
            if a.lower() in names or s.username.lower() in names
        ]
        for name in candidates:
            found = self.store.find_scored(bare, name)
            if found is not None:
                return found
        return self.store.find_scored(bare)

    def _stored_result(self, scored: Any) -> dict[str, Any]:
        move, flag = self._thresholds(scored.account)

        verdict = scored.verdict if scored.verdict in _BANDS else verdict_for(scored.p_spam)
        entries = self.store.journal(
            account=scored.account,
            states=["applied"],
            message=(scored.message_id, scored.content_hash),
        )
        actions = [
            {"action": e.action, "folder": e.dst or e.src, "at": e.applied_at}
            for e in sorted(entries, key=lambda e: e.id)
            if e.action in ("move_junk", "move", "flag", "keyword", "undo")
        ]
        labels = self.store.feedback_rows(
            scored.account, message=(scored.message_id, scored.content_hash)
        )
        return {
            "source": "already scored",
            "account": scored.account,
            "folder": scored.folder,
            "p_spam": round(scored.p_spam, 6),
            "band": _BANDS[verdict],
            "stage": scored.stage,
            "model_version": scored.model_version,
            "reasons": _reasons(scored.evidence),
            "similar": [],
            "subject": scored.subject,
            "scored_at": scored.scored_at,
            "actions": actions,
            "label": labels[-1].label if labels else "",
            "thresholds": {"move": move, "flag": flag},
        }

    def _thresholds(self, account: str | None) -> tuple[float, float]:
        config = self.config
        t = config.accounts[account].thresholds if account in config.accounts else None
        t = t or config.thresholds
        return float(t.move), float(t.flag)

    def _message(self, req: dict[str, Any]) -> tuple[Any, bytes]:

        encoded = req.get("raw")
        if not isinstance(encoded, str) or not encoded:
            raise _RequestError('"raw" (the message, base64) is missing')
        # Only the head is scored: decode a little more than max_raw of the base64 text.
        keep = (self.max_raw + 2) // 3 * 4
        try:
            raw = base64.b64decode(encoded[:keep], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _RequestError(f'"raw" is not base64: {exc}') from None
        try:
            return parse_message(raw[: self.max_raw]), raw[: self.max_raw]
        except NotMailError as exc:
            raise _RequestError(f"not a mail message: {exc}") from None


SOURCE = "thunderbird add-on"
_BANDS = {"spam": "spam", "flag": "flagged", "ham": "fine"}


def _text(req: dict[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str):
        raise _RequestError(f'"{key}" (a string) is missing')
    return value


def _reasons(evidence: Any) -> list[dict[str, Any]]:
    ranked = sorted(evidence, key=lambda e: -abs(e.weight))[:_MAX_REASONS]
    return [{"weight": round(e.weight, 3), "detail": (e.detail or e.feature)[:200]} for e in ranked]


def _local_account_name(account: dict[str, Any]) -> str:
    name = str(account.get("name") or account.get("id") or "local")
    return f"thunderbird:{name}"


def keyword_tags(config: Any) -> list[dict[str, str]]:
    """SpamGuard's IMAP keywords, named for Thunderbird's tag list."""
    tags: dict[str, dict[str, str]] = {}
    for settings in config.accounts.values():
        if settings.flag_style in ("keyword", "both"):
            key = settings.flag_keyword
            tags.setdefault(
                key.lower(), {"key": key, "name": "SpamGuard: suspicious", "color": "#E8A317"}
            )
        for rule in settings.rules:
            if rule.action == "keyword" and rule.target:
                tags.setdefault(
                    rule.target.lower(),
                    {"key": rule.target, "name": f"SpamGuard: {rule.target}", "color": "#6A5ACD"},
                )
    if not tags:
        tags[DEFAULT_FLAG_KEYWORD.lower()] = {
            "key": DEFAULT_FLAG_KEYWORD,
            "name": "SpamGuard: suspicious",
            "color": "#E8A317",
        }
    return list(tags.values())


def record_contact(data_dir: Path, addon_version: str) -> None:
    """Note when the add-on last connected (the tray app's settings show it)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / (LAST_CONTACT_FILE + ".tmp")
        tmp.write_text(
            json.dumps({"at": time.time(), "addon_version": addon_version, "pid": os.getpid()}),
            encoding="utf-8",
        )
        tmp.replace(data_dir / LAST_CONTACT_FILE)
    except OSError as exc:
        log.warning("cannot record the add-on's contact in %s: %s", data_dir, exc)


def last_contact(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / LAST_CONTACT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the loop -------------------------------------------------------------------------------


def _answers(host: Host, frame: bytes, send: Callable[[Any], None]) -> None:
    try:
        req = json.loads(frame.decode("utf-8"))
    except UnicodeDecodeError:
        send({"id": None, "ok": False, "error": "the request is not UTF-8 text"})
        return
    except ValueError as exc:
        send({"id": None, "ok": False, "error": f"the request is not valid JSON: {exc}"})
        return
    if not isinstance(req, dict):
        send({"id": None, "ok": False, "error": "the request must be a JSON object"})
        return
    rid = req.get("id")
    kind = req.get("type")
    handler = host.handlers.get(kind) if isinstance(kind, str) else None
    if handler is None:
        known = ", ".join(sorted(host.handlers))
        send({"id": rid, "ok": False, "error": f"unknown request type {kind!r} (known: {known})"})
        return
    try:
        if kind == "explain":
            body = host.explain(
                req, lambda piece: send({"id": rid, "partial": True, "text": piece})
            )
        else:
            body = handler(req)
    except SpamGuardError as exc:
        send({"id": rid, "ok": False, "error": str(exc)})
        return
    except Exception as exc:  # a bug must not take Thunderbird's connection down with it
        log.error("request %r failed:\n%s", kind, traceback.format_exc())
        send({"id": rid, "ok": False, "error": f"SpamGuard failed: {type(exc).__name__}: {exc}"})
        return
    send({"id": rid, "ok": True, **body})


def serve(host: Host, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    def send(obj: Any) -> None:
        write_frame(stdout, obj)

    while True:
        try:
            frame = read_frame(stdin)
        except FrameTooLarge as exc:
            send(
                {
                    "id": None,
                    "ok": False,
                    "error": f"the request was {exc.size} bytes; the limit is "
                    f"{MAX_REQUEST_BYTES} (send at most max_raw_bytes of the message)",
                }
            )
            continue
        if frame is None:
            return
        _answers(host, frame, send)


def caller_allowed(argv: list[str]) -> bool:
    """Thunderbird passes [host manifest path, calling add-on's ID, ...] as arguments."""
    return ADDON_ID in argv


def run(argv: list[str], *, config: str | None = None) -> int:
    """The host's main loop on the real stdin/stdout."""
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    # Whatever a library prints must not corrupt the framing: text output goes to stderr.
    sys.stdout = sys.stderr
    if not caller_allowed(argv):
        frame = _safe_first_frame(stdin)
        rid = None
        who = next((a for a in argv[1:] if "@" in a or a.startswith("{")), "no add-on")
        if frame:
            try:
                rid = json.loads(frame).get("id")
            except (ValueError, AttributeError):
                rid = None
        write_frame(
            stdout,
            {
                "id": rid,
                "ok": False,
                "error": f"this host answers only the SpamGuard add-on ({ADDON_ID}); "
                f"it was started for {who}",
            },
        )
        return 1
    host = Host(config_path=config)
    try:
        serve(host, stdin, stdout)
    except BrokenPipeError:
        pass
    finally:
        host.close()
    return 0


def _safe_first_frame(stdin: IO[bytes]) -> bytes | None:
    try:
        return read_frame(stdin)
    except FrameTooLarge:
        return None


def encode_frame(obj: Any) -> bytes:
    """One request as the add-on sends it (tests and benchmarks write to the host with it)."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def iter_frames(data: bytes) -> Iterator[Any]:
    """Decode a byte string of frames (tests and benchmarks read the host's output with it)."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        (size,) = _HEADER.unpack_from(data, pos)
        pos += _HEADER.size
        yield json.loads(data[pos : pos + size])
        pos += size
