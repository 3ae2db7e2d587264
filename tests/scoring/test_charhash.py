"""Stage 0's numpy n-gram hashing against scikit-learn, the reference the model format was
defined with: the same columns and counts, message for message."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from spamguard.message import parse_message
from spamguard.scoring.charhash import char_wb_counts, murmur3_32
from spamguard.scoring.features import FeatureConfig, char_terms, char_text

DEMO = Path(__file__).resolve().parents[2] / "spamguard" / "demo" / "mailbox"

ODD_TEXTS = [
    "",
    "a",
    "ab",
    "abc abcd abcde abcdef a bb ccc",
    "x " * 50,
    "日本語のテキストです 中文 한국어",
    "emoji 😀😀 🇩🇪 flags and e\u0301 combining",
    "ÄÖÜ straße ǅ ﬁ ligature ß" * 3,
    "\x00 nul \x7f del",
    "a" * 300,
]


def test_murmur3_matches_scikit_learn_for_every_length() -> None:
    from sklearn.utils import murmurhash3_32

    rng = random.Random(3)
    for length in range(0, 25):
        rows = np.array(
            [[rng.randrange(256) for _ in range(length)] for _ in range(200)], dtype=np.uint8
        ).reshape(200, length)
        ours = murmur3_32(rows).view(np.int32)
        theirs = [murmurhash3_32(bytes(r), seed=0) for r in rows]
        assert ours.tolist() == theirs, length


def _messages() -> list[object]:
    raws = [p.read_bytes() for p in sorted((DEMO / "cur").iterdir())]
    assert len(raws) >= 20
    for i, text in enumerate(ODD_TEXTS):
        raws.append(
            f"From: a@example.org\r\nSubject: {f'odd {i}' if text else ''}\r\n"
            f"Message-ID: <odd{i}@x>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n".encode()
        )
    return [parse_message(r) for r in raws]


@pytest.mark.parametrize("n_features,min_n,max_n", [(2**20, 3, 5), (2**8, 3, 5), (2**20, 2, 4)])
def test_char_ngram_counts_equal_scikit_learns(n_features: int, min_n: int, max_n: int) -> None:
    from sklearn.feature_extraction import FeatureHasher

    cfg = FeatureConfig(n_features=n_features, char_ngram_min=min_n, char_ngram_max=max_n)
    messages = _messages()
    texts = [char_text(m, cfg) for m in messages]  # type: ignore[arg-type]
    assert any(not t.isascii() for t in texts) and "" in texts
    hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False)
    if (min_n, max_n) == (3, 5):  # the shipped models' n-grams: char_terms is the reference
        reference = hasher.transform(char_terms(m, cfg) for m in messages)  # type: ignore[arg-type]
    else:
        from sklearn.feature_extraction.text import HashingVectorizer

        analyzer = HashingVectorizer(
            analyzer="char_wb", ngram_range=(min_n, max_n), lowercase=False
        ).build_analyzer()
        reference = hasher.transform(analyzer(t) for t in texts)
    from scipy import sparse

    for batch in (len(messages), 7, 1):  # the batch a message comes in changes nothing
        parts = [
            char_wb_counts(texts[i : i + batch], min_n, max_n, n_features)
            for i in range(0, len(texts), batch)
        ]
        ours = sparse.vstack(parts, format="csr")
        assert ours.shape == reference.shape
        assert (ours != reference).nnz == 0
        assert reference.nnz > 1000


def test_empty_batch_and_empty_texts() -> None:
    assert char_wb_counts([], 3, 5, 1024).shape == (0, 1024)
    empty = char_wb_counts(["", ""], 3, 5, 1024)
    assert empty.shape == (2, 1024) and empty.nnz == 0


def test_word_grams_give_char_wb_counts_batch_after_batch() -> None:
    """The per-word path (`WordGrams`, what stage 0 runs) against the per-text one, with a
    cache that fills across batches and one small enough to be emptied on the way."""
    from spamguard.scoring.charhash import WordGrams

    cfg = FeatureConfig()
    texts = [char_text(m, cfg) for m in _messages()]  # type: ignore[arg-type]
    texts += ["same words again and again", "again and same", ""]
    # 2**30: a batch's (row, column) keys no longer fit 32 bits.
    for n_features in (2**20, 2**8, 1000, 2**30):
        for grams in (WordGrams(3, 5, n_features), WordGrams(3, 5, n_features, max_words=40)):
            for batch in (len(texts), 7, 1, len(texts)):
                for i in range(0, len(texts), batch):
                    ours = grams.counts(texts[i : i + batch])
                    reference = char_wb_counts(texts[i : i + batch], 3, 5, n_features)
                    assert ours.indptr.tolist() == reference.indptr.tolist()
                    assert ours.indices.tolist() == reference.indices.tolist()
                    assert ours.data.tolist() == reference.data.tolist()
            assert len(grams._columns) <= grams.max_words
            assert grams.counts([]).shape == (0, n_features)


def test_row_counts_sorted_row_by_row_are_the_whole_batch_sorted() -> None:
    """`row_counts` sorts each row's keys alone: the same matrix as one sort of every key
    (the counting it replaced), on random rows (empty ones, one key, repeats)."""
    from scipy import sparse

    from spamguard.scoring.charhash import row_counts

    rng = np.random.default_rng(29)
    for n_features in (7, 1 << 20):
        for _ in range(300):
            per_row = rng.integers(0, 40, size=rng.integers(0, 12))
            per_row[rng.random(len(per_row)) < 0.2] = 0
            cols = rng.integers(0, n_features, size=int(per_row.sum()))
            got = row_counts(cols, per_row, n_features)
            rows = np.repeat(np.arange(len(per_row)), per_row)
            expected = sparse.csr_matrix(
                (np.ones(len(cols)), (rows, cols)), shape=(len(per_row), n_features)
            )
            expected.sum_duplicates()
            assert got.shape == expected.shape
            assert np.array_equal(got.indptr, expected.indptr)
            assert np.array_equal(got.indices, expected.indices)
            assert np.array_equal(got.data, expected.data)
