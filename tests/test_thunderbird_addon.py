"""The Thunderbird add-on's own checks: its logic under node's test runner (mocked
`messenger`), `web-ext lint`, and the .xpi that packaging/build-xpi makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "plugins" / "thunderbird"
# Thunderbird's own permissions, which web-ext (a Firefox linter) does not know.
THUNDERBIRD_PERMISSIONS = {
    "messagesRead",
    "messagesMove",
    "messagesModify",
    "messagesTags",
    "accountsRead",
}


def _web_ext() -> str | None:
    given = os.environ.get("SPAMGUARD_WEB_EXT")
    if given and Path(given).exists():
        return given
    cached = Path.home() / ".cache" / "spamguard" / "node" / "node_modules" / ".bin" / "web-ext"
    return str(cached) if cached.exists() else shutil.which("web-ext")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is missing: apt-get install nodejs")
def test_addon_logic_under_node_test_runner() -> None:
    proc = subprocess.run(
        ["node", "--test", str(ADDON / "test")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
    passed = int(proc.stdout.split("# pass ")[1].split()[0])
    assert passed >= 15


def test_web_ext_lint_finds_no_errors() -> None:
    web_ext = _web_ext()
    if web_ext is None:
        pytest.skip("web-ext is missing: scripts/test installs it (npm install web-ext)")
    proc = subprocess.run(
        [
            web_ext,
            "lint",
            "--self-hosted",
            "--output",
            "json",
            "--source-dir",
            str(ADDON),
            "--ignore-files",
            "test/**",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(proc.stdout)
    assert report["errors"] == [], report["errors"]
    # The only warnings are Thunderbird permissions a Firefox linter does not know.
    warnings = report["warnings"]
    unknown = {w["message"].split('"')[1] for w in warnings if w["code"] == "MANIFEST_PERMISSIONS"}
    assert unknown <= THUNDERBIRD_PERMISSIONS
    # and Firefox for Android's version of data_collection_permissions (not Thunderbird's).
    firefox_only = {"MANIFEST_PERMISSIONS", "KEY_FIREFOX_ANDROID_UNSUPPORTED_BY_MIN_VERSION"}
    assert [w for w in report["warnings"] if w["code"] not in firefox_only] == []


def test_build_xpi_is_a_reproducible_zip_of_the_addon(tmp_path: Path) -> None:
    def build(out: Path) -> Path:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "packaging" / "build-xpi"), str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return Path(proc.stdout.strip().splitlines()[-1])

    first = build(tmp_path / "a")
    second = build(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert names[0] == "manifest.json"
    assert not [n for n in names if n.startswith("test/")]
    for needed in ("background.js", "lib/spamguard.js", "popup/popup.html", "display/banner.js"):
        assert needed in names
    assert first.name == f"spamguard-thunderbird-{manifest['version']}.xpi"
