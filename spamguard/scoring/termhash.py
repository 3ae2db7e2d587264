"""Stage 0's word and header terms hashed once per batch, their columns kept for explanations.

`hashed_counts` gives the matrix scikit-learn's ``FeatureHasher(n_features,
input_type="string", alternate_sign=False)`` gives for the same term lists (the same columns,
counts and canonical layout: it runs the same Cython hashing loop) and also keeps each
term's column, so that an explanation names a column's term without tokenising and hashing
the message a second time (that second pass cost stage 0 a fifth of its time).

The public FeatureHasher stays the reference: tests/scoring/test_termhash.py compares the two.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from spamguard.scoring.charhash import row_counts

__all__ = ["HashedTerms", "hashed_counts"]


@dataclass(frozen=True)
class HashedTerms:
    """One block's terms for a batch of messages: each message's terms (in its order), and
    every term's column, message after message (``bounds[i]:bounds[i + 1]`` are message
    i's)."""

    term_lists: Sequence[list[str]]
    columns: np.ndarray
    bounds: np.ndarray

    def names(self, row: int, wanted: Collection[int]) -> dict[int, str]:
        """Column -> the first term of message ``row`` hashed to it, for ``wanted`` columns
        (what `Featurizer.term_names` finds by re-reading the message)."""
        lo, hi = int(self.bounds[row]), int(self.bounds[row + 1])
        cols = self.columns[lo:hi]
        asked = list(wanted)
        if not len(cols) or not asked:
            return {}
        # For each wanted column, its first term: a column a word fills many times is named
        # once, not looked up at every occurrence. (One row of the comparison per wanted
        # column, so each row's first match is found along contiguous memory.)
        equal = np.asarray(asked, dtype=np.int64)[:, None] == cols
        first = equal.argmax(axis=1)
        present = equal[np.arange(len(asked)), first].tolist()
        terms = self.term_lists[row]
        found = zip(asked, first.tolist(), present, strict=True)
        return {int(c): terms[i] for c, i, hit in found if hit}


def hashed_counts(
    term_lists: Sequence[list[str]], n_features: int
) -> tuple[sparse.csr_matrix, HashedTerms]:
    """(count matrix, the hashed terms) of one term list per message."""
    # The loop behind FeatureHasher.transform: its indices are each term's column, in order,
    # before FeatureHasher sums duplicates. Private, so the reference test guards it.
    from sklearn.feature_extraction._hashing_fast import transform as _hashing_transform

    indices, indptr, _ = _hashing_transform(
        (zip(terms, itertools.repeat(1)) for terms in term_lists),
        n_features,
        np.float64,
        False,
        seed=0,
    )
    bounds = np.asarray(indptr, dtype=np.int64)
    # Summed and sorted as FeatureHasher's sum_duplicates leaves them (every value is 1).
    matrix = row_counts(np.asarray(indices), np.diff(bounds), n_features)
    return matrix, HashedTerms(term_lists, np.asarray(indices, dtype=np.int64), bounds)
