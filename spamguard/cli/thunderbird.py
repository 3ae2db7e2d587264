"""`spamguard thunderbird install|uninstall|status|host`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spamguard.engine.thunderbird import build_addon, install, status, uninstall


def cmd_install(args: argparse.Namespace) -> int:
    target = Path(args.dir) if args.dir else None
    manifest = install(args.config, target=target)
    print(f"wrote {manifest}")
    xpi = build_addon(args.config)
    where = str(xpi) if xpi else "spamguard-thunderbird-VERSION.xpi (packaging/build-xpi makes it)"
    print("Now, in Thunderbird: Add-ons and Themes > gear > Install Add-on From File... > " + where)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    removed = uninstall(args.config, target=Path(args.dir) if args.dir else None)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to remove: the host was not installed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    st = status(args.config, target=Path(args.dir) if args.dir else None)
    if args.json:
        print(
            json.dumps(
                {
                    "manifest": str(st.manifest),
                    "installed": st.installed,
                    "problem": st.problem,
                    "last_contact": st.last_contact,
                    "connected": st.connected,
                    "addon_version": st.addon_version,
                }
            )
        )
    else:
        print(f"Thunderbird add-on host: {st.summary()}")
        print(f"  manifest: {st.manifest}")
    return 0 if st.installed and not st.problem else 1


def cmd_host(args: argparse.Namespace) -> int:
    from spamguard.engine.native_host import run

    return run([sys.argv[0], *args.caller], config=args.config)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "thunderbird", help="install the native-messaging host for the Thunderbird add-on"
    )
    sub = p.add_subparsers(dest="thunderbird_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("install", cmd_install, "write the host manifest where Thunderbird looks for it"),
        ("uninstall", cmd_uninstall, "remove the host manifest and its launcher"),
        ("status", cmd_status, "is the host installed; when did the add-on last connect"),
    ):
        a = sub.add_parser(name, help=text)
        a.add_argument("--dir", metavar="DIR", help=argparse.SUPPRESS)
        if name == "status":
            a.add_argument("--json", action="store_true")
        a.set_defaults(func=func)
    h = sub.add_parser("host", help="the host itself (Thunderbird starts it)")
    h.add_argument("caller", nargs="*", help="what Thunderbird passes: manifest path, add-on ID")
    h.set_defaults(func=cmd_host)
