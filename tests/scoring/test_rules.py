"""The GTUBE test line (issue 21, item 9): spam at p = 1.0 with a reason that names it, in
`score`, `explain` and the cascade, with the shipped model; and never training data."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from spamguard.cli import main
from spamguard.learn.corpus import load_folders
from spamguard.message import parse_message
from spamguard.scoring.rules import GTUBE, GTUBE_FEATURE, is_gtube

# What people send themselves to check a filter: otherwise an ordinary, friendly note.
NOTE = (
    "Hi Sam,\n\nThis is a test of the new mail filter, please ignore.\n\n"
    f"{GTUBE}\n\nThanks,\nAlex\n"
)


def gtube_mail(body: str = NOTE, *, cte: str = "7bit") -> bytes:
    payload = base64.encodebytes(body.encode()).decode() if cte == "base64" else body
    return (
        "From: Alex Example <alex@example.org>\nTo: sam@example.org\n"
        "Subject: filter test\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: {cte}\n\n"
        + payload
    ).encode()


def _records(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_without_the_rule_the_shipped_model_calls_the_test_line_ham() -> None:
    # Why the rule exists (the tester saw 0.331): a model has no reason to know GTUBE.
    from spamguard.scoring.model import load_scorer

    scorer = load_scorer()
    mail = [parse_message(gtube_mail())]
    (score,) = scorer._score(mail, scorer.embed(mail))
    assert score.p_spam < 0.9


@pytest.mark.parametrize("cte", ["7bit", "base64"])
def test_score_says_spam_at_one_and_names_gtube(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cte: str
) -> None:
    path = tmp_path / "gtube.eml"
    path.write_bytes(gtube_mail(cte=cte))
    ham = tmp_path / "note.eml"
    ham.write_bytes(gtube_mail(NOTE.replace(GTUBE, "See you on Monday.")))
    # The shipped cascade, as a user runs it.
    assert main(["score", "--jsonl", str(path), str(ham)]) == 0
    got, other = _records(capsys)
    assert got["p_spam"] == 1.0 and got["verdict"] == "spam"
    assert got["evidence"][0]["feature"] == GTUBE_FEATURE
    assert "GTUBE" in got["evidence"][0]["detail"]
    assert other["p_spam"] < 1.0 and all(e["feature"] != GTUBE_FEATURE for e in other["evidence"])


def test_score_without_the_cascade_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gtube.eml"
    path.write_bytes(gtube_mail())
    assert main(["score", "--no-cascade", "--jsonl", str(path)]) == 0
    (got,) = _records(capsys)
    assert got["p_spam"] == 1.0 and got["evidence"][0]["feature"] == GTUBE_FEATURE


def test_explain_names_gtube(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gtube.eml"
    path.write_bytes(gtube_mail())
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Spam probability 1.000" in out and "would be moved to Junk" in out
    assert "GTUBE" in out


def test_the_cascade_decides_it_at_the_first_stage() -> None:
    from spamguard.scoring.assemble import load_default_scorer

    cascade = load_default_scorer()
    plain = parse_message(gtube_mail(NOTE.replace(GTUBE, "See you on Monday.")))
    got, other = cascade.score([parse_message(gtube_mail()), plain])
    assert got.p_spam == 1.0 and got.evidence[0].feature == GTUBE_FEATURE
    assert got.stage == cascade.names[0]
    assert other.p_spam < 1.0


def test_gtube_is_read_in_html_and_subject_but_not_in_a_fragment() -> None:
    html = gtube_mail().replace(b"text/plain", b"text/html")
    assert is_gtube(parse_message(html))
    subject = gtube_mail("hello\n").replace(b"Subject: filter test", f"Subject: {GTUBE}".encode())
    assert is_gtube(parse_message(subject))
    assert not is_gtube(parse_message(gtube_mail(NOTE.replace(GTUBE, GTUBE[:-4]))))


def test_training_folders_leave_gtube_out(tmp_path: Path) -> None:
    spam_dir, ham_dir = tmp_path / "spam", tmp_path / "ham"
    spam_dir.mkdir()
    ham_dir.mkdir()
    (spam_dir / "1.eml").write_bytes(gtube_mail())
    (spam_dir / "2.eml").write_bytes(gtube_mail(NOTE.replace(GTUBE, "Buy cheap pills now")))
    (ham_dir / "1.eml").write_bytes(gtube_mail(cte="base64"))
    (ham_dir / "2.eml").write_bytes(gtube_mail(NOTE.replace(GTUBE, "See you on Monday.")))
    items = load_folders([ham_dir], [spam_dir])
    assert sorted(Path(it.ref).name for it in items) == ["2.eml", "2.eml"]
    assert not any(is_gtube(it.message) for it in items)


def test_the_learner_never_keeps_a_gtube_label_for_training(tmp_path: Path) -> None:
    from spamguard.learn.labels import record_label
    from spamguard.learn.loop import ImplicitLabels, labelled_rows, training_labels
    from spamguard.store import Store

    store = Store(tmp_path / "state.db")
    try:
        for i, raw in enumerate([gtube_mail(), gtube_mail(NOTE.replace(GTUBE, "Cheap pills"))]):
            msg = parse_message(raw)
            # With and without the parsed message at hand, as the callers pass it.
            record_label(
                store,
                "work",
                f"<{i}@example.org>",
                msg.content_hash,
                "spam",
                "moved-to-junk",
                message=msg if i else None,
                raw=raw,
            )
        pills = parse_message(gtube_mail(NOTE.replace(GTUBE, "Cheap pills"))).content_hash
        assert labelled_rows(store).hashes == [pills]
        # The user's action itself is still on record.
        assert len(store.feedback_rows("work")) == 2
        # Bytes kept by other paths (a backfill, a first sync) are left out of a retrain too.
        encoded = gtube_mail(cte="base64")
        encoded_hash = parse_message(encoded).content_hash
        store.record_feedback("work", "<9@example.org>", encoded_hash, "spam", "t", raw=encoded)
        assert labelled_rows(store).hashes == [pills, encoded_hash]
        implied_hash = parse_message(gtube_mail()).content_hash
        store.save_label_raw(implied_hash, gtube_mail())
        implied = ImplicitLabels([implied_hash], [True], [0.5], "from the account")
        labelled, kind, n_explicit = training_labels(store, implied)
        assert labelled.hashes == [pills] and list(kind) == [1.0] and n_explicit == 1
    finally:
        store.close()
