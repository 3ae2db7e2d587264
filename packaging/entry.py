"""Entry point of the packaged app: the tray app, `--self-test`, `cli ...`, or the tray probe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = """\
usage: spamguard [--self-test [--json] [--no-llm]] | [cli COMMAND ...] | [tray options]

  (no command)   start the tray app (spamguard-tray; --demo, --hidden, --config FILE ...)
  --self-test    verify the bundled models' sha256, score the demo mailbox, print a report
  cli ...        the `spamguard` command line, e.g. `cli doctor` or `cli demo`
"""


def _bundle_environment() -> None:
    """Point the engine at the models inside the bundle (PyInstaller one-folder build)."""
    if not getattr(sys, "frozen", False):
        return
    base = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
    # The int8 encoder ships inside the bundle at <cache>/encoders/<model>/; the engine
    # finds it through the same variable a user would set. A user's own setting wins.
    os.environ.setdefault("SPAMGUARD_CACHE_DIR", str(base / "spamguard_cache"))


def _qt_steps() -> list[object]:
    """Self-test steps that need Qt: they live here because the engine never imports Qt."""
    import time

    from spamguard.cli.selftest import Step

    def qt() -> Step:
        started = time.perf_counter()
        try:
            # Offscreen: the self-test must pass on a build machine with no display.
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
            import spamguard_ui.app  # noqa: F401  (the whole front end imports)
            from PySide6 import __version__ as qt_version
            from PySide6.QtGui import QIcon
            from PySide6.QtWidgets import QApplication
            from spamguard_ui.tray import state_icon

            app = QApplication.instance() or QApplication(["spamguard-self-test"])
            # The tray icons are SVG: a bundle without Qt's svg plugin would show blank ones.
            icon: QIcon = state_icon("idle")
            pixmap = icon.pixmap(32, 32)
            ok = not pixmap.isNull() and not _all_transparent(pixmap)
            detail = f"PySide6 {qt_version} on {app.platformName()}; tray icon " + (
                "renders" if ok else "is BLANK (Qt's svg image plugin is missing)"
            )
            return Step("Qt", "OK" if ok else "FAIL", detail, time.perf_counter() - started)
        except Exception as exc:  # the report names it; a traceback would hide the rest
            return Step("Qt", "FAIL", f"{type(exc).__name__}: {exc}", time.perf_counter() - started)

    return [qt]


def _all_transparent(pixmap: object) -> bool:
    image = pixmap.toImage()  # type: ignore[attr-defined]
    return all(
        image.pixelColor(x, y).alpha() == 0
        for x in range(0, image.width(), 2)
        for y in range(0, image.height(), 2)
    )


def main() -> int:
    _bundle_environment()
    argv = sys.argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if "--self-test" in argv:
        from spamguard.cli.selftest import run

        return run(argv, extra=_qt_steps())  # type: ignore[arg-type]
    if argv[:1] == ["--tray-probe"]:
        # `spamguard doctor` runs this in a child process: the engine itself never imports Qt.
        from spamguard.doctor import TRAY_PROBE

        exec(compile(TRAY_PROBE, "<tray-probe>", "exec"), {"__name__": "__main__"})
        return 0
    if argv[:1] == ["cli"]:
        from spamguard.cli import main as cli_main

        return cli_main(argv[1:])
    from spamguard_ui.app import main as tray_main

    return tray_main(argv)


if __name__ == "__main__":
    sys.exit(main())
