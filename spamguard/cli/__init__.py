"""The `spamguard` command line. argparse and the `cmd_*` functions live only in this package.

`main` (from `cli.root`) is re-exported so the console script
`spamguard = "spamguard.cli:main"` stays valid.
"""

from spamguard.cli.root import main

__all__ = ["main"]
