"""The trainable logistic head: feature blocks -> log-odds -> calibrated probability.

A head is plain arrays (no pickle): one weight vector over the concatenated feature
blocks, an intercept and a Platt calibration (a, b) fitted on out-of-fold scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from spamguard.message import Message
from spamguard.scoring.charhash import WordGrams
from spamguard.scoring.features import (
    DEFAULT_HAND_FEATURES,
    SENDER_FEATURES,
    FeatureConfig,
    body_text,
    char_terms,
    char_text,
    hand_matrix,
    header_terms,
    sender_matrix,
    subject_text,
    word_terms,
)
from spamguard.scoring.termhash import HashedTerms, hashed_counts

__all__ = [
    "BLOCKS",
    "EMBEDDING_DIM",
    "CompactWeights",
    "Contribution",
    "Featurizer",
    "LogisticHead",
    "platt_fit",
]

EMBEDDING_DIM = 384
# Block name -> what it is, in the user's words (used in explanations and the ablation).
BLOCKS: dict[str, str] = {
    "words": "words and word pairs in the subject and text",
    "headers": "sender-written headers, link domains and attachment types",
    "chars": "character patterns in the subject and start of the text",
    "hand": "hand-made signals (links, attachments, authentication, ...)",
    "embedding": "the meaning of the subject and opening (sentence embedding)",
    "tokens": "which words and header tokens the mail has (naive Bayes)",
    "sender": "whether the sender's name, domain and links agree",
}
HASHED_BLOCKS = ("words", "headers", "chars")
# Blocks whose weights are not fitted by the logistic regression but set by the stacker
# (see `spamguard.learn.fit`): the naive-Bayes token log-ratios and the sender signals.
STACKED_BLOCKS = ("tokens", "sender")


@dataclass(frozen=True, slots=True)
class Contribution:
    """How much one feature of one message pushed its log-odds."""

    block: str
    name: str
    weight: float


@dataclass
class Featurizer:
    """Builds the sparse design matrix from messages (and their embeddings).

    ``weights`` scales each block after its rows are L2-normalised; a weight of 0 (or a
    missing block) leaves the block out entirely. ``hand_names`` and ``sender_names`` are
    the signals of the hand and sender blocks, by name and in column order: a model reads
    the list it was trained with (its config.json), so signals added later leave it as it
    was.
    """

    config: FeatureConfig = field(default_factory=FeatureConfig)
    weights: dict[str, float] = field(
        default_factory=lambda: {"words": 1.0, "headers": 1.0, "chars": 1.0, "hand": 1.0}
    )
    hand_names: tuple[str, ...] = DEFAULT_HAND_FEATURES
    sender_names: tuple[str, ...] = tuple(name for name, _ in SENDER_FEATURES)

    @property
    def blocks(self) -> list[str]:
        return [b for b in BLOCKS if self.weights.get(b, 0.0) > 0.0]

    @property
    def uses_embedding(self) -> bool:
        return "embedding" in self.blocks

    def encoder_input(self, message: Message) -> str:
        """What the sentence encoder reads of a message: subject and opening, as the other
        blocks read them: what a reader sees, without what the sender addresses to a model
        (normalised with text version 2)."""
        from spamguard.scoring.encoder import encoder_text

        return encoder_text(subject_text(message, self.config), body_text(message, self.config))

    @property
    def stacked(self) -> bool:
        """Whether some blocks' weights come from the stacker rather than the regression."""
        return any(b in STACKED_BLOCKS for b in self.blocks)

    def base(self) -> Featurizer:
        """The same featurizer without the stacked blocks (what the regression is fit on)."""
        weights = {b: w for b, w in self.weights.items() if b not in STACKED_BLOCKS}
        return Featurizer(
            config=self.config,
            weights=weights,
            hand_names=self.hand_names,
            sender_names=self.sender_names,
        )

    def block_sizes(self) -> dict[str, int]:
        sizes = {
            "hand": len(self.hand_names),
            "embedding": EMBEDDING_DIM,
            # Presence of each hashed word term, then each header term, each divided by the
            # number of terms present: the naive-Bayes weights on it average, not add up.
            "tokens": 2 * self.config.n_features,
            "sender": len(self.sender_names),
        }
        return {b: sizes.get(b, self.config.n_features) for b in self.blocks}

    def offsets(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        start = 0
        for block, size in self.block_sizes().items():
            out[block] = (start, start + size)
            start += size
        return out

    @property
    def n_columns(self) -> int:
        return sum(self.block_sizes().values())

    def transform(
        self, messages: Sequence[Message], embeddings: np.ndarray | None = None
    ) -> sparse.csr_matrix:
        """The design matrix: one row per message, blocks side by side."""
        return self.transform_named(messages, embeddings)[0]

    def transform_named(
        self, messages: Sequence[Message], embeddings: np.ndarray | None = None
    ) -> tuple[sparse.csr_matrix, dict[str, HashedTerms]]:
        """The design matrix, and the hashed word and header terms it was built from (by
        block), which name its columns in explanations (`term_names` re-reads instead)."""
        n = len(messages)
        parts: list[sparse.csr_matrix] = []
        counts: dict[str, sparse.csr_matrix] = {}
        named: dict[str, HashedTerms] = {}

        def hashed(block: str) -> sparse.csr_matrix:
            if block not in counts and block == "chars":
                # The same matrix as hashing `char_terms`, without a Python string per n-gram.
                cfg = self.config
                grams = _word_grams(cfg.char_ngram_min, cfg.char_ngram_max, cfg.n_features)
                counts[block] = grams.counts([char_text(m, cfg) for m in messages])
            elif block not in counts:
                terms = _TERMS[block]
                counts[block], named[block] = hashed_counts(
                    [terms(m, self.config) for m in messages], self.config.n_features
                )
            return counts[block]

        for block in self.blocks:
            weight = self.weights[block]
            if block in HASHED_BLOCKS:
                mat = hashed(block)
            elif block == "tokens":
                present = sparse.hstack([hashed("words"), hashed("headers")], format="csr")
                present = present.astype(np.float64)
                n_terms = np.diff(present.indptr)
                present.data = np.repeat(weight / np.maximum(n_terms, 1), n_terms)
                parts.append(present)
                continue
            elif block == "sender":
                parts.append(sparse.csr_matrix(sender_matrix(messages, self.sender_names) * weight))
                continue
            elif block == "hand":
                hand = hand_matrix(messages, self.hand_names, self.config)
                parts.append(sparse.csr_matrix(hand * weight))
                continue
            else:
                if embeddings is None or embeddings.shape != (n, EMBEDDING_DIM):
                    raise ValueError("this head needs one 384-d embedding per message")
                parts.append(sparse.csr_matrix(embeddings.astype(np.float64) * weight))
                continue
            parts.append(_log_l2_rows(mat, weight))
        matrix = sparse.hstack(parts, format="csr") if parts else sparse.csr_matrix((n, 0))
        return matrix, named

    def term_names(
        self, message: Message, columns: Collection[int] | None = None
    ) -> dict[int, tuple[str, str]]:
        """Column -> (block, term) for the hashed terms this message contains.

        Computed only for explanations: hashing is one-way, so the names are recovered
        from the message's own terms. With ``columns``, only blocks holding one of them
        are re-read and only those columns are named.
        """
        from sklearn.utils import murmurhash3_32

        names: dict[int, tuple[str, str]] = {}
        offsets = self.offsets()
        n_features = self.config.n_features
        wanted = None if columns is None else set(columns)
        for block in HASHED_BLOCKS:
            if block not in offsets:
                continue
            start, end = offsets[block]
            if wanted is not None and not any(start <= c < end for c in wanted):
                continue
            for term in dict.fromkeys(_TERMS[block](message, self.config)):
                col = start + abs(int(murmurhash3_32(term, seed=0))) % n_features
                if wanted is None or col in wanted:
                    names.setdefault(col, (block, term))
        return names

    def column_names(
        self,
        message: Message,
        columns: Collection[int],
        named: dict[str, HashedTerms],
        row: int,
        offsets: dict[str, tuple[int, int]] | None = None,
    ) -> dict[int, tuple[str, str]]:
        """`term_names(message, columns)`, read from the terms `transform_named` kept for
        row ``row`` of its batch (``named``); blocks it kept none of are re-read.
        ``offsets``: `offsets()`, when the caller has them."""
        offsets = offsets or self.offsets()
        names: dict[int, tuple[str, str]] = {}
        reread: list[int] = []
        for block in HASHED_BLOCKS:
            if block not in offsets:
                continue
            start, end = offsets[block]
            inside = [c - start for c in columns if start <= c < end]
            kept = named.get(block)
            if not inside:
                continue
            if kept is None:
                reread.extend(start + c for c in inside)
                continue
            for col, term in kept.names(row, inside).items():
                names[start + col] = (block, term)
        if reread:
            names.update(self.term_names(message, reread))
        return names


def _log_l2_rows(counts: sparse.csr_matrix, weight: float) -> sparse.csr_matrix:
    """``normalize(log1p(counts)) * weight`` (scikit-learn's L2 row normalisation) to the
    bit: the same Cython routine `normalize` runs, without its per-call input checks and
    copies (a quarter of a millisecond a batch). ``counts`` is left as it was."""
    from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

    data = np.log1p(counts.data.astype(np.float64))
    # Shares the index arrays: only the data is written to.
    mat = sparse.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)
    inplace_csr_row_normalize_l2(mat)
    mat.data *= weight
    return mat


