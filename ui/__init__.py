"""SpamGuard desktop front end (PySide6); imported as spamguard_ui."""
