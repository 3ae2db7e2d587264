"""Models and cost: the active head and its metrics, what the engine lacks yet, the LLM switch."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from spamguard.config import LLMConfig
from spamguard.engine.session import ModelInfo, model_info, model_versions
from spamguard.errors import SpamGuardError
from spamguard.learn.registry import ModelRegistry


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


class ModelsPage(QWidget):
    """The active model, its versions, the LLM switch and what scoring costs (read-only)."""

    def __init__(self, model_dir: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.active = QGroupBox(self.tr("Active model"))
        self.form = QFormLayout(self.active)
        layout.addWidget(self.active)

        versions = QGroupBox(self.tr("Versions and retraining"))
        v = QVBoxLayout(versions)
        self.versions_note = QLabel()
        self.versions_note.setTextFormat(Qt.TextFormat.RichText)
        self.versions_note.setWordWrap(True)
        v.addWidget(self.versions_note)
        layout.addWidget(versions)

        llm = QGroupBox(self.tr("Language model and remote server"))
        lv = QFormLayout(llm)
        self.llm_state = QLabel(self.tr("<b>Off</b>"))
        lv.addRow(self.tr("LLM stage:"), self.llm_state)
        self.remote_state = QLabel(self.tr("<b>Off</b> (no server set)"))
        lv.addRow(self.tr("Remote server:"), self.remote_state)
        privacy = QLabel(
            self.tr(
                "Everything runs on this computer and no mail leaves it. If a remote "
                "server is ever switched on, the text of uncertain messages would be sent to "
                "that server for a second opinion; only switch it on for a server you run "
                "yourself."
            )
        )
        privacy.setWordWrap(True)
        lv.addRow(privacy)
        layout.addWidget(llm)

        stats = QGroupBox(self.tr("This session"))
        sv = QFormLayout(stats)
        self.scored = QLabel("0")
        self.rate = QLabel("—")
        sv.addRow(self.tr("Messages scored:"), self.scored)
        sv.addRow(self.tr("Scan speed:"), self.rate)
        self.counters = QLabel(self.tr("Per-stage costs appear after the first scan."))
        self.counters.setWordWrap(True)
        self.counters.setTextFormat(Qt.TextFormat.RichText)
        sv.addRow(self.tr("Where the time goes:"), self.counters)
        layout.addWidget(stats)
        layout.addStretch(1)
        # Filled when first shown: reading the model's card imports the scoring stack
        # (numpy, scipy: most of a second), which must not stand between launch and the tray.
        self._model_dir = model_dir
        self._registry: ModelRegistry | None = None  # the app's runtime's; None: the default
        self._filled = False

    def set_registry(self, registry: ModelRegistry) -> None:
        """The registry the app's learner writes to (the config's data_dir may move it)."""
        self._registry = registry
        if self._filled:
            self._fill_versions()

    def showEvent(self, event: QShowEvent) -> None:
        if not self._filled:
            self._filled = True
            self.show_model(self._model_dir)
        super().showEvent(event)

    def show_model(self, model_dir: Path | None) -> None:
        self._model_dir, self._filled = model_dir, True
        while self.form.rowCount():
            self.form.removeRow(0)
        try:
            if model_dir is None and self._registry is not None:
                model_dir = self._registry.active_dir()  # the version scoring mail now
            info = model_info(model_dir)
        except SpamGuardError as exc:
            label = QLabel(html.escape(str(exc)))
            label.setWordWrap(True)
            self.form.addRow(label)
            return
        self._fill(info)
        self._fill_versions()

    def _fill_versions(self) -> None:
        try:
            versions = model_versions(self._registry)
        except (SpamGuardError, OSError, ValueError) as exc:
            self.versions_note.setText(html.escape(str(exc)))
            return
        if not versions:
            self.versions_note.setText(
                self.tr(
                    "Only the shipped model so far. Your Spam / Not spam clicks and the mail "
                    "you move in or out of Junk retrain a personal version, which replaces "
                    "this one only if it scores your labelled mail at least as well."
                )
            )
            return
        lines = [
            f"<b>{html.escape(v.version)}</b> — {html.escape(v.state)}, "
            + self.tr("%1 labels, %2")
            .replace("%1", str(v.n_labels))
            .replace("%2", html.escape(v.created_at[:16].replace("T", " ")))
            + (f" — {html.escape(v.reason)}" if v.reason else "")
            for v in versions[:8]
        ]
        lines.append(self.tr("Roll back with <tt>spamguard models rollback</tt>."))
        self.versions_note.setText("<br>".join(lines))

    def _fill(self, info: ModelInfo) -> None:
        m = info.metrics
        self.form.addRow(self.tr("Version:"), QLabel(html.escape(info.version)))
        self.form.addRow(self.tr("Trained:"), QLabel(html.escape(info.trained_at or "—")))
        self.form.addRow(
            self.tr("Training mail:"),
            QLabel(
                self.tr("%1 spam, %2 not spam (%3)")
                .replace("%1", str(info.n_spam))
                .replace("%2", str(info.n_ham))
                .replace("%3", html.escape(info.source or "?"))
            ),
        )
        self.form.addRow(
            self.tr("Sentence encoder:"), QLabel(html.escape(info.encoder or self.tr("none")))
        )
        where = (
            self.tr("held-out test mail")
            if m.get("held_out")
            else self.tr("cross-validation on the training mail")
        )
        self.form.addRow(self.tr("Measured on:"), QLabel(where))
        auc = m.get("roc_auc")
        self.form.addRow(self.tr("ROC AUC:"), QLabel("—" if auc is None else f"{auc:.4f}"))
        self.form.addRow(
            self.tr("At the move threshold:"),
            QLabel(
                self.tr("precision %1, recall %2, false positives %3")
                .replace("%1", _pct(m.get("at_move.precision")))
                .replace("%2", _pct(m.get("at_move.recall")))
                .replace("%3", _pct(m.get("at_move.fpr")))
            ),
        )
        self.form.addRow(
            self.tr("At the flag threshold:"),
            QLabel(
                self.tr("precision %1, recall %2, false positives %3")
                .replace("%1", _pct(m.get("at_flag.precision")))
                .replace("%2", _pct(m.get("at_flag.recall")))
                .replace("%3", _pct(m.get("at_flag.fpr")))
            ),
        )
        path = QLabel(html.escape(str(info.path)))
        path.setWordWrap(True)
        self.form.addRow(self.tr("Folder:"), path)

    def set_llm(self, llm: LLMConfig) -> None:
        """What the [llm] section says: the model that explains, and any remote server."""
        model = llm.model_path.name if llm.model_path else llm.model
        self.llm_state.setText(
            self.tr(
                "not used for scores (it ranked mail at chance in testing); "
                "<tt>spamguard explain --llm</tt> asks <b>%1</b> for a rationale"
            ).replace("%1", html.escape(model))
        )
        if llm.remote_url:
            self.remote_state.setText(
                self.tr(
                    '<b style="color:#c0392b">On</b>: %1 — the text of the messages it '
                    "explains leaves this computer"
                ).replace("%1", html.escape(llm.remote_url))
            )
        else:
            self.remote_state.setText(self.tr("<b>Off</b> (no server set)"))

    def set_counters(self, rows: list[dict[str, Any]]) -> None:
        """The engine's counters (`Recorder.snapshot()`): one line per stage and model."""
        lines = []
        total = sum(r["decided"] for r in rows) or 1
        for r in rows:
            if not r["messages"]:
                continue
            p95 = r.get("latency_p95_ms")
            lines.append(
                self.tr("<b>%1</b> (%2): decided %3 of messages, p95 %4 ms, %5 CPU-s per 1,000")
                .replace("%1", html.escape(r["stage"]))
                .replace("%2", html.escape(r["model_version"]))
                .replace("%3", f"{r['decided'] / total:.0%}")
                .replace("%4", "—" if p95 is None else f"{p95:.0f}")
                .replace("%5", f"{r['cpu_seconds_per_1000']:.1f}")
            )
        if lines:
            self.counters.setText("<br>".join(lines))

    def set_session_stats(self, scored: int, per_second: float | None) -> None:
        self.scored.setText(str(scored))
        self.rate.setText(
            "—"
            if per_second is None
            else self.tr("%1 messages/s").replace("%1", f"{per_second:.1f}")
        )
