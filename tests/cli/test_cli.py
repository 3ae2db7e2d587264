"""The command-line contracts the team relies on: score --jsonl, explain, train, eval, --help."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spamguard.cli import main
from tests.conftest import FIXTURE_CORPUS

SPAM_DIR = FIXTURE_CORPUS / "spam-a"


def _jsonl(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_score_jsonl_directory_keeps_paths_and_reports_non_mail(
    fixture_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    first = sorted(SPAM_DIR.iterdir())[0]
    (folder / "sub" / "a.eml").write_bytes(first.read_bytes())
    (folder / "notes.txt").write_bytes(b"\x00\x01 just some bytes, not mail\n")
    given = str(folder) + "/"
    assert main(["score", "--model", str(fixture_model), "--jsonl", given]) == 0
    records = {r["path"]: r for r in _jsonl(capsys)}
    assert set(records) == {given + "sub/a.eml", given + "notes.txt"}
    bad = records[given + "notes.txt"]
    assert "error" in bad and "e-mail" in bad["error"]
    good = records[given + "sub/a.eml"]
    assert 0.0 <= good["p_spam"] <= 1.0
    assert good["verdict"] in {"spam", "flag", "ham"}
    assert isinstance(good["evidence"], list) and good["evidence"]
    assert {"feature", "weight", "detail"} <= set(good["evidence"][0])


def test_score_jobs_gives_the_same_records_in_input_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, path in enumerate(sorted(p for p in FIXTURE_CORPUS.rglob("*") if p.is_file())[:40]):
        (folder / f"{i:03d}.eml").write_bytes(path.read_bytes())
    (folder / "020-garbage.eml").write_bytes(b"\x00\x01 not mail\n")
    args = ["score", "--jsonl", str(folder), str(tmp_path / "missing")]
    assert main(args) == 0
    one = _jsonl(capsys)
    assert main([*args, "--jobs", "2"]) == 0
    two = _jsonl(capsys)
    # The shipped cascade in two worker processes: every record as one process gives it.
    assert sorted(two, key=lambda r: r["path"]) == sorted(one, key=lambda r: r["path"])
    assert [r["path"] for r in two] == sorted(r["path"] for r in two)  # input order
    assert {r.get("stage") for r in two} >= {"stage0-cheap"}
    assert sum("error" in r for r in two) == 2


def test_score_stdin_and_verdicts_follow_thresholds(
    fixture_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    raw = sorted(SPAM_DIR.iterdir())[0].read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["score", "--model", str(fixture_model), "--jsonl", "-"]) == 0
    (record,) = _jsonl(capsys)
    assert record["path"] == "-"
    p = record["p_spam"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    # A move threshold just above the score turns "spam" into "flag" (or keeps "ham").
    move = min(1.0, p + 1e-3)
    assert (
        main(
            [
                "score",
                "--model",
                str(fixture_model),
                "--jsonl",
                "--flag",
                "0",
                "--move",
                str(move),
                "-",
            ]
        )
        == 0
    )
    (again,) = _jsonl(capsys)
    assert again["verdict"] == "flag"


def test_missing_path_is_an_error_line_not_a_crash(
    fixture_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The record is still written; nothing was scored, so the exit status says so (issue 21).
    assert main(["score", "--model", str(fixture_model), "--jsonl", "/nonexistent/x.eml"]) == 1
    out = capsys.readouterr().out
    (record,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert record["path"] == "/nonexistent/x.eml" and "no such file" in record["error"]


def test_table_output_and_bad_thresholds(
    fixture_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "--model", str(fixture_model), str(SPAM_DIR)]) == 0
    out = capsys.readouterr().out
    assert "p_spam" in out and "messages:" in out
    assert (
        main(
            [
                "score",
                "--model",
                str(fixture_model),
                "--move",
                "0.3",
                "--flag",
                "0.6",
                str(SPAM_DIR),
            ]
        )
        == 1
    )
    assert "thresholds" in capsys.readouterr().err


def test_explain_is_readable(fixture_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sorted(SPAM_DIR.iterdir())[0]
    assert main(["explain", "--model", str(fixture_model), str(path)]) == 0
    out = capsys.readouterr().out
    assert "Spam probability" in out and "What pushed the score" in out
    # The plain sentences come first, without the raw terms listed below them.
    short = out.split("In short: ", 1)[1].split("What pushed the score", 1)[0]
    assert short.strip().endswith(".")
    assert "' in the text" not in short and "letter patterns" not in short


def test_train_then_eval_on_fixture_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = FIXTURE_CORPUS / "split.tsv"
    out = tmp_path / "model"
    rc = main(
        [
            "train",
            "--split",
            str(split),
            "--corpus",
            str(FIXTURE_CORPUS),
            "--out",
            str(out),
            "--no-neighbours",
        ]
    )
    assert rc == 0 and (out / "config.json").is_file()
    capsys.readouterr()
    report = tmp_path / "eval.json"
    plot = tmp_path / "eval.png"
    rc = main(
        [
            "eval",
            "--split",
            str(split),
            "--corpus",
            str(FIXTURE_CORPUS),
            "--model",
            str(out),
            "--json",
            str(report),
            "--plot",
            str(plot),
        ]
    )
    assert rc == 0
    figures = json.loads(report.read_text())
    for key in ("roc_auc", "recall_at_0.1pct_fpr", "recall_at_1pct_fpr", "ece", "msgs_per_s"):
        assert key in figures
    assert figures["at_move"]["threshold"] == 0.9 and figures["at_flag"]["threshold"] == 0.5
    assert figures["groups"]["hard-ham"]["label"] == "ham"
    assert figures["roc_auc"] > 0.9
    assert plot.read_bytes().startswith(b"\x89PNG")
    rc = main(
        [
            "eval",
            "--split",
            str(split),
            "--corpus",
            str(FIXTURE_CORPUS),
            "--model",
            str(out),
            "--headerless",
            "--json",
            str(report),
        ]
    )
    assert rc == 0 and json.loads(report.read_text())["variant"] == "headerless"


def test_train_needs_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "m")]) == 1
    assert "--split" in capsys.readouterr().err


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from spamguard.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'PySide6', 'sklearn', 'llama_cpp',\n"
        "                     'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spamguard", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("spamguard ")


@pytest.mark.llm
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama_cpp is not importable: pip install llama-cpp-python (see README)",
)
def test_explain_llm_follows_the_config_and_says_when_text_would_leave(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: the remote server is down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(f'[llm]\nremote_url = "http://127.0.0.1:{dead}"\nremote_timeout = 2\n')
    first = sorted(SPAM_DIR.iterdir())[0]
    assert main(["--config", str(config), "explain", "--llm", str(first)]) == 0
    out, err = capsys.readouterr()
    assert f"sends this message's text to http://127.0.0.1:{dead}" in err
    assert "leaves this machine" in err
    # The dead server does not stop the explanation: the local model writes it.
    reading = out.split("The local LLM's reading", 1)[1]
    assert len(reading.split()) > 8


def test_score_reads_authentication_results_only_under_authserv_id(
    fixture_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message file has no account: its Authentication-Results are read only when the
    user names the server that wrote them, in one process or in several."""
    raw = (
        b"Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=shop.example;\r\n"
        b" dkim=pass header.d=shop.example; dmarc=pass header.from=shop.example\r\n"
        b"From: Shop <news@shop.example>\r\nTo: you@test.example\r\nSubject: Your receipt\r\n"
        b"Message-ID: <r@shop.example>\r\n\r\nThank you for your order.\r\n"
    )
    path = tmp_path / "receipt.eml"
    path.write_bytes(raw)
    base = ["score", "--model", str(fixture_model), "--jsonl", str(path)]

    def record(*extra: str) -> dict:
        assert main([*base, *extra]) == 0
        (rec,) = _jsonl(capsys)
        return rec

    untrusted = record()
    trusted = record("--authserv-id", "mx.test.example")
    other = record("--authserv-id", "mx.elsewhere.example")
    in_two = record("--authserv-id", "mx.test.example", "--jobs", "2")
    features = {e["feature"] for e in trusted["evidence"]}
    assert "signal:auth_pass" in features
    assert "signal:auth_pass" not in {e["feature"] for e in untrusted["evidence"]}
    assert trusted["p_spam"] < untrusted["p_spam"] == other["p_spam"]
    assert in_two["p_spam"] == trusted["p_spam"]
