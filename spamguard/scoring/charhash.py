"""Stage 0's character n-grams hashed in numpy: the matrix scikit-learn's FeatureHasher gives
for the "char_wb" n-grams of `char_text`, count for count, without making one Python string
per n-gram (a message has a few thousand of them; that was stage 0's largest cost).

scikit-learn stays the reference: tests/scoring/test_charhash.py compares the two.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import numpy as np
from scipy import sparse

__all__ = ["WordGrams", "char_wb_counts", "murmur3_32", "row_counts"]

_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
_F1, _F2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmur3_32(rows: np.ndarray) -> np.ndarray:
    """MurmurHash3_x86_32 (seed 0) of each row of a (m, L) uint8 array, as uint32."""
    m, length = rows.shape
    h = np.zeros(m, dtype=np.uint32)
    blocks = length // 4
    if blocks:
        words = np.ascontiguousarray(rows[:, : blocks * 4]).view("<u4")
        for i in range(blocks):
            k = _rotl(words[:, i] * _C1, 15) * _C2
            h = _rotl(h ^ k, 13) * np.uint32(5) + np.uint32(0xE6546B64)
    tail = length & 3
    if tail:
        base = blocks * 4
        k1 = rows[:, base].astype(np.uint32)
        if tail >= 2:
            k1 ^= rows[:, base + 1].astype(np.uint32) << np.uint32(8)
        if tail >= 3:
            k1 ^= rows[:, base + 2].astype(np.uint32) << np.uint32(16)
        h ^= _rotl(k1 * _C1, 15) * _C2
    h ^= np.uint32(length)
    h ^= h >> np.uint32(16)
    h *= _F1
    h ^= h >> np.uint32(13)
    h *= _F2
    h ^= h >> np.uint32(16)
    return h


def char_wb_counts(
    texts: Sequence[str], min_n: int, max_n: int, n_features: int
) -> sparse.csr_matrix:
    """``FeatureHasher(n_features, input_type="string", alternate_sign=False)`` of the
    "char_wb" n-grams of each text, for texts whose words are separated by single spaces
    (`char_text` makes them so): each word padded with a space either side gives its
    min_n..max_n-grams of code points; a padded word no longer than n is taken once, whole,
    and no longer n is tried (scikit-learn's rule). Each n-gram is hashed over its UTF-8
    bytes with MurmurHash3 (seed 0); its column is abs(hash) mod ``n_features``."""
    rw, cols = _ngram_columns(texts, min_n, max_n, n_features)
    matrix = sparse.csr_matrix((np.ones(len(rw)), (rw, cols)), shape=(len(texts), n_features))
    matrix.sum_duplicates()
    return matrix


class WordGrams:
    """`char_wb_counts` through the words: a word's n-grams depend on the word alone, and
    words recur (within a batch a third of them are new; across a mailbox far fewer), so
    each distinct word is hashed once and kept (its columns, at most ``max_words`` words),
    and a batch's counts are its words' columns counted (`row_counts`)."""

    def __init__(self, min_n: int, max_n: int, n_features: int, max_words: int = 100_000):
        self.min_n, self.max_n, self.n_features = min_n, max_n, n_features
        self.max_words = max_words
        self._columns: dict[str, bytes] = {}  # word -> its n-grams' columns, int32, repeats kept
        # The cascade's stages share this (one per setting) from two threads
        # (`Cascade.score_batches`): the cache is read and filled by one at a time.
        self._lock = threading.Lock()

    def counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """The matrix `char_wb_counts` gives for ``texts`` (single-spaced, as there)."""
        if not texts:
            return sparse.csr_matrix((0, self.n_features))
        with self._lock:
            return self._counts(texts)

    def _counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        # Every text's words (text.split(" ")), one text after another.
        tokens = " ".join(texts).split(" ")
        lens = np.fromiter((t.count(" ") + 1 for t in texts), dtype=np.int64, count=len(texts))
        known = self._columns
        table = known
        words = dict.fromkeys(tokens)
        missing = [w for w in words if w not in known]
        if missing:
            rw, cols = _ngram_columns(missing, self.min_n, self.max_n, self.n_features)
            order = np.argsort(rw, kind="stable")
            data = cols[order].astype(np.int32).tobytes()
            ends = (4 * np.cumsum(np.bincount(rw, minlength=len(missing)))).tolist()
            pieces = map(data.__getitem__, map(slice, [0, *ends], ends))
            fresh = dict(zip(missing, pieces, strict=True))
            if len(known) + len(fresh) <= self.max_words:
                known.update(fresh)
            else:  # the cache starts again with the first new words; this batch reads all
                table = {w: known[w] for w in words if w in known}
                table.update(fresh)
                known.clear()
                known.update(itertools.islice(fresh.items(), self.max_words))
        # Each word occurrence's n-gram columns, text after text; a text's entries are its
        # words' (a word twice in a text is there twice).
        blobs = list(map(table.__getitem__, tokens))
        grams = np.frombuffer(b"".join(blobs), dtype=np.int32)
        sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) // 4
        first = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(lens[:-1], out=first[1:])
        per_text = np.add.reduceat(sizes, first) if len(sizes) else np.zeros(0, np.int64)
        return row_counts(grams, per_text, self.n_features)


def row_counts(cols: np.ndarray, per_row: np.ndarray, n_features: int) -> sparse.csr_matrix:
    """The count matrix of entries ``cols`` (row after row, ``per_row`` of each), as the
    product and sort it replaces gave it: each row's distinct columns in increasing order,
    each with its count. (row, column) keys, sorted: every key of a row is below every key of
    the next, so sorting each row's run alone gives the batch's sorted keys, in half the
    time of one sort of them all (n log n of shorter runs, each in cache)."""
    n = len(per_row)
    kind = np.int64 if n * n_features >= 2**31 else np.int32  # 32 bits sort faster
    key: np.ndarray = np.repeat(np.arange(n, dtype=kind) * n_features, per_row)
    key += cols
    ends = np.cumsum(per_row).tolist()
    for start, end in zip([0, *ends], ends, strict=False):
        if end - start > 1:
            key[start:end].sort()
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if len(key) else key
    counts = np.diff(np.append(starts, len(key))).astype(np.float64)
    distinct: np.ndarray = key[starts]
    rows: np.ndarray = distinct // n_features
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sparse.csr_matrix((counts, distinct - rows * n_features, indptr), shape=(n, n_features))


def _ngram_columns(
    texts: Sequence[str], min_n: int, max_n: int, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """(text index, column) of every n-gram of `char_wb_counts`, grouped by n-gram length."""
    big = " " + " ".join(texts) + " "
    cp = np.frombuffer(big.encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([1], 1 + np.cumsum(lens + 1)[:-1]))
    spaces = np.flatnonzero(cp == 32)
    s, e = spaces[:-1], spaces[1:]
    keep = e - s > 1
    s, e = s[keep], e[keep]
    padded = e - s + 1
    word_row = np.searchsorted(starts, s + 1, side="right") - 1
    nbytes = 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
    offsets = np.zeros(len(cp) + 1, dtype=np.int64)
    np.cumsum(nbytes, out=offsets[1:])
    utf8 = np.frombuffer(big.encode("utf-8"), dtype=np.uint8)
    starts_, lengths, rows = [], [], []
    for n in range(min_n, max_n + 1):
        sel = padded > n
        count = padded[sel] - n + 1
        first = np.repeat(np.cumsum(count) - count, count)
        starts_.append(np.repeat(s[sel], count) + np.arange(int(count.sum())) - first)
        lengths.append(np.full(int(count.sum()), n))
        rows.append(np.repeat(word_row[sel], count))
    whole = padded <= max_n  # scikit-learn takes a word no longer than n once, whole
    starts_.append(s[whole])
    lengths.append(padded[whole])
    rows.append(word_row[whole])
    st, ln, rw = np.concatenate(starts_), np.concatenate(lengths), np.concatenate(rows)
    b0 = offsets[st]
    blen = offsets[st + ln] - b0
    cols = np.empty(len(st), dtype=np.int64)
    for size in np.unique(blen):
        idx = np.flatnonzero(blen == size)
        h = murmur3_32(utf8[b0[idx, None] + np.arange(size)]).view(np.int32).astype(np.int64)
        cols[idx] = np.abs(h) % n_features
    return rw, cols
