"""Models and cost: the active head and its metrics, what the engine lacks yet, the LLM switch."""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from spamguard.config import LLMConfig
from spamguard.config.edit import save_llm_gpu_layers
from spamguard.engine.session import (
    ModelInfo,
    gpu_offload_supported,
    model_info,
    model_versions,
)
from spamguard.errors import SpamGuardError
from spamguard.learn.registry import ModelRegistry


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


class ModelsPage(QWidget):
    """The active model, its versions, the LLM and its GPU offload, what scoring costs."""

    # The [llm] section after the user applied a new GPU offload setting (saved already).
    llm_changed = Signal(object)

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
        # GPU offload: [llm] n_gpu_layers. Automatic puts every layer on the GPU when the
        # installed llama.cpp reports GPU offload (CUDA, Metal, Vulkan ...), none otherwise.
        gpu_row = QHBoxLayout()
        self.gpu_mode = QComboBox()
        self.gpu_mode.addItem(self.tr("Automatic"), "auto")
        self.gpu_mode.addItem(self.tr("Off: CPU only"), 0)
        self.gpu_mode.addItem(self.tr("Number of layers:"), "layers")
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(1, 999)
        self.gpu_layers.setValue(16)
        self.gpu_layers.setEnabled(False)
        self.gpu_apply = QPushButton(self.tr("Apply"))
        self.gpu_apply.setEnabled(False)
        gpu_row.addWidget(self.gpu_mode, 1)
        gpu_row.addWidget(self.gpu_layers)
        gpu_row.addWidget(self.gpu_apply)
        lv.addRow(self.tr("GPU offload:"), gpu_row)
        self.gpu_note = QLabel()
        self.gpu_note.setWordWrap(True)
        lv.addRow(self.gpu_note)
        self.gpu_mode.currentIndexChanged.connect(self._gpu_edited)
        self.gpu_layers.valueChanged.connect(self._gpu_edited)
        self.gpu_apply.clicked.connect(self.apply_gpu_layers)
        self._llm = LLMConfig()
        self._config_path: Path | None = None
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
        self._describe_gpu(self._llm.n_gpu_layers)
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

    def set_llm(self, llm: LLMConfig, config_path: Path | None = None) -> None:
        """What the [llm] section says: the model that explains, any remote server, and the
        GPU offload setting (saved into ``config_path`` when the user applies a new one)."""
        self._llm = llm
        self._config_path = config_path
        self._show_gpu_setting(llm.n_gpu_layers)
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

    # -- GPU offload

    def gpu_setting(self) -> int | str:
        """The setting the controls show: "auto", 0, or a number of layers."""
        mode = self.gpu_mode.currentData()
        return int(self.gpu_layers.value()) if mode == "layers" else mode  # type: ignore[no-any-return]

    def _show_gpu_setting(self, setting: int | str) -> None:
        for widget in (self.gpu_mode, self.gpu_layers):
            widget.blockSignals(True)
        if setting == "auto":
            self.gpu_mode.setCurrentIndex(0)
        elif setting == 0:
            self.gpu_mode.setCurrentIndex(1)
        else:
            self.gpu_mode.setCurrentIndex(2)
            self.gpu_layers.setValue(int(setting))
        for widget in (self.gpu_mode, self.gpu_layers):
            widget.blockSignals(False)
        self.gpu_layers.setEnabled(self.gpu_mode.currentData() == "layers")
        self.gpu_apply.setEnabled(False)
        self._describe_gpu(setting)

    def _describe_gpu(self, setting: int | str) -> None:
        if not self.isVisible():
            return  # asking llama.cpp loads its library: not on the way to the tray
        supported = gpu_offload_supported()
        if supported is None:
            build = self.tr("llama-cpp-python is not installed, so no language model runs.")
        elif supported:
            build = self.tr("The installed llama.cpp reports GPU offload.")
        else:
            build = self.tr(
                "The installed llama.cpp has no GPU backend: the model runs on the CPU "
                "whatever is chosen here (rebuild llama-cpp-python with CUDA or Metal to use a "
                "GPU)."
            )
        if setting == "auto":
            what = (
                self.tr("Automatic: every layer on the GPU.")
                if supported
                else self.tr("Automatic: CPU only.")
            )
        elif setting == 0:
            what = self.tr("CPU only.")
        else:
            what = self.tr("%1 layers on the GPU, the rest on the CPU.").replace("%1", str(setting))
        self.gpu_note.setText(f"{what} {build}")

    def _gpu_edited(self) -> None:
        self.gpu_layers.setEnabled(self.gpu_mode.currentData() == "layers")
        self.gpu_apply.setEnabled(self.gpu_setting() != self._llm.n_gpu_layers)

    def apply_gpu_layers(self) -> None:
        """Save the chosen setting as ``[llm] n_gpu_layers`` (validated, the rest of the file
        kept) and tell the app, which loads the model with it for the next explanation."""
        setting = self.gpu_setting()
        if self._config_path is None:
            self.gpu_note.setText(self.tr("No config file to save into (demo mode)."))
            return
        try:
            config = save_llm_gpu_layers(self._config_path, setting)
        except SpamGuardError as exc:
            self.gpu_note.setText(self.tr("Not saved: %1").replace("%1", html.escape(str(exc))))
            return
        self._llm = replace(self._llm, n_gpu_layers=config.llm.n_gpu_layers)
        self._show_gpu_setting(config.llm.n_gpu_layers)
        self.gpu_note.setText(
            self.gpu_note.text()
            + " "
            + self.tr("Saved; the language model uses it from its next explanation.")
        )
        self.llm_changed.emit(self._llm)

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
