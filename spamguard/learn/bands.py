"""Fitting the cascade's bands: out-of-fold scores of a head trained exactly as
`spamguard.learn.fit` trains it, for `choose_band` (`spamguard cascade fit`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spamguard.learn.fit import TrainOptions, train

__all__ = ["cross_val_decisions"]


def cross_val_decisions(
    items: Sequence[Any],
    blocks: dict[str, float],
    *,
    embeddings: np.ndarray | None = None,
    C: float = 100.0,
    folds: int = 5,
    seed: int = 0,
    augment_headerless: bool = True,
) -> np.ndarray:
    """Out-of-fold calibrated probabilities of a head with ``blocks``, fitted exactly as
    `spamguard.learn.fit` fits it (it is that training, keeping its out-of-fold scores)."""
    options = TrainOptions(
        blocks=tuple(blocks.items()),
        C=C,
        folds=folds,
        seed=seed,
        augment_headerless=augment_headerless,
        keep_neighbours=False,
    )
    model = train(items, options, embeddings=embeddings)
    assert model.oof_p is not None
    return np.asarray(model.oof_p, dtype=np.float64)
