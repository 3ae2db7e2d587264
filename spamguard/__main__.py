"""`python -m spamguard` runs the CLI."""

from spamguard.cli import main

raise SystemExit(main())
