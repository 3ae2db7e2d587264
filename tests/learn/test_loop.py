"""The learning loop without a server: background retrain, cancel, held-back checks, rejection."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from spamguard.learn.corpus import load_split
from spamguard.learn.labels import record_label
from spamguard.learn.loop import Learner, LearnOptions, retrain_steps
from spamguard.learn.registry import ModelRegistry
from spamguard.learn.warm import Cancelled, WarmStartOptions
from spamguard.store import Store
from tests.conftest import FIXTURE_CORPUS


@pytest.fixture
def labelled_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.sqlite3")
    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "test")
    ham = [it for it in items if not it.is_spam][:6]
    spam = [it for it in items if it.is_spam][:6]
    for it in ham + spam:
        raw = (FIXTURE_CORPUS / it.ref).read_bytes()
        label = "spam" if it.is_spam else "ham"
        msg = it.message
        record_label(store, "acc", msg.message_id, msg.content_hash, label, "test", raw=raw)
    return store


@pytest.fixture
def registry(tmp_path: Path, fixture_model: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    reg.register_dir(fixture_model, activate=True)
    return reg


def test_background_retrain_leaves_the_caller_free(
    labelled_store: Store, registry: ModelRegistry
) -> None:
    done = threading.Event()
    learner = Learner(
        labelled_store,
        registry=registry,
        options=LearnOptions(retrain_after=10, shadow_messages=0),
        on_event=lambda event: done.set(),
    )
    assert learner.pending_labels() == 12
    assert learner.maybe_retrain()  # returns at once: the fit runs in its thread
    assert learner.wait(120)
    assert done.is_set() and len(learner.outcomes) == 1
    outcome = learner.outcomes[0]
    info = registry.get(outcome.version)
    assert info.label_watermark == 12 and info.n_labels == 12
    assert outcome.metrics["held_back"]["n"] == 12
    assert learner.pending_labels() == 0 and not learner.maybe_retrain()


def test_cancel_stops_a_retrain(labelled_store: Store, registry: ModelRegistry) -> None:
    cancel = threading.Event()
    gen = retrain_steps(labelled_store, registry, LearnOptions(), cancel=cancel)
    next(gen)
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in gen:
            pass
    assert [v.version for v in registry.versions()] == ["fixture-head"]


def test_a_candidate_worse_on_the_public_test_half_is_rejected(
    labelled_store: Store, registry: ModelRegistry
) -> None:
    # Labels that contradict the corpus: on the held-back labels the candidate looks
    # better (it learnt them), but the public test half shows what it cost.
    for row in labelled_store.feedback_rows():
        flipped = "ham" if row.label == "spam" else "spam"
        record_label(labelled_store, "acc", row.message_id, row.content_hash, flipped, "test")
    options = LearnOptions(
        shadow_messages=0,
        public_eval=(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS),
        warm=WarmStartOptions(l2=0.01),
    )
    outcome = Learner(labelled_store, registry=registry, options=options).retrain()
    assert outcome.state == "rejected", outcome
    assert "public test AUC" in outcome.reason
    assert registry.active == "fixture-head"
    assert registry.get(outcome.version).state == "rejected"


def test_features_are_prepared_between_syncs(
    labelled_store: Store, registry: ModelRegistry
) -> None:
    learner = Learner(labelled_store, registry=registry)
    assert learner.prepare_features(limit=5) == 5
    assert learner.prepare_features() == 7
    assert learner.prepare_features() == 0


def test_a_personal_version_of_the_shipped_model_keeps_a_checked_cascade(
    labelled_store: Store, tmp_path: Path
) -> None:
    import json

    from spamguard.scoring.assemble import load_default_scorer
    from spamguard.scoring.cascade import Cascade
    from spamguard.scoring.model import default_model_dir

    reg = ModelRegistry(tmp_path / "shipped-registry")
    reg.register_dir(default_model_dir(), activate=True)
    assert isinstance(load_default_scorer(reg.active_dir()), Cascade)  # the shipped bands fit
    outcome = _run(retrain_steps(labelled_store, reg, LearnOptions(shadow_messages=0)))
    # Whether the candidate is promoted is the held-back check's business (with the shipped
    # default-2 it errs once more than the active model on these 12 labels and is kept as
    # rejected); the cascade is checked and kept beside the version either way.
    assert outcome.state in ("active", "rejected"), outcome
    check = outcome.metrics["cascade"]
    assert check["n"] == 12 and check["errors_cascade"] <= check["errors_full"] and check["kept"]
    version_dir = reg.version_dir(outcome.version)
    spec = json.loads((version_dir / "cascade.json").read_text())
    assert spec["for_models"] == {"cheap": f"{outcome.version}-stage0", "full": outcome.version}
    scorer = load_default_scorer(version_dir)
    # The personal head with its own retrained stage 0 in front of it.
    assert isinstance(scorer, Cascade)
    assert [s.version for s in scorer.stages] == [f"{outcome.version}-stage0", outcome.version]
    items = load_split(FIXTURE_CORPUS / "split.tsv", FIXTURE_CORPUS, "train")[:20]
    assert len(scorer.score([it.message for it in items])) == 20
    # Exported and imported elsewhere, the version brings its cascade along.
    exported = reg.export(outcome.version, tmp_path / "personal.zip")
    other = ModelRegistry(tmp_path / "other-machine")
    info = other.import_file(exported, activate=True)
    moved = load_default_scorer(other.active_dir())
    assert isinstance(moved, Cascade) and moved.stages[1].version == info.version


def _run(gen):  # type: ignore[no-untyped-def]
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_labelled_messages_are_reread_with_their_accounts_trusted_results(
    tmp_path: Path,
) -> None:
    """Retraining reads a labelled message's Authentication-Results as scoring it did:
    only those of its account's own server."""
    from spamguard.learn.loop import _StoredMessages

    raw = (
        b"Authentication-Results: mx.a.example; dkim=pass header.d=shop.example; dmarc=pass\r\n"
        b"From: news@shop.example\r\nSubject: receipt\r\n\r\nThanks.\r\n"
    )
    with Store(tmp_path / "s.db") as store:
        store.record_feedback("a", "<r@t>", "h-r", "ham", "button", raw=raw)
        assert _StoredMessages(store, ["h-r"])[0].auth.dkim is None  # nothing learnt yet
        store.save_authserv_id("a", "mx.a.example")
        msg = _StoredMessages(store, ["h-r"])[0]
        assert msg.auth.dkim == "pass" and msg.auth.dkim_domains == ("shop.example",)


