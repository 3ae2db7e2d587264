"""Model download against a real HTTP server on 127.0.0.1: sha256, resume with Range, refusal."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from spamguard.errors import ModelError
from spamguard.llm.download import download

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; the first full request is cut off halfway."""

    ranges: ClassVar[list[str | None]] = []
    cut_first = True

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_first and not rng:
            type(self).cut_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    RangeHandler.ranges = []
    RangeHandler.cut_first = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/model.gguf"
    httpd.shutdown()
    httpd.server_close()


def test_a_broken_download_resumes_with_range_and_verifies(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.gguf"
    with pytest.raises(ModelError, match="resume"):
        download(server, dest, SHA)
    part = dest.with_name("model.gguf.part")
    assert not dest.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    half = part.stat().st_size
    assert download(server, dest, SHA) == dest
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert RangeHandler.ranges == [None, f"bytes={half}-"]


def test_a_wrong_checksum_is_refused_and_the_file_deleted(server: str, tmp_path: Path) -> None:
    RangeHandler.cut_first = False
    dest = tmp_path / "model.gguf"
    with pytest.raises(ModelError, match="does not match the expected sha256"):
        download(server, dest, "0" * 64)
    assert not dest.exists() and not dest.with_name("model.gguf.part").exists()


def test_cli_download_adds_the_model_to_the_user_list(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spamguard.cli import main
    from spamguard.llm.catalog import load_catalog

    RangeHandler.cut_first = False
    monkeypatch.setenv("SPAMGUARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["llm", "download", server, "--sha256", SHA, "--name", "tiny"]) == 0
    saved = Path(capsys.readouterr().out.strip())
    assert saved.read_bytes() == PAYLOAD
    entry = load_catalog()["tiny"]
    assert entry.source == "user" and entry.sha256 == SHA and entry.url == server


def test_bad_checksum_argument_and_unreachable_server_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="64 hex digits"):
        download("http://127.0.0.1:9/x", tmp_path / "x", "abc")
    with pytest.raises(ModelError, match="failed"):
        download("http://127.0.0.1:9/x", tmp_path / "x", SHA, timeout=2)
