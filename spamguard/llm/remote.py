"""The LLM stage on an OpenAI-compatible server the user runs (llama.cpp server, Ollama, vLLM).

Off by default. When it is on, the quoted text of each message that reaches the LLM stage
is sent to that server: message text leaves this machine. A slow or dead server never blocks
mail handling: the request times out, the server is skipped for a while, and the local LLM
(if any) or the head's score stands.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from spamguard.errors import ModelError
from spamguard.llm.prompts import Prompt, classify_prompt_text, load_prompt, mail_for_prompt
from spamguard.llm.scorer import Calibration
from spamguard.message import Message
from spamguard.scoring.base import Evidence, Score, Scorer
from spamguard.scoring.cache import LRUScoreCache, ScoreCache

__all__ = ["PRIVACY_NOTICE", "RemoteLLMScorer", "stream_completion"]

log = logging.getLogger(__name__)

PRIVACY_NOTICE = (
    "Remote LLM: the text of messages that reach the LLM stage is sent to {url}. "
    "Message text leaves this machine; use only a server you run and trust."
)
# Characters of mail per prompt: the server tokenizes, so the budget is kept in characters
# (about 4 per token for English mail, i.e. the local default of 256 tokens).
CHAR_BUDGET = 1024


def _post(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def stream_completion(
    base_url: str, prompt: str, *, max_tokens: int, stop: Sequence[str] = (), timeout: float = 10.0
) -> Iterator[str]:
    """Greedy completion streamed from ``/v1/completions`` (server-sent events)."""
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stop": list(stop),
    }
    req = urllib.request.Request(
        base_url.rstrip("/") + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            text = json.loads(payload)["choices"][0].get("text", "")
            if text:
                yield text


class RemoteLLMScorer:
    """`Scorer` asking a remote server for the label-token log-probabilities (one token,
    temperature 0, ``logprobs``), calibrated like the local stage."""

    def __init__(
        self,
        url: str,
        *,
        model: str = "",
        prompt: Prompt | None = None,
        calibration: Calibration | None = None,
        timeout: float = 5.0,
        retry_after: float = 60.0,
        fallback: Scorer | None = None,
        cache: ScoreCache | None = None,
        top_logprobs: int = 20,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ModelError(f"remote LLM URL {url!r} must look like http://host:port")
        self.url = url.rstrip("/")
        self.model = model
        self.prompt = prompt or load_prompt("classify-chatml")
        self.calibration = calibration or Calibration()
        self.timeout = timeout
        self.retry_after = retry_after
        self.fallback = fallback
        self.cache: ScoreCache = cache if cache is not None else LRUScoreCache()
        self.top_logprobs = top_logprobs
        self.stage = "llm"
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.failures = 0
        log.warning(PRIVACY_NOTICE.format(url=self.url))

    @property
    def version(self) -> str:
        return f"remote-{urlparse(self.url).netloc}-{self.model or 'default'}-{self.prompt.version}"

    def _logodds(self, message: Message) -> float:
        mail = mail_for_prompt(message)[:CHAR_BUDGET]
        body: dict[str, Any] = {
            "prompt": classify_prompt_text(self.prompt, mail),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": self.top_logprobs,
        }
        if self.model:
            body["model"] = self.model
        data = _post(self.url + "/v1/completions", body, self.timeout)
        top = data["choices"][0]["logprobs"]["top_logprobs"][0]
        floor = min(top.values()) - 1.0 if top else -30.0

        def lse(words: Sequence[str]) -> float:
            vals = [float(top.get(w, floor)) for w in words]
            m = max(vals)
            return m + math.log(sum(math.exp(v - m) for v in vals))

        return lse(self.prompt.labels["spam"]) - lse(self.prompt.labels["ham"])

    def score(self, messages: Sequence[Message]) -> list[Score]:
        version = self.version
        out: list[Score | None] = [self.cache.get(m.content_hash, version) for m in messages]
        todo = [i for i, s in enumerate(out) if s is None]
        for n, i in enumerate(todo):
            if time.monotonic() < self._down_until:
                return self._fall_back(messages, out, todo[n:])
            try:
                lo = self._logodds(messages[i])
            except (OSError, urllib.error.URLError, TimeoutError, ValueError, KeyError) as exc:
                with self._lock:
                    self.failures += 1
                    self._down_until = time.monotonic() + self.retry_after
                log.warning(
                    "remote LLM %s failed (%s); skipping it for %ss",
                    self.url,
                    exc,
                    self.retry_after,
                )
                return self._fall_back(messages, out, todo[n:])
            p = float(self.calibration(np.asarray([lo]))[0])
            score = Score(
                p_spam=p,
                stage="llm",
                model_version=version,
                evidence=(Evidence("llm:label-logits", lo, f"the remote LLM at {self.url}"),),
            )
            self.cache.put(messages[i].content_hash, version, score)
            out[i] = score
        return [s for s in out if s is not None]

    def _fall_back(
        self, messages: Sequence[Message], out: list[Score | None], rest: list[int]
    ) -> list[Score]:
        if self.fallback is None:
            raise ModelError(
                f"the remote LLM at {self.url} did not answer within {self.timeout}s; "
                "the head's scores stand"
            )
        local = self.fallback.score([messages[i] for i in rest])
        for i, s in zip(rest, local, strict=True):
            out[i] = s
        return [s for s in out if s is not None]
