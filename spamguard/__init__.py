"""SpamGuard: a local, learning spam filter for IMAP mail (engine; no Qt here)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
