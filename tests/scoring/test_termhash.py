"""Stage 0's batch hashing of word and header terms against scikit-learn's FeatureHasher
(the reference the model format was defined with), and the explanation names it keeps
against `Featurizer.term_names`, which re-reads the message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import sparse

from spamguard.message import Message, parse_message
from spamguard.scoring.features import FeatureConfig, header_terms, word_terms
from spamguard.scoring.head import Featurizer
from spamguard.scoring.termhash import hashed_counts

DEMO = Path(__file__).resolve().parents[2] / "spamguard" / "demo" / "mailbox"


def _messages() -> list[Message]:
    raws = [p.read_bytes() for p in sorted((DEMO / "cur").iterdir())]
    raws.append(
        "From: Ünïcode <a@exämple.org>\r\nSubject: 日本語 テキスト straße ﬁ 😀\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nÄÖÜ 中文 한국어 emoji 😀 x\r\n".encode()
    )
    raws.append(b"From: b@example.org\r\nSubject:\r\n\r\n")  # no words at all
    return [parse_message(r) for r in raws]


def test_counts_equal_feature_hashers_for_words_and_headers() -> None:
    from sklearn.feature_extraction import FeatureHasher

    messages = _messages()
    assert len(messages) >= 20
    cfg = FeatureConfig()
    for terms in (word_terms, header_terms):
        lists = [terms(m, cfg) for m in messages]
        assert any(not t.isascii() for ts in lists for t in ts)
        if terms is word_terms:
            assert [] in lists
        for n_features in (cfg.n_features, 2**8):  # 2**8: many columns shared by several terms
            hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False)
            reference = sparse.csr_matrix(hasher.transform(lists))
            for batch in (len(lists), 5, 1):
                ours = sparse.vstack(
                    [
                        hashed_counts(lists[i : i + batch], n_features)[0]
                        for i in range(0, len(lists), batch)
                    ],
                    format="csr",
                )
                # Same layout too (sorted, summed), so sums over a row run in the same order.
                assert ours.indptr.tolist() == reference.indptr.tolist()
                assert ours.indices.tolist() == reference.indices.tolist()
                assert ours.data.tolist() == reference.data.tolist()
            assert reference.nnz > 100


def test_kept_names_are_the_names_term_names_finds() -> None:
    messages = _messages()
    for n_features in (2**20, 2**8):
        featurizer = Featurizer(config=FeatureConfig(n_features=n_features))
        matrix, named = featurizer.transform_named(messages)
        assert set(named) == {"words", "headers"}
        offsets = featurizer.offsets()
        for row, message in enumerate(messages):
            columns = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]].tolist()
            # Every column of the row, chars included (those are re-read, not kept).
            expected = featurizer.term_names(message, columns)
            got = featurizer.column_names(message, columns, named, row, offsets)
            assert got == expected
            words = [c for c in columns if offsets["words"][0] <= c < offsets["words"][1]]
            assert not words or any(b == "words" for b, _ in got.values())


def test_the_matrix_is_the_one_transform_built_before() -> None:
    """transform (FeatureHasher per block, as before) and transform_named agree."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.preprocessing import normalize

    messages = _messages()
    featurizer = Featurizer(weights={"words": 1.0, "headers": 0.5})
    ours = featurizer.transform(messages)
    cfg = featurizer.config
    hasher = FeatureHasher(n_features=cfg.n_features, input_type="string", alternate_sign=False)
    blocks = []
    for terms, weight in ((word_terms, 1.0), (header_terms, 0.5)):
        mat = sparse.csr_matrix(hasher.transform(terms(m, cfg) for m in messages)).astype(
            np.float64
        )
        mat.data = np.log1p(mat.data)
        blocks.append(normalize(mat) * weight)
    reference = sparse.hstack(blocks, format="csr")
    assert (ours != reference).nnz == 0
