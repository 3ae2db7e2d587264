"""The first-scan review: what SpamGuard would do with a new account's mail, before it does it.

The account's runner scanned the backlog as a dry run (`spamguard.engine.first_scan`); this dialog
shows the result and sends back the user's choice. Nothing on the server has changed while it
is open; closing it ("Decide later") changes nothing either, and the banner brings it back.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from spamguard.engine.first_scan import Choice, Review
from spamguard.verdict import Thresholds

from .messages import percent


class FirstScanDialog(QDialog):
    """The review of one account's first scan: the list, Apply, Apply moves only above a
    score, Flag only, and first-sync learning offered on the same page."""

    chosen = Signal(object)  # a `first_scan.Choice`
    learnRequested = Signal()  # learn from the account's existing mail, then review again

    def __init__(self, review: Review, thresholds: Thresholds, parent: QWidget | None = None):
        super().__init__(parent)
        self.account = review.account
        self.review = review
        self.setWindowTitle(self.tr("First look at %1").replace("%1", review.account))
        layout = QVBoxLayout(self)

        self.headline = QLabel()
        self.headline.setWordWrap(True)
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.headline.setFont(font)
        layout.addWidget(self.headline)
        self.note = QLabel(
            self.tr(
                "Nothing has changed on the server yet. Choose what SpamGuard does with this "
                "mail; new mail after that follows your thresholds (Settings)."
            )
        )
        self.note.setWordWrap(True)
        layout.addWidget(self.note)

        self.list = QTreeWidget()
        self.list.setRootIsDecorated(False)
        self.list.setAlternatingRowColors(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.list.setHeaderLabels(
            [self.tr("Spam"), self.tr("Would"), self.tr("From"), self.tr("Subject")]
        )
        header = self.list.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.list.setColumnWidth(2, 200)
        layout.addWidget(self.list, 1)

        # The three ways to go on, each saying what it will do.
        self.apply_button = QPushButton()
        self.apply_button.clicked.connect(lambda: self._choose(Choice("apply")))
        self.above_button = QPushButton(self.tr("Apply, moving only at or above"))
        self.above = QSpinBox()
        self.above.setSuffix(" %")
        low = min(100, max(1, math.ceil(thresholds.move * 100 - 1e-9)))
        self.above.setRange(low, 100)
        self.above.setValue(min(100, max(low, 97)))
        self.above_counts = QLabel()
        self.above.valueChanged.connect(self._update_counts)
        self.above_button.clicked.connect(lambda: self._choose(self.above_choice()))
        self.flag_button = QPushButton()
        self.flag_button.clicked.connect(lambda: self._choose(Choice("flag")))
        self.later_button = QPushButton(self.tr("Decide &later"))
        self.later_button.setToolTip(
            self.tr("Close this; nothing is moved or flagged until you choose.")
        )
        self.later_button.clicked.connect(self.reject)
        # No default button: Enter must not apply moves to somebody's mail by accident.
        for button in (self.apply_button, self.above_button, self.flag_button, self.later_button):
            button.setAutoDefault(False)
            button.setDefault(False)

        row = QHBoxLayout()
        row.addWidget(self.apply_button)
        row.addStretch(1)
        row.addWidget(self.flag_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.above_button)
        row.addWidget(self.above)
        row.addWidget(self.above_counts, 1)
        layout.addLayout(row)

        # First-sync learning, offered here: the review is made again with what it learned.
        box = QFrame()
        box.setFrameShape(QFrame.Shape.StyledPanel)
        inner = QHBoxLayout(box)
        self.learn_text = QLabel(
            self.tr(
                "Teach SpamGuard your mail first: it reads this account's Junk folder as spam "
                "and mail you have read as not spam (nothing is moved or marked), then looks "
                "again."
            )
        )
        self.learn_text.setWordWrap(True)
        inner.addWidget(self.learn_text, 1)
        self.learn_button = QPushButton(self.tr("Learn &first…"))
        self.learn_button.clicked.connect(self._learn)
        self.learn_button.setAutoDefault(False)
        inner.addWidget(self.learn_button)
        layout.addWidget(box)

        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.later_button)
        layout.addLayout(bottom)
        self.set_review(review)
        self.resize(720, 520)

    # -- the app talks to these -----------------------------------------------------------

    def set_review(self, review: Review) -> None:
        """Show ``review`` (again, after learning): the list, the counts, the buttons."""
        self.review = review
        self.headline.setText(review.summary() + ".")
        self.list.clear()
        rows = []
        move, flag = self.tr("Move to Junk"), self.tr("Flag")
        for item in review.acted:
            would = move if item.action == "move" else flag
            row = QTreeWidgetItem([percent(item.p_spam), would, item.from_addr, item.subject])
            row.setTextAlignment(0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            tip = item.plan + (f"\n{item.protected}" if item.protected else "")
            for column in range(4):
                row.setToolTip(column, tip)
            rows.append(row)
        # One insertion for the whole list: after the first sync of a big folder it holds
        # thousands of rows, and one view update per row held up the event loop.
        self.list.addTopLevelItems(rows)
        self.apply_button.setText(
            self.tr("&Apply: move %1, flag %2")
            .replace("%1", str(review.moves))
            .replace("%2", str(review.flags))
        )
        self.flag_button.setText(
            self.tr("&Flag only: flag %1, move nothing").replace(
                "%1", str(sum(review.counts(Choice("flag"))))
            )
        )
        self.above_button.setEnabled(review.moves > 0)
        self.above.setEnabled(review.moves > 0)
        self._update_counts()
        self.set_busy("")

    def set_busy(self, text: str) -> None:
        """While learning or looking again: say so, and take no choice until it is done."""
        busy = bool(text)
        for button in (self.apply_button, self.above_button, self.flag_button, self.learn_button):
            button.setEnabled(not busy and (button is not self.above_button or self.review.moves))
        self.above.setEnabled(not busy and self.review.moves > 0)
        self.note.setText(
            text
            or self.tr(
                "Nothing has changed on the server yet. Choose what SpamGuard does with this "
                "mail; new mail after that follows your thresholds (Settings)."
            )
        )

    def above_choice(self) -> Choice:
        return Choice("above", self.above.value() / 100)

    # -- inside --------------------------------------------------------------------------

    def _update_counts(self) -> None:
        moved, flagged = self.review.counts(self.above_choice())
        self.above_counts.setText(
            self.tr("move %1, flag %2").replace("%1", str(moved)).replace("%2", str(flagged))
        )

    def _choose(self, choice: Choice) -> None:
        self.chosen.emit(choice)
        self.accept()

    def _learn(self) -> None:
        self.set_busy(
            self.tr("Learning from your existing mail; this list is made again when it is done.")
        )
        self.learnRequested.emit()
