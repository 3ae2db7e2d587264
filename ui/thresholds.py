"""Thresholds panel: flag and move sliders over a histogram of recent scores, with live counts."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from spamguard.engine.session import histogram, threshold_counts
from spamguard.verdict import DEFAULT_FLAG_THRESHOLD, DEFAULT_MOVE_THRESHOLD, Thresholds

from .messages import FLAG_COLOUR, SPAM_COLOUR

BINS = 20


class ScoreHistogram(QWidget):
    """Bars of how many recent messages got each score, shaded by what the thresholds do."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.counts = [0] * BINS
        self.flag = DEFAULT_FLAG_THRESHOLD
        self.move = DEFAULT_MOVE_THRESHOLD
        self.setMinimumSize(320, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip(self.tr("How many recent messages got each spam probability"))

    def set_scores(self, scores: Sequence[float]) -> None:
        self.counts = histogram(scores, BINS)
        self.update()

    def set_thresholds(self, flag: float, move: float) -> None:
        self.flag, self.move = flag, move
        self.update()

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        metrics = self.fontMetrics()
        axis_h = metrics.height() + 4
        plot = QRectF(4, 4, self.width() - 8, self.height() - axis_h - 8)
        base = QColor(palette.color(QPalette.ColorRole.Mid))
        painter.setPen(QPen(base, 1))
        painter.drawLine(plot.bottomLeft(), plot.bottomRight())
        top = max(self.counts) or 1
        width = plot.width() / BINS
        for i, count in enumerate(self.counts):
            if not count:
                continue
            low = i / BINS
            if low >= self.move - 1e-9:
                colour = QColor(SPAM_COLOUR)
            elif low + 1 / BINS > self.flag + 1e-9:
                colour = QColor(FLAG_COLOUR)
            else:
                colour = QColor(palette.color(QPalette.ColorRole.Highlight))
                colour.setAlpha(150)
            height = plot.height() * count / top
            bar = QRectF(plot.left() + i * width + 1, plot.bottom() - height, width - 2, height)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRect(bar)
        for value, colour, name in (
            (self.flag, FLAG_COLOUR, self.tr("flag")),
            (self.move, SPAM_COLOUR, self.tr("move")),
        ):
            x = plot.left() + plot.width() * value
            painter.setPen(QPen(colour, 2, Qt.PenStyle.DashLine))
            painter.drawLine(int(x), int(plot.top()), int(x), int(plot.bottom()))
            painter.setPen(palette.color(QPalette.ColorRole.Text))
            text_w = metrics.horizontalAdvance(name)
            tx = min(max(x - text_w / 2, 0), self.width() - text_w)
            painter.drawText(int(tx), int(plot.top() + metrics.ascent()), name)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        for tick in (0, 25, 50, 75, 100):
            label = f"{tick} %"
            x = plot.left() + plot.width() * tick / 100 - metrics.horizontalAdvance(label) / 2
            x = min(max(x, 0), self.width() - metrics.horizontalAdvance(label))
            painter.drawText(int(x), int(self.height() - 4), label)
        painter.end()


class ThresholdsPanel(QWidget):
    """Pick an account, move the sliders, read what would happen, apply."""

    applied = Signal(str, object)  # account, Thresholds

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scores: dict[str, list[float]] = {}
        self._saved: dict[str, Thresholds] = {}
        layout = QVBoxLayout(self)
        intro = QLabel(
            self.tr(
                "Messages at or above the <b>flag</b> threshold stay in the Inbox with a flag; "
                "at or above the <b>move</b> threshold they go to Junk. The bars show the "
                "scores of recent mail, so you can see what a setting would do before you "
                "apply it."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        top = QHBoxLayout()
        top.addWidget(QLabel(self.tr("&Account:")))
        self.account = QComboBox()
        self.account.setToolTip(self.tr("Thresholds are kept per account"))
        top.itemAt(0).widget().setBuddy(self.account)  # type: ignore[attr-defined]
        top.addWidget(self.account, 1)
        layout.addLayout(top)
        self.chart = ScoreHistogram()
        layout.addWidget(self.chart, 1)

        form = QFormLayout()
        self.flag_slider = self._slider(self.tr("Messages at or above this are flagged"))
        self.move_slider = self._slider(self.tr("Messages at or above this are moved to Junk"))
        self.flag_label = QLabel()
        self.move_label = QLabel()
        form.addRow(self.tr("&Flag at:"), self.flag_slider)
        form.addRow("", self.flag_label)
        form.addRow(self.tr("&Move at:"), self.move_slider)
        form.addRow("", self.move_label)
        layout.addLayout(form)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)

        buttons = QDialogButtonBox()
        self.apply_button = buttons.addButton(
            self.tr("A&pply"), QDialogButtonBox.ButtonRole.ApplyRole
        )
        self.apply_button.setToolTip(self.tr("Use these thresholds for new mail and remember them"))
        self.reset_button = QPushButton(self.tr("&Defaults"))
        self.reset_button.setToolTip(self.tr("Flag at 50 %, move at 90 %"))
        buttons.addButton(self.reset_button, QDialogButtonBox.ButtonRole.ResetRole)
        layout.addWidget(buttons)

        self.flag_slider.valueChanged.connect(self._flag_moved)
        self.move_slider.valueChanged.connect(self._move_moved)
        self.account.currentTextChanged.connect(self._account_changed)
        self.apply_button.clicked.connect(self._apply)
        self.reset_button.clicked.connect(self._defaults)

    def _slider(self, tip: str) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(1, 100)
        slider.setPageStep(5)
        slider.setToolTip(tip)
        return slider

    # -- data in ---------------------------------------------------------------------------

    def set_account(self, name: str, thresholds: Thresholds) -> None:
        self._saved[name] = thresholds
        if self.account.findText(name) < 0:
            self.account.addItem(name)
        if self.account.currentText() == name:
            self._account_changed(name)

    def set_scores(self, account: str, scores: Sequence[float]) -> None:
        self._scores[account] = list(scores)
        if self.account.currentText() == account:
            self.chart.set_scores(scores)
            self._update_counts()

    def _account_changed(self, name: str) -> None:
        saved = self._saved.get(name, Thresholds())
        self.chart.set_scores(self._scores.get(name, []))
        self._set_values(saved.flag, saved.move)

    def _set_values(self, flag: float, move: float) -> None:
        for slider in (self.flag_slider, self.move_slider):
            slider.blockSignals(True)
        self.flag_slider.setValue(round(flag * 100))
        self.move_slider.setValue(round(move * 100))
        for slider in (self.flag_slider, self.move_slider):
            slider.blockSignals(False)
        self._update_counts()

    # -- sliders ---------------------------------------------------------------------------

    def _flag_moved(self, value: int) -> None:
        if value > self.move_slider.value():
            self.move_slider.setValue(value)  # flagging above the move line means nothing
        self._update_counts()

    def _move_moved(self, value: int) -> None:
        if value < self.flag_slider.value():
            self.flag_slider.setValue(value)
        self._update_counts()

    def thresholds(self) -> Thresholds:
        return Thresholds(move=self.move_slider.value() / 100, flag=self.flag_slider.value() / 100)

    def counts(self) -> tuple[int, int]:
        t = self.thresholds()
        return threshold_counts(self._scores.get(self.account.currentText(), []), t.flag, t.move)

    def _update_counts(self) -> None:
        t = self.thresholds()
        self.chart.set_thresholds(t.flag, t.move)
        scores = self._scores.get(self.account.currentText(), [])
        flagged, moved = threshold_counts(scores, t.flag, t.move)
        total = len(scores)
        self.flag_label.setText(
            self.tr("%1 %: %2 of %3 recent messages would be flagged")
            .replace("%1", str(self.flag_slider.value()))
            .replace("%2", str(flagged))
            .replace("%3", str(total))
        )
        self.move_label.setText(
            self.tr("%1 %: %2 of %3 recent messages would be moved to Junk")
            .replace("%1", str(self.move_slider.value()))
            .replace("%2", str(moved))
            .replace("%3", str(total))
        )
        saved = self._saved.get(self.account.currentText(), Thresholds())
        changed = abs(saved.flag - t.flag) > 1e-9 or abs(saved.move - t.move) > 1e-9
        self.apply_button.setEnabled(changed and bool(self.account.currentText()))
        self.summary.setText(
            self.tr("Not applied yet: mail already handled keeps its place.")
            if changed
            else self.tr("These are the thresholds in use.")
        )

    def _defaults(self) -> None:
        default = Thresholds()
        self._set_values(default.flag, default.move)

    def _apply(self) -> None:
        name = self.account.currentText()
        if not name:
            return
        t = self.thresholds()
        self._saved[name] = t
        self.applied.emit(name, t)
        self._update_counts()
