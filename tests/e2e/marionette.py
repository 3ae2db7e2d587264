"""A small Marionette client: enough WebDriver-over-TCP to drive Thunderbird from a test.

Marionette frames are ``<decimal length>:<JSON>``; a command is ``[0, id, name, params]`` and
its answer ``[1, id, error, result]``. (The PyPI clients are old and pull in mozbase; the
protocol is ten lines.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any


class MarionetteError(Exception):
    pass


class Marionette:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(timeout)
        self._buf = b""
        self._id = 0
        self._read()  # the server's greeting
        self.command("WebDriver:NewSession", {"capabilities": {}})

    def _read(self) -> Any:
        while b":" not in self._buf:
            self._recv()
        size, _, rest = self._buf.partition(b":")
        n = int(size)
        self._buf = rest
        while len(self._buf) < n:
            self._recv()
        data, self._buf = self._buf[:n], self._buf[n:]
        return json.loads(data)

    def _recv(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise MarionetteError("Thunderbird closed the Marionette connection")
        self._buf += chunk

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        self._id += 1
        body = json.dumps([0, self._id, name, params or {}]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            answer = self._read()
            if answer[0] == 1 and answer[1] == self._id:
                break
        if answer[2]:
            err = answer[2]
            raise MarionetteError(f"{name}: {err.get('error')}: {err.get('message')}")
        return answer[3]

    def chrome(self) -> None:
        self.command("Marionette:SetContext", {"value": "chrome"})

    def js(self, script: str, *args: Any, timeout_ms: int = 30000) -> Any:
        """Run ``script`` (an async function body: ``arguments`` and ``await`` work)."""
        self.command("WebDriver:SetTimeouts", {"script": timeout_ms})
        result = self.command(
            "WebDriver:ExecuteAsyncScript",
            {
                "script": "const done = arguments[arguments.length - 1];"
                f"(async (...arguments) => {{ {script} }})(...Array.from(arguments).slice(0, -1))"
                ".then(v => done(v), e => done({__error: String(e) + '\\n' + (e && e.stack)}));",
                "args": list(args),
            },
        )
        value = result.get("value") if isinstance(result, dict) else result
        if isinstance(value, dict) and "__error" in value:
            raise MarionetteError(value["__error"])
        return value

    def wait(self, script: str, *args: Any, timeout: float = 30.0, what: str = "") -> Any:
        """Run ``script`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.js(script, *args)
            if last:
                return last
            time.sleep(0.2)
        raise MarionetteError(f"timed out waiting for {what or script[:80]!r} (last: {last!r})")

    def install_addon(self, xpi: Path) -> str:
        result = self.command("Addon:Install", {"path": str(xpi), "temporary": True})
        return str(result.get("value") if isinstance(result, dict) else result)

    def screenshot(self, path: Path) -> None:
        data = self.command("WebDriver:TakeScreenshot", {"full": False})
        png = data.get("value") if isinstance(data, dict) else data
        path.write_bytes(base64.b64decode(png))

    def quit(self) -> None:
        with contextlib.suppress(MarionetteError, OSError):
            self.command("Marionette:Quit", {"flags": ["eForceQuit"]})
        self.sock.close()
