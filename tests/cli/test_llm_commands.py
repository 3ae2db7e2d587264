"""The scoring commands: `llm list|add`, `bench` (small, no peers), `cascade fit` contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spamguard.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPAMGUARD_DATA_DIR", str(tmp_path / "data"))


def test_help_does_not_import_llama_cpp() -> None:
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from spamguard.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp imported by --help'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported by --help'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_llm_list_shows_the_catalog_and_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llm", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "gemma3-270m" in out
    assert "backend" in out or "not installed" in out


def test_llm_add_records_a_gguf_and_refuses_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = tmp_path / "mine-Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    assert main(["llm", "add", str(gguf), "--name", "mine"]) == 0
    assert "Q8_0" in capsys.readouterr().out
    assert main(["llm", "list"]) == 0
    assert "mine" in capsys.readouterr().out
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert main(["llm", "add", str(other)]) == 1
    assert "not a GGUF" in capsys.readouterr().err


def test_bench_writes_table_json_and_chart(
    fixture_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--split", str(FIXTURES / "split.tsv"), "--corpus", str(FIXTURES)]
    args += ["-n", "8", "--full", str(fixture_model), "--no-peers", "--quick"]
    assert main([*args, "--json", str(out_json), "--plot", str(out_png)]) == 0
    table = capsys.readouterr().out
    assert "stage1 head + int8 encoder" in table and "Wh/1k" in table
    report = json.loads(out_json.read_text())
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == {
        "stage0 cheap head (no encoder)",
        "stage1 head + int8 encoder",
        "cascade stage0 -> stage1",
        "cascade, 2 worker processes (score --jobs 2)",
    }
    for row in rows.values():
        assert row["batch"]["messages"] == 8 and row["peak_rss_mb"] > 0
        assert row["batch"]["cpu_seconds_per_1000"] > 0
        if "jobs" not in row["name"]:
            assert row["streaming"]["latency_p95_ms"] > 0
    shares = rows["cascade stage0 -> stage1"]["streaming"]["stage_share"]
    assert set(shares) <= {"stage0-cheap", "stage1-head"}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert report["energy_source"] in {"RAPL", "estimate"}
    assert out_png.stat().st_size > 10_000
