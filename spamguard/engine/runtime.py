"""The one place a `Config` becomes running parts: the state store, the model registry, the
scorer and the learner. `spamguard run` and the desktop app both start here, so both learn.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spamguard.config import Config
from spamguard.learn.registry import ModelRegistry
from spamguard.scoring.assemble import load_default_scorer
from spamguard.scoring.base import Scorer
from spamguard.store import Store

if TYPE_CHECKING:
    from spamguard.learn.loop import Learner, LearnOptions

__all__ = [
    "SCORER_ENV",
    "Runtime",
    "active_model_dir",
    "load_scorer",
    "model_registry",
    "models_root",
    "open_store",
    "store_path",
]

log = logging.getLogger(__name__)

# "module:factory" of a scorer to use instead of the model (tests; experiments).
SCORER_ENV = "SPAMGUARD_SCORER"


def store_path(config: Config) -> Path:
    """The state database: ``data_dir/spamguard.sqlite3``, else the platform's data folder."""
    return config.state_path


def models_root(config: Config) -> Path | None:
    """Where personal model versions live (None: the platform's default, see `versions`)."""
    return config.data_dir / "models" if config.data_dir else None


def open_store(config: Config) -> Store:
    """The config's state database, open (close it, or use it as a context manager)."""
    return Store(store_path(config))


def model_registry(config: Config) -> ModelRegistry:
    """The config's personal model versions (in its data_dir when one is set)."""
    return ModelRegistry(models_root(config))


def active_model_dir(config: Config) -> Path:
    """The head ``config`` scores with: its pinned ``model_dir``, else the registry's active
    version in its data_dir (the promoted personal version, else the shipped default)."""
    return config.model_dir or model_registry(config).active_dir()


def load_scorer(model_dir: Path | None, *, registry: ModelRegistry) -> Scorer:
    """The scorer for ``model_dir``, or for the registry's active version when None (the
    promoted personal version, else the shipped default); ``$SPAMGUARD_SCORER`` wins."""
    spec = os.environ.get(SCORER_ENV)
    if spec:
        module, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(module), attr or "factory")
        made: Scorer = factory()
        return made

    if model_dir is None:
        model_dir = registry.active_dir()
    loaded: Scorer = load_default_scorer(model_dir)
    return loaded


class Runtime:
    """A config's store, registry, scorer (loaded once, on first use) and learner.

    ``model_dir`` (or the config's ``model_dir``) pins one model: the learner still records
    labels and retrains, but never swaps the scorer. ``learn=False`` runs without a learner
    (the demo mailbox, whose labels must not train the user's model). Close it when done.
    """

    def __init__(
        self,
        config: Config,
        *,
        model_dir: Path | None = None,
        learn: bool = True,
        learn_options: LearnOptions | None = None,
        store: Path | None = None,
        on_learning_event: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.model_dir = Path(model_dir) if model_dir else config.model_dir
        self.store = Store(store if store is not None else store_path(config))
        self.registry = model_registry(config)
        self._scorer: Scorer | None = None
        self._scorer_lock = threading.Lock()
        self.learner: Learner | None = None
        if learn:
            from dataclasses import replace

            from spamguard.learn.loop import Learner, LearnOptions

            options = replace(
                learn_options or LearnOptions(),
                # A model the user named on the command line or in the config stays fixed.
                manage_scorer=self.model_dir is None,
            )
            self.learner = Learner(
                self.store, registry=self.registry, options=options, on_event=on_learning_event
            )

    @property
    def manages_scorer(self) -> bool:
        return self.learner is not None and self.learner.options.manage_scorer

    def scorer(self) -> Scorer:
        """The scorer every account shares: loaded by the first caller, once."""
        with self._scorer_lock:
            if self._scorer is None:
                self._scorer = load_scorer(self.model_dir, registry=self.registry)
            return self._scorer

    def active_model_dir(self) -> Path:
        """The model scoring mail now: the pinned one, else the registry's active version."""
        return self.model_dir if self.model_dir is not None else self.registry.active_dir()

    def close(self, wait: float = 30.0) -> None:
        """Stop a retrain in progress (it stops between steps; at most ``wait`` seconds),
        then close the store. A retrain still running after that is abandoned: a daemon
        thread, and nothing it wrote is promoted half-done (the registry writes atomically)."""
        if self.learner is not None:
            self.learner.cancel()
            if not self.learner.wait(wait):
                log.warning("a retrain did not stop within %.0f s; leaving it", wait)
                return
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