def test_a_personal_version_keeps_the_parents_scoring_views(
    labelled_store: Store, tmp_path: Path
) -> None:
    """The shipped default reads gated views (issue 21): a padded spam is scored without its
    padding. A personal version warm-started from it must read them too, or the padding
    protection would vanish at the user's first retrain."""
    import json

    from benchmarks.evasion import UNRELATED_SITES
    from spamguard.message import parse_message
    from spamguard.scoring.assemble import load_default_scorer
    from spamguard.scoring.model import default_model_dir
    from spamguard.scoring.views import ViewConfig
    from tests.test_evasion import SPAM_TEXT, spam

    parent = json.loads((default_model_dir() / "config.json").read_text("utf-8"))
    assert parent["views"]["enabled"] and parent["views"]["gated"]
    reg = ModelRegistry(tmp_path / "shipped-registry")
    reg.register_dir(default_model_dir(), activate=True)
    outcome = _run(retrain_steps(labelled_store, reg, LearnOptions(shadow_messages=0)))
    version_dir = reg.version_dir(outcome.version)
    child = json.loads((version_dir / "config.json").read_text("utf-8"))
    assert child["training"]["parent"] == parent["version"]
    assert child["views"] == parent["views"]

    links = "\n".join(f"http://{site}" for site in UNRELATED_SITES)
    padded = parse_message(spam(SPAM_TEXT + "\n" + links))
    scorer = load_default_scorer(version_dir)
    (score,) = scorer.score([padded])
    assert score.p_spam >= 0.90, score
    # The control: the same child without its views is talked out of the spam by the links.
    head = scorer.stages[-1] if hasattr(scorer, "stages") else scorer
    head.model.views = ViewConfig(enabled=False)
    (whole,) = head.score([padded])
    assert whole.p_spam < score.p_spam
