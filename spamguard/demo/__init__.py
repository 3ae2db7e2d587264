"""The bundled demo mailbox (a Maildir), used when no account is configured."""

from __future__ import annotations

import importlib.resources
import json
import pathlib

__all__ = ["demo_labels", "demo_mailbox_path"]


def demo_mailbox_path() -> pathlib.Path:
    """The demo Maildir (``cur/``, ``new/``, ``tmp/``) shipped inside the package."""
    return pathlib.Path(str(importlib.resources.files("spamguard.demo") / "mailbox"))


def demo_labels() -> dict[str, str]:
    """Hand labels of the demo mail: Maildir file name -> ``"spam"`` or ``"ham"``."""
    text = (importlib.resources.files("spamguard.demo") / "labels.json").read_text("utf-8")
    labels: dict[str, str] = json.loads(text)
    return labels
