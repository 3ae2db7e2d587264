"""The explanation pane: score, what was done, the evidence, the nearest known messages, buttons."""

from __future__ import annotations

import html
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from spamguard.engine.session import MessageRow
from spamguard.learn.own_neighbours import is_own
from spamguard.llm.explain import NEIGHBOUR_MIN_SIMILARITY, meaningful_neighbours, plain_reasons
from spamguard.scoring.base import Evidence, Neighbour

from .messages import SPAM_COLOUR, percent, verdict_colour


class _WeightBar(QWidget):
    """How far one piece of evidence pushed: right (towards spam) or left (towards not spam)."""

    def __init__(self, weight: float, scale: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.weight, self.scale = weight, max(scale, 1e-6)
        self.setFixedSize(90, 12)

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        mid = self.width() // 2
        axis = QColor(self.palette().color(QPalette.ColorRole.Mid))
        painter.setPen(axis)
        painter.drawLine(mid, 0, mid, self.height())
        length = round((self.width() / 2 - 2) * min(1.0, abs(self.weight) / self.scale))
        colour = SPAM_COLOUR if self.weight > 0 else QColor("#2e7d32")
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        if self.weight > 0:
            painter.drawRoundedRect(mid + 1, 3, length, self.height() - 6, 2, 2)
        else:
            painter.drawRoundedRect(mid - 1 - length, 3, length, self.height() - 6, 2, 2)
        painter.end()


class DetailPane(QWidget):
    """Shows one message; its buttons ask the window to label or undo it."""

    markRequested = Signal(object, str)  # row key, "spam" or "ham"
    undoRequested = Signal(object)  # row key
    rationaleRequested = Signal(object)  # row key
    neighboursWanted = Signal(object)  # row key: scored by the cheap stage, none kept

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row: MessageRow | None = None
        # The language model's finished text per message and what had been done with it, so
        # it is shown again when the message is selected again (the engine keeps it too).
        self._written: dict[object, str] = {}
        self.setMinimumWidth(300)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 8, 12, 8)

        self.title = QLabel()
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.meta = QLabel()
        self.meta.setWordWrap(True)
        self.meta.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.score = QLabel()
        self.score.setWordWrap(True)
        outer.addWidget(self.title)
        outer.addWidget(self.meta)
        outer.addWidget(self.score)

        buttons = QHBoxLayout()
        self.spam_button = QPushButton(self.tr("&Spam"))
        self.spam_button.setToolTip(
            self.tr("Move this message to Junk and teach SpamGuard that it is spam")
        )
        self.ham_button = QPushButton(self.tr("&Not spam"))
        self.ham_button.setToolTip(
            self.tr(
                "Put this message back where it was, remove SpamGuard's flag, and never "
                "move it again"
            )
        )
        self.undo_button = QPushButton(self.tr("&Undo"))
        self.undo_button.setToolTip(self.tr("Undo the last thing done to this message"))
        for button in (self.spam_button, self.ham_button, self.undo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        self.spam_button.clicked.connect(lambda: self._mark("spam"))
        self.ham_button.clicked.connect(lambda: self._mark("ham"))
        self.undo_button.clicked.connect(self._undo)

        self.status = QLabel()
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        # The pane's text wraps to its width; nothing in it is worth scrolling sideways for.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.body = QVBoxLayout(body)
        self.body.setContentsMargins(0, 4, 0, 0)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.evidence_title = self._heading(self.tr("Why"))
        # The reasons in sentences first; the bars below show how much each one weighed.
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)  # may quote the mail's words
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.legend = self._note(
            self.tr(
                "Each bar is one reason. A bar to the right (red) pushed the score towards "
                "spam, to the left (green) towards not spam; the longer the bar, the harder "
                "it pushed, compared with the strongest reason here."
            )
        )
        self.evidence_box = QVBoxLayout()
        self.neighbour_title = self._heading(self.tr("Nearest known messages"))
        self.neighbour_box = QVBoxLayout()
        self.body.addWidget(self.evidence_title)
        self.body.addWidget(self.summary)
        self.body.addWidget(self.legend)
        self.body.addLayout(self.evidence_box)
        self.body.addWidget(self.neighbour_title)
        self.body.addLayout(self.neighbour_box)
        self.llm_title = self._heading(self.tr("In the local language model's words"))
        self.llm_button = QPushButton(self.tr("Ask the &language model"))
        self.llm_button.setToolTip(
            self.tr(
                "A short explanation written by the local language model from the reasons "
                "above. It never changes the score or what is done with the message."
            )
        )
        self.llm_button.clicked.connect(self._ask_llm)
        self.llm_text = QLabel()
        self.llm_text.setWordWrap(True)
        self.llm_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body.addWidget(self.llm_title)
        row = QHBoxLayout()
        row.addWidget(self.llm_button)
        row.addStretch(1)
        self.body.addLayout(row)
        self.body.addWidget(self.llm_text)
        self.body.addStretch(1)
        self.show_row(None)

    def _heading(self, text: str) -> QLabel:
        label = QLabel(text)
        font = label.font()
        font.setBold(True)
        label.setFont(font)
        label.setContentsMargins(0, 8, 0, 2)
        return label

    # -- content ---------------------------------------------------------------------------

    def show_row(self, row: MessageRow | None) -> None:
        self.row = row
        self.status.clear()
        self._clear(self.evidence_box)
        self._clear(self.neighbour_box)
        has = row is not None
        for widget in (self.spam_button, self.ham_button, self.undo_button, self.llm_button):
            widget.setEnabled(has)
        self.evidence_title.setVisible(has)
        self.summary.clear()
        self.summary.setVisible(has)
        self.legend.setVisible(False)
        self.neighbour_title.setVisible(has)
        self.llm_title.setVisible(has)
        self.llm_button.setVisible(has)
        self.llm_text.clear()
        if row is not None:
            self.llm_text.setText(self._written.get(_written_key(row), ""))
        if row is None:
            self.title.setText(self.tr("No message selected"))
            self.meta.setText(
                self.tr("Pick a message in the list to see its score and the reasons for it.")
            )
            self.score.clear()
            return
        self.title.setText(row.subject or self.tr("(no subject)"))
        when = datetime.fromtimestamp(row.date).strftime("%a %d %b %Y %H:%M") if row.date else ""
        self.meta.setText(
            self.tr("From %1 · %2 · now in %3")
            .replace("%1", html.escape(row.from_addr or "?"))
            .replace("%2", when or self.tr("no date"))
            .replace("%3", row.location)
        )
        colour = verdict_colour(row.verdict, self.palette()).name()
        verdicts = {"spam": self.tr("spam"), "flag": self.tr("suspicious")}
        verdict = verdicts.get(row.verdict, self.tr("not spam"))
        done = self._done_text(row)
        self.score.setText(
            f'<span style="font-size:x-large; color:{colour}"><b>{percent(row.p_spam)}</b>'
            f"</span> "
            + html.escape(self.tr("likely to be spam: %1").replace("%1", verdict))
            + (f"<br>{html.escape(done)}" if done else "")
        )
        self.spam_button.setEnabled(row.label != "spam" or row.location == row.folder)
        self.undo_button.setEnabled(row.action in ("moved to Junk", "flagged"))
        self._fill_evidence(row.evidence)
        if row.neighbours:
            self.show_neighbours(row.neighbours)
        else:
            # The cascade's cheap stage, or an earlier session, left none.
            self.neighbour_box.addWidget(self._note(self.tr("Looking for similar known mail…")))
        # The row's neighbours are the model's only: the full head (a fraction of a second,
        # in the account's worker) adds the user's own labelled mail, shown first.
        self.neighboursWanted.emit(row.key)

    def _done_text(self, row: MessageRow) -> str:
        parts = []
        # Who moved it follows the journal (and, for another client, the label its move
        # taught), as the message list's Action column does.
        movers = {
            "you": self.tr("You moved it to Junk."),
            "another client": self.tr("Another mail client moved it to Junk."),
        }
        if row.moved_by in movers and row.action in ("moved to Junk", ""):
            parts.append(movers[row.moved_by])
        elif row.action:
            parts.append(
                {
                    "moved to Junk": self.tr("SpamGuard moved it to Junk."),
                    "flagged": self.tr("SpamGuard flagged it and left it in %1.").replace(
                        "%1", row.location
                    ),
                    "moved back": self.tr("It was moved back to %1.").replace("%1", row.location),
                    "unflagged": self.tr("Its flag was removed."),
                }.get(row.action, row.action)
            )
        if row.protected:
            parts.append(self.tr("Never moved to Junk: %1.").replace("%1", row.protected))
        if row.label:
            parts.append(
                self.tr("You marked it as spam.")
                if row.label == "spam"
                else self.tr("You marked it as not spam.")
            )
        return " ".join(parts)

    def _fill_evidence(self, evidence: tuple[Evidence, ...]) -> None:
        reasons = plain_reasons(evidence)
        if not reasons:
            self.summary.setText(self.tr("The model gave no reasons."))
            return
        self.summary.setText(" ".join(r.sentence for r in reasons))
        self.legend.setVisible(True)
        scale = max(abs(r.weight) for r in reasons)
        for reason in reasons:
            line = QHBoxLayout()
            bar = _WeightBar(reason.weight, scale)
            direction = (
                self.tr("towards spam") if reason.weight > 0 else self.tr("towards not spam")
            )
            tip = (
                self.tr("%1 It pushed the score %2 (strength %3 of %4).")
                .replace("%1", reason.sentence)
                .replace("%2", direction)
                .replace("%3", f"{abs(reason.weight):.1f}")
                .replace("%4", f"{scale:.1f}")
            )
            bar.setToolTip(tip)
            line.addWidget(bar)
            # One line each, never wrapped: a wrapped label beside a fixed-height bar was
            # given one line's height and clipped. A long one is cut short; the tooltip and
            # the sentences above say it in full.
            text = QLabel()
            text.setTextFormat(Qt.TextFormat.PlainText)  # mail text is never markup
            metrics = text.fontMetrics()
            text.setText(metrics.elidedText(reason.label, Qt.TextElideMode.ElideRight, 190))
            text.setMinimumHeight(metrics.height() + 2)
            text.setToolTip(tip)
            text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            # Its elided text must not set the pane's minimum width: in a narrow pane the
            # whole body grew wider than the view and every sentence was cut at the edge.
            text.setMinimumWidth(1)
            line.addWidget(text, 1)
            self.evidence_box.addLayout(line)

    def show_neighbours(self, neighbours: tuple[Neighbour, ...]) -> None:
        self._clear(self.neighbour_box)
        if not neighbours:
            self.neighbour_box.addWidget(
                self._note(
                    self.tr(
                        "None to show: the active model keeps no labelled examples to compare with."
                    )
                )
            )
            return
        near = meaningful_neighbours(neighbours)
        if not near:
            self.neighbour_box.addWidget(
                self._note(
                    self.tr(
                        "None close enough to mean anything: known messages are listed here "
                        "only when they are at least %1 % alike."
                    ).replace("%1", f"{NEIGHBOUR_MIN_SIMILARITY * 100:.0f}")
                )
            )
            return
        # The user's own labelled mail first: it means more to them than a corpus message.
        for n in sorted(near, key=lambda n: not is_own(n)):
            label = self.tr("spam") if n.label == "spam" else self.tr("not spam")
            if is_own(n):
                label = self.tr("%1 in your mail").replace("%1", label)
            colour = SPAM_COLOUR.name() if n.label == "spam" else "#2e7d32"
            text = QLabel(
                f'<span style="color:{colour}">●</span> {html.escape(n.subject)} '
                f"<small>({html.escape(label)}, {n.similarity * 100:.0f} % alike)</small>"
            )
            text.setWordWrap(True)
            self.neighbour_box.addWidget(text)

    def _note(self, text: str) -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        return label

    @staticmethod
    def _clear(layout: QVBoxLayout | QHBoxLayout) -> None:
        while layout.count():
            item = layout.takeAt(0)
            widget = item.widget()
            if widget is not None:
                widget.hide()
                widget.deleteLater()
            elif item.layout() is not None:
                DetailPane._clear(item.layout())  # type: ignore[arg-type]

    # -- buttons ---------------------------------------------------------------------------

    def _mark(self, label: str) -> None:
        if self.row is None:
            return
        self.status.setText(self.tr("Working…"))
        self.markRequested.emit(self.row.key, label)

    def _undo(self) -> None:
        if self.row is None:
            return
        self.status.setText(self.tr("Working…"))
        self.undoRequested.emit(self.row.key)

    def _ask_llm(self) -> None:
        if self.row is not None:
            self.llm_button.setEnabled(False)
            self.llm_text.setText(self.tr("Writing…"))
            self.rationaleRequested.emit(self.row.key)

    def append_rationale(self, key: object, piece: str) -> None:
        """The next piece of the language model's text, if that message is still shown."""
        if self.row is None or self.row.key != key:
            return
        if not self.llm_button.isEnabled() and self.llm_text.text() == self.tr("Writing…"):
            self.llm_text.clear()
        self.llm_text.setText(self.llm_text.text() + piece)

    def show_kept_rationale(self, key: object, text: str) -> None:
        """The explanation kept for a message from an earlier request, if that message is
        still shown and nothing is being written for it now."""
        if self.row is None or self.row.key != key or not self.llm_button.isEnabled():
            return
        if not self.llm_text.text():
            self.llm_text.setText(text)
            self._written[_written_key(self.row)] = text

    def rationale_done(self, key: object) -> None:
        if self.row is not None and self.row.key == key:
            self.llm_button.setEnabled(True)
            if self.llm_text.text() == self.tr("Writing…"):
                self.llm_text.clear()
            elif self.llm_text.text():
                self._written[_written_key(self.row)] = self.llm_text.text()

    def show_error(self, text: str) -> None:
        self.status.setText(f'<span style="color:{SPAM_COLOUR.name()}">{html.escape(text)}</span>')


def _written_key(row: MessageRow) -> object:
    """A message as an explanation was written for it: another action writes a new one."""
    return (row.key, row.action, row.location)
