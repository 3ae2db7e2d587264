"""The signals modern mail carries (sender block) and models keeping their own signal lists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spamguard.errors import ModelError
from spamguard.message import parse_message
from spamguard.scoring.features import (
    LEGACY_HAND_FEATURES,
    LEGACY_SENDER_FEATURES,
    SENDER_FEATURES,
    hand_matrix,
    sender_features,
    sender_matrix,
)
from spamguard.scoring.head import Featurizer, LogisticHead
from spamguard.scoring.model import HeadModel, default_model_dir, load_model, save_model

TRUSTED = "mx.receiver.example"
NEW_SIGNALS = [name for name, _ in SENDER_FEATURES[len(LEGACY_SENDER_FEATURES) :]]


def _newsletter(
    *,
    auth: str = "dkim=pass header.d=news.shop.example; spf=pass; dmarc=pass",
    return_path: str = "<bounce-123@mail.shop.example>",
    extra: str = "",
    link: str = "https://www.shop.example/deals",
) -> bytes:
    return (
        f"Authentication-Results: {TRUSTED}; {auth}\r\n"
        "Received: from out.shop.example by mx.receiver.example; Mon, 23 Nov 2026 10:00 +0000\r\n"
        f"Return-Path: {return_path}\r\n"
        "From: Shop <news@shop.example>\r\nTo: user@receiver.example\r\n"
        "Subject: This week's deals\r\nMessage-ID: <n1@shop.example>\r\n"
        f"{extra}\r\nSee {link} for this week's deals.\r\n"
    ).encode()


def _signals(raw: bytes, authserv_id: str | None = TRUSTED) -> dict[str, float]:
    msg = parse_message(raw, authserv_id=authserv_id)
    return dict(zip([n for n, _ in SENDER_FEATURES], sender_features(msg), strict=True))


ONE_CLICK = (
    "List-Unsubscribe: <https://shop.example/u/abc>, <mailto:u@shop.example>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "Feedback-ID: 123:campaign:shop\r\n"
)


def test_an_authenticated_consistent_newsletter_has_every_signal() -> None:
    got = _signals(_newsletter(extra=ONE_CLICK))
    assert {name: got[name] for name in NEW_SIGNALS} == {
        "dkim_pass": 1.0,
        "dkim_aligned": 1.0,
        "spf_pass": 1.0,
        "dmarc_pass": 1.0,
        "dmarc_fail": 0.0,
        "one_click_unsubscribe": 1.0,
        "feedback_id": 1.0,
        "sender_domain_consistent": 1.0,
    }


def test_authentication_signals_need_the_trusted_server() -> None:
    got = _signals(_newsletter(extra=ONE_CLICK), authserv_id=None)
    assert [got[n] for n in ("dkim_pass", "dkim_aligned", "spf_pass", "dmarc_pass")] == [0.0] * 4
    assert got["sender_domain_consistent"] == 0.0  # it rests on the verified DKIM domain
    # Headers the sender writes are read as they are.
    assert got["one_click_unsubscribe"] == 1.0 and got["feedback_id"] == 1.0


def test_a_signature_of_another_domain_is_not_aligned() -> None:
    got = _signals(_newsletter(auth="dkim=pass header.d=bulkmailer.example; dmarc=fail"))
    assert got["dkim_pass"] == 1.0 and got["dkim_aligned"] == 0.0
    assert got["dmarc_fail"] == 1.0 and got["sender_domain_consistent"] == 0.0


def test_domain_consistency_needs_return_path_and_links_to_agree() -> None:
    assert _signals(_newsletter(return_path="<x@bulk.example>"))["sender_domain_consistent"] == 0
    assert _signals(_newsletter(link="https://evil.example/x"))["sender_domain_consistent"] == 0
    assert _signals(_newsletter())["sender_domain_consistent"] == 1.0


def test_one_click_needs_both_headers_and_an_https_uri() -> None:
    only_link = "List-Unsubscribe: <https://shop.example/u/abc>\r\n"
    mail_only = (
        "List-Unsubscribe: <mailto:u@shop.example>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    )
    assert _signals(_newsletter(extra=only_link))["one_click_unsubscribe"] == 0.0
    assert _signals(_newsletter(extra=mail_only))["one_click_unsubscribe"] == 0.0


def test_matrices_select_columns_by_name() -> None:
    msgs = [parse_message(_newsletter(extra=ONE_CLICK), authserv_id=TRUSTED)]
    full = sender_matrix(msgs)
    assert full.shape == (1, len(SENDER_FEATURES))
    picked = sender_matrix(msgs, ["feedback_id", "link_from_any"])
    names = [n for n, _ in SENDER_FEATURES]
    assert picked.tolist() == [
        [full[0, names.index("feedback_id")], full[0, names.index("link_from_any")]]
    ]


# -- a model keeps the signals it was trained with ------------------------------------------------


def test_the_shipped_model_reads_its_own_signal_lists() -> None:
    config = json.loads((default_model_dir() / "config.json").read_text())
    model = load_model(default_model_dir())
    assert list(model.featurizer.sender_names) == config["sender_features"]
    assert list(model.featurizer.hand_names) == config["hand_features"]
    # The weights on disk fit exactly those columns (load_model checks the count too).
    assert model.head.coef_.shape[0] == model.featurizer.n_columns


def _old_model(tmp_path: Path, *, with_lists: bool) -> Path:
    """A model as SpamGuard wrote them before the modern signals: 27 hand and 6 sender
    signals; older still, a config.json without the lists at all."""
    featurizer = Featurizer(
        weights={"hand": 1.0, "sender": 0.5},
        hand_names=LEGACY_HAND_FEATURES,
        sender_names=LEGACY_SENDER_FEATURES,
    )
    rng = np.random.default_rng(3)
    head = LogisticHead(coef_=rng.normal(size=featurizer.n_columns), intercept_=-0.2)
    out = save_model(HeadModel(featurizer=featurizer, head=head, version="old-1"), tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    assert config["sender_features"] == list(LEGACY_SENDER_FEATURES)
    if not with_lists:
        del config["sender_features"], config["hand_features"]
        (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("with_lists", [True, False], ids=["named", "before-names"])
def test_an_old_model_scores_exactly_as_before(tmp_path: Path, with_lists: bool) -> None:
    """Its blocks are the old columns, in the old order, whatever this version computes:
    a message carrying every new signal gets them in no column of it."""
    model = load_model(_old_model(tmp_path, with_lists=with_lists))
    assert model.featurizer.sender_names == LEGACY_SENDER_FEATURES
    assert model.featurizer.hand_names == LEGACY_HAND_FEATURES
    msgs = [
        parse_message(_newsletter(extra=ONE_CLICK), authserv_id=TRUSTED),
        parse_message(_newsletter(auth="dkim=fail; dmarc=fail")),
    ]
    n_hand, n_sender = len(LEGACY_HAND_FEATURES), len(LEGACY_SENDER_FEATURES)
    # What the old code computed: every hand signal it had, then its six sender signals.
    old_rows = np.hstack([hand_matrix(msgs)[:, :n_hand], 0.5 * sender_matrix(msgs)[:, :n_sender]])
    expected = old_rows @ model.head.coef_ + model.head.intercept_
    got = model.head.decision_function(model.featurizer.transform(msgs))
    assert np.allclose(got, expected, rtol=0, atol=1e-6)
    assert model.featurizer.n_columns == n_hand + n_sender


def test_the_shipped_model_loads_with_the_new_signals_known() -> None:
    # Whichever lists it was trained with, it loads and its columns match its weights.
    model = load_model(default_model_dir())
    assert set(model.featurizer.sender_names) <= {n for n, _ in SENDER_FEATURES}


def test_a_model_naming_a_signal_this_version_lacks_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "future"
    shutil.copytree(default_model_dir(), copy)
    config = json.loads((copy / "config.json").read_text())
    config["sender_features"] = [*config["sender_features"][:-1], "bimi_verified"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"'bimi_verified'.*update SpamGuard or retrain"):
        load_model(copy)
