"""GPU/Metal offload (issue 18 item 3): n_gpu_layers from what llama.cpp reports, the backend
that ran and its tokens per second.

CPU is the tested default. llama.cpp's "supports GPU offload" query is the one thing faked,
to test the choice on a machine without a GPU; the GPU test runs only where one exists.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from spamguard.llm.engine import choose_gpu_layers

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama_cpp is not importable")


def _offload() -> bool:
    if not HAVE_LLAMA:
        return False
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@pytest.mark.parametrize(
    ("setting", "supported", "layers", "words"),
    [
        ("auto", True, -1, "all layers"),
        ("auto", False, 0, "auto chose 0 GPU layers"),
        (0, True, 0, "CPU (n_gpu_layers=0)"),
        (0, False, 0, "CPU (n_gpu_layers=0)"),
        (20, True, 20, "GPU offload: 20 layers"),
        (20, False, 0, "rebuild llama-cpp-python"),
    ],
)
def test_the_choice_follows_what_llama_cpp_reports(
    setting: int | str, supported: bool, layers: int, words: str
) -> None:
    got, backend = choose_gpu_layers(setting, supported)  # type: ignore[arg-type]
    assert got == layers and words in backend
    assert backend.startswith("CPU") == (layers == 0)


@needs_llama
@pytest.mark.parametrize("reported", [True, False])
def test_the_engine_loads_with_the_layers_llama_cpp_reports(
    reported: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The query faked both ways; the real model loads with what was chosen (a CPU build
    given n_gpu_layers=-1 still runs on the CPU, so this loads everywhere)."""
    import llama_cpp

    from spamguard.llm.engine import LLMEngine, LLMSettings

    monkeypatch.setenv("SPAMGUARD_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: reported)
    engine = LLMEngine(LLMSettings(threads=1))
    try:
        engine.load()
        info = engine.describe()
        assert info["n_gpu_layers"] == (-1 if reported else 0)
        assert info["backend"].startswith("GPU") == reported
    finally:
        engine.close()


@pytest.fixture(scope="module")
def cpu_engine() -> Iterator[Any]:
    if not HAVE_LLAMA:
        pytest.skip("llama_cpp is not importable")
    from spamguard.llm.engine import LLMEngine, LLMSettings

    engine = LLMEngine(LLMSettings(threads=1, n_gpu_layers=0))
    engine.load()
    yield engine
    engine.close()


@pytest.mark.llm
@needs_llama
def test_speed_says_what_ran_and_how_fast(cpu_engine: Any) -> None:
    from spamguard.llm.prompts import mail_for_prompt
    from spamguard.llm.speed import measure_speed

    speed = measure_speed(cpu_engine, generate=8)
    assert speed.device == "CPU" and speed.n_gpu_layers == 0 and speed.threads == 1
    assert speed.prompt_tokens > 200 and speed.generated_tokens == 8
    assert speed.prompt_tokens_per_s > 0 and speed.generation_tokens_per_s > 0
    summary = speed.summary()
    assert summary.startswith("smollm2-135m-instruct ran on CPU (0 GPU layers, 1 threads)")
    assert "tokens/s" in summary
    # The context was left empty: the next label pass starts from its own prefix.
    from spamguard.message import parse_message

    raw = b"From: a@example.org\r\nSubject: lunch\r\n\r\nLunch at noon?\r\n"
    before = cpu_engine.label_logodds([mail_for_prompt(parse_message(raw))])
    measure_speed(cpu_engine, generate=2)
    after = cpu_engine.label_logodds([mail_for_prompt(parse_message(raw))])
    assert after == pytest.approx(before, abs=1e-3)


@pytest.mark.llm
@needs_llama
@pytest.mark.skipif(
    not _offload(),
    reason="this llama.cpp build reports no GPU offload (a CPU-only wheel, or no GPU here); "
    'rebuild with CMAKE_ARGS="-DGGML_CUDA=on" or "-DGGML_METAL=on" on a GPU machine',
)
def test_on_a_gpu_every_layer_is_offloaded_and_reads_mail_as_the_cpu_does(
    cpu_engine: Any,
) -> None:
    from spamguard.llm.engine import LLMEngine, LLMSettings
    from spamguard.llm.prompts import mail_for_prompt
    from spamguard.llm.speed import measure_speed
    from spamguard.message import parse_message

    gpu = LLMEngine(LLMSettings(threads=1))  # auto
    try:
        speed = measure_speed(gpu, generate=8)
        assert speed.device == "GPU" and speed.n_gpu_layers == -1
        raw = b"From: prize@claims.example\r\nSubject: You won\r\n\r\nClaim $5,000 now.\r\n"
        mails = [mail_for_prompt(parse_message(raw))]
        assert gpu.label_logodds(mails)[0] == pytest.approx(
            cpu_engine.label_logodds(mails)[0], abs=0.5
        )
    finally:
        gpu.close()


@pytest.mark.llm
@needs_llama
def test_doctor_reports_the_backend_and_tokens_per_second() -> None:
    from spamguard.config import LLMConfig
    from spamguard.doctor import check_llama, check_llm_speed

    finding = check_llm_speed(LLMConfig(n_gpu_layers=0, threads=1))
    assert finding.status == "OK", finding.summary
    assert "ran on CPU (0 GPU layers, 1 threads)" in finding.summary
    assert finding.data["prompt_tokens_per_s"] > 0
    assert finding.data["generation_tokens_per_s"] > 0
    # The config's setting, not the default, is what the llama.cpp line reports.
    assert check_llama(LLMConfig(n_gpu_layers=0)).data["n_gpu_layers"] == 0
