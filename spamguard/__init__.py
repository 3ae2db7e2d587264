"""SpamGuard: a local, learning spam filter for IMAP mail (engine; no Qt here)."""

from __future__ import annotations

import os

__version__ = "0.1.0"

__all__ = ["__version__"]

# Our BLAS work is small (one message against a few thousand neighbour vectors): a second
# BLAS thread only adds hand-offs, and when another program holds a core those threads
# spin. Measured on a 2-core machine under load: 3023x384 float32 matrix-vector product
# 2.7 ms with 2 OpenBLAS threads, 0.2 ms with 1. Set before numpy loads; a user's own
# setting wins. (The encoder and the LLM size their own thread pools.)
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