@functools.cache
def _word_grams(min_n: int, max_n: int, n_features: int) -> WordGrams:
    """One per n-gram setting and process: what it keeps is each word's columns, which are
    the same for every model with that setting."""
    return WordGrams(min_n, max_n, n_features)


_TERMS: dict[str, Callable[[Message, FeatureConfig], list[str]]] = {
    "words": word_terms,
    "headers": header_terms,
    "chars": char_terms,
}


def platt_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit p = sigmoid(a * score + b) on held-out scores (Platt scaling)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(scores.reshape(-1, 1), labels.astype(int))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0))), dtype=np.float64)


_ONE = np.uint64(1)
_ONES = np.ones(1)


class CompactWeights:
    """A mostly-zero weight vector kept as its non-zero entries, read like the dense one.

    What a loaded head scores with: the shipped default-3 has 965k non-zero weights over
    5.2M columns, and dense float64 that is 42 MB (25 MB more for stage 0) held for the
    process's life. Indexing gives the dense vector's values, `np.asarray` the dense
    vector itself (for training and warm starts), and `dot` gives ``X @ dense`` to the bit:
    each row's sum keeps its terms in their order and leaves out only the zero weights'
    terms, and adding a zero product never changes a float sum (which, starting from +0.0,
    is never -0.0).

    A column's weight is found through a bitmap of the weighted columns and each 64-bit
    word's count of weighted columns before it (1 MB for default-3, cache-friendly: a
    binary search of the 965k columns cost the sync 10% of its main thread).
    """

    __slots__ = ("_before", "_bits", "index", "size", "value")

    def __init__(self, index: np.ndarray, value: np.ndarray, size: int) -> None:
        order = np.argsort(index, kind="stable")
        self.index = np.asarray(index, dtype=np.int64)[order]
        self.value = np.asarray(value, dtype=np.float64)[order]
        self.size = int(size)
        if len(self.index) and (
            self.index[0] < 0 or self.index[-1] >= self.size or np.any(np.diff(self.index) == 0)
        ):
            raise ValueError("weight columns must be distinct and inside the vector")
        self._bits = np.zeros((self.size + 63) // 64 + 1, dtype=np.uint64)
        np.bitwise_or.at(self._bits, self.index >> 6, _ONE << (self.index & 63).astype(np.uint64))
        counts = np.bitwise_count(self._bits).astype(np.int64)
        self._before = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.index = self.index.astype(np.int32 if self.size < 2**31 else np.int64)

    @property
    def shape(self) -> tuple[int]:
        return (self.size,)

    @property
    def dtype(self) -> np.dtype[np.float64]:
        return np.dtype(np.float64)

    def __len__(self) -> int:
        return self.size

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = np.zeros(self.size, dtype=np.float64)
        dense[self.index] = self.value
        return dense if dtype is None else dense.astype(dtype)

    def _positions(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each column's weight is in `value`, and whether it has one."""
        cols = np.asarray(columns, dtype=np.int64)
        if len(cols) and (cols.min() < 0 or cols.max() >= self.size):
            raise IndexError(f"columns outside a weight vector of {self.size}")
        at = cols >> 6
        word = self._bits[at]
        bit = (cols & 63).astype(np.uint64)
        hit = ((word >> bit) & _ONE).astype(bool)
        pos = self._before[at] + np.bitwise_count(word & ((_ONE << bit) - _ONE))
        return np.minimum(pos, max(len(self.value) - 1, 0)), hit

    def __getitem__(self, columns: Any) -> Any:
        cols = np.asarray(columns)
        pos, hit = self._positions(cols.ravel())
        value = self.value if len(self.value) else np.zeros(1)
        picked = np.where(hit, value[pos], 0.0).reshape(cols.shape)
        return picked if picked.ndim else float(picked)

    def dot(self, X: Any) -> np.ndarray:
        """``X @ dense`` for a CSR matrix ``X``, the same to the last bit (see the class)."""
        if not (sparse.issparse(X) and X.format == "csr"):
            return np.asarray(X @ np.asarray(self), dtype=np.float64)
        return self.dot_and_take(X, take=False)[0]

    def dot_and_take(
        self, X: sparse.csr_matrix, take: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(`dot` of CSR ``X``, the weights at each of its entries: ``self[X.indices]``),
        from one look-up of its columns (``take``: False leaves the weights out)."""
        pos, hit = self._positions(X.indices)
        value = self.value if len(self.value) else np.zeros(1)
        if take:
            # Each row's products in order, the unweighted ones as zeros: adding a zero never
            # changes the sum (see the class), so this is the compact sum below, to the bit,
            # without gathering the weighted entries first. scipy's product with a one-column
            # matrix of ones sums a row's entries one after another, as it does below.
            taken = np.where(hit, value[pos], 0.0)
            products = sparse.csr_matrix(
                (X.data * taken, np.zeros(len(taken), dtype=np.int32), X.indptr),
                shape=(X.shape[0], 1),
            )
            return np.asarray(products @ _ONES, dtype=np.float64), taken
        kept = np.concatenate([[0], np.cumsum(hit)])[X.indptr]
        compact = sparse.csr_matrix(
            (X.data[hit], pos[hit], kept), shape=(X.shape[0], max(len(self.value), 1))
        )
        return np.asarray(compact @ value, dtype=np.float64), None


@dataclass
class LogisticHead:
    """scikit-learn-shaped logistic model with Platt calibration.

    Parameters are stored by the constructor; `fit` learns ``coef_``, ``intercept_`` and
    the calibration ``platt_``.
    """

    C: float = 100.0
    max_iter: int = 3000
    # Dense after `fit`; a loaded scorer's is `CompactWeights` (`load_model(compact=True)`).
    coef_: np.ndarray | CompactWeights = field(default_factory=lambda: np.zeros(0))
    intercept_: float = 0.0
    platt_: tuple[float, float] = (1.0, 0.0)

    def fit(
        self,
        X: sparse.csr_matrix,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> LogisticHead:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="liblinear")
        lr.fit(X, y.astype(int), sample_weight=sample_weight)
        self.coef_ = np.asarray(lr.coef_[0], dtype=np.float64)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def decision_function(self, X: sparse.csr_matrix) -> np.ndarray:
        if isinstance(self.coef_, CompactWeights):
            return np.asarray(self.coef_.dot(X) + self.intercept_, dtype=np.float64)
        return np.asarray(X @ self.coef_ + self.intercept_, dtype=np.float64)

    def decision_and_weights(self, X: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(`decision_function` of CSR ``X``, the weights at each of its entries,
        ``coef_[X.indices]``: what the evidence reads), looking each column up once."""
        if isinstance(self.coef_, CompactWeights):
            dot, taken = self.coef_.dot_and_take(X)
            assert taken is not None
            return np.asarray(dot + self.intercept_, dtype=np.float64), taken
        return self.decision_function(X), self.coef_[X.indices]

    def calibrate(self, decision: np.ndarray) -> np.ndarray:
        a, b = self.platt_
        return _sigmoid(a * decision + b)

    def predict_proba(self, X: sparse.csr_matrix) -> np.ndarray:
        p = self.calibrate(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def contributions(self, row: sparse.csr_matrix) -> list[tuple[int, float]]:
        """(column, log-odds pushed) for each non-zero feature of a one-row matrix."""
        row = row.tocsr()
        cols = row.indices
        values = row.data * self.coef_[cols]
        return list(zip(cols.tolist(), values.tolist(), strict=True))
