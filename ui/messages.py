"""The message table: model, filter/sort proxy and the probability bar delegate."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from spamguard.engine.session import MessageRow, today_start

SORT_ROLE = Qt.ItemDataRole.UserRole
ROW_ROLE = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex

# Muted colours that read on light and dark palettes alike.
SPAM_COLOUR = QColor("#c0392b")
FLAG_COLOUR = QColor("#d68910")


def percent(p: float) -> str:
    """A probability as a whole percentage, rounded down: 0.898 shows as 89 %, never as the
    90 % of a move threshold it did not reach."""
    return f"{math.floor(p * 100 + 1e-9)} %"


def verdict_colour(verdict: str, palette: QPalette) -> QColor:
    if verdict == "spam":
        return SPAM_COLOUR
    if verdict == "flag":
        return FLAG_COLOUR
    return palette.color(QPalette.ColorRole.Mid)


class MessageModel(QAbstractTableModel):
    """Rows from the engine, keyed by (account, Message-ID, content hash)."""

    DATE, FROM, SUBJECT, PROBABILITY, VERDICT, ACTION, STAGE = range(7)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[MessageRow] = []
        self._index: dict[tuple[str, str, str], int] = {}
        self._headers = [
            self.tr("Date"),
            self.tr("From"),
            self.tr("Subject"),
            self.tr("Spam probability"),
            self.tr("Verdict"),
            self.tr("Action"),
            self.tr("Stage"),
        ]

    # -- content ---------------------------------------------------------------------------

    def rows(self) -> list[MessageRow]:
        return list(self._rows)

    def row_at(self, row: int) -> MessageRow:
        return self._rows[row]

    def set_rows(self, rows: list[MessageRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self._index = {r.key: i for i, r in enumerate(self._rows)}
        self.endResetModel()

    def upsert(self, rows: list[MessageRow] | tuple[MessageRow, ...]) -> None:
        """Add new rows at the end and replace known ones in place (keeps the selection)."""
        new = []
        for row in rows:
            at = self._index.get(row.key)
            if at is None:
                new.append(row)
            else:
                self._rows[at] = row
                self.dataChanged.emit(self.index(at, 0), self.index(at, len(self._headers) - 1))
        if new:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
            for offset, row in enumerate(new):
                self._index[row.key] = start + offset
                self._rows.append(row)
            self.endInsertRows()

    # -- Qt model --------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._headers)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self._headers[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == SORT_ROLE:
            return self._sort_value(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == self.PROBABILITY:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, row: MessageRow, col: int) -> str:
        if col == self.DATE:
            if row.date is None:
                return "—"
            when = datetime.fromtimestamp(row.date)
            same_year = when.year == datetime.now().year
            return when.strftime("%d %b %H:%M" if same_year else "%d %b %Y")
        if col == self.FROM:
            return row.from_addr
        if col == self.SUBJECT:
            return row.subject or self.tr("(no subject)")
        if col == self.PROBABILITY:
            return percent(row.p_spam)
        if col == self.VERDICT:
            return self.verdict_text(row)
        if col == self.ACTION:
            return self.action_text(row)
        return self.stage_text(row)

    def stage_text(self, row: MessageRow) -> str:
        """Which part of the model decided, in a word: the cascade's names are for logs."""
        words = {
            "stage0-cheap": self.tr("quick"),
            "stage1-head": self.tr("full"),
            "head": self.tr("full"),
            "stage2-llm": self.tr("LLM"),
            "llm": self.tr("LLM"),
        }
        return words.get(row.stage, row.stage)

    def verdict_text(self, row: MessageRow) -> str:
        if row.label == "spam":
            return self.tr("Spam (you)")
        if row.label == "ham":
            return self.tr("Not spam (you)")
        return {"spam": self.tr("Spam"), "flag": self.tr("Suspicious")}.get(
            row.verdict, self.tr("Not spam")
        )

    def action_text(self, row: MessageRow) -> str:
        if row.action == "moved to Junk" and row.moved_by == "you":
            return self.tr("Moved to Junk by you")
        if not row.action and row.moved_by == "another client":
            return self.tr("Moved to %1 by another client").replace("%1", row.location)
        texts = {
            "moved to Junk": self.tr("Moved to Junk"),
            "flagged": self.tr("Flagged"),
            "moved back": self.tr("Moved back"),
            "unflagged": self.tr("Flag removed"),
            "pending": self.tr("Pending"),
            "": self.tr("Left in %1").replace("%1", row.location),
        }
        return texts.get(row.action, row.action)

    def provenance(self, row: MessageRow) -> str:
        """Who moved it, as the journal (and a label another client taught) says."""
        where = row.location
        if row.moved_by == "you":
            return self.tr("You moved it to %1.").replace("%1", where)
        if row.moved_by == "SpamGuard":
            text = self.tr("SpamGuard moved it to %1.").replace("%1", where)
            return f"{text} {row.plan}" if row.plan else text
        if row.moved_by == "another client":
            return self.tr("Another mail client moved it to %1.").replace("%1", where)
        return ""

    def _sort_value(self, row: MessageRow, col: int) -> Any:
        if col == self.DATE:
            return row.date or 0.0
        if col == self.PROBABILITY:
            return row.p_spam
        if col == self.VERDICT:
            return {"ham": 0, "flag": 1, "spam": 2}.get(row.verdict, 0)
        return self._display(row, col).lower()

    def _tooltip(self, row: MessageRow, col: int) -> str:
        if col == self.PROBABILITY:
            return self.tr("The model's estimate that this is spam: %1 %").replace(
                "%1", f"{row.p_spam * 100:.1f}"
            )
        if col == self.ACTION:
            return self.provenance(row) or row.plan or self._display(row, col)
        if col == self.STAGE:
            if row.stage == "stage0-cheap":
                return self.tr(
                    "Clear enough for the quick stage (words, headers and signals, without "
                    "the sentence encoder) of model %1"
                ).replace("%1", row.model_version)
            return (
                self.tr("Scored by the %1 stage of model %2")
                .replace("%1", self.stage_text(row))
                .replace("%2", row.model_version)
            )
        return self._display(row, col)


class MessageFilter(QSortFilterProxyModel):
    """Search text, "flagged only" / "moved today", and the account/folder chosen on the left."""

    ALL, FLAGGED, MOVED_TODAY = range(3)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self._mode = self.ALL
        self._text = ""
        self._account: str | None = None
        self._folder: str | None = None
        # The message just acted on stays in view (and selected) even when the action takes
        # it out of the shown folder or filter, until the user picks another row.
        self._pinned: tuple[str, str, str] | None = None

    def pin(self, key: tuple[str, str, str] | None) -> None:
        if key == self._pinned:
            return
        self.beginFilterChange()
        self._pinned = key
        self.endFilterChange()

    @property
    def pinned(self) -> tuple[str, str, str] | None:
        return self._pinned

    def set_mode(self, mode: int) -> None:
        self.beginFilterChange()
        self._mode = mode
        self.endFilterChange()

    @property
    def mode(self) -> int:
        return self._mode

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self._text = text.strip().lower()
        self.endFilterChange()

    def set_place(self, account: str | None, folder: str | None) -> None:
        self.beginFilterChange()
        self._account, self._folder = account, folder
        self.endFilterChange()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        assert isinstance(model, MessageModel)
        row = model.row_at(source_row)
        if self._pinned is not None and row.key == self._pinned:
            return True
        if self._account and row.account != self._account:
            return False
        if self._folder and row.location != self._folder:
            return False
        if self._mode == self.FLAGGED and row.verdict not in ("flag", "spam"):
            return False
        if self._mode == self.MOVED_TODAY and not (
            row.moved and (row.action_at or 0) >= today_start(time.time())
        ):
            return False
        if self._text:
            haystack = f"{row.subject}\n{row.from_addr}".lower()
            return self._text in haystack
        return True


class ProbabilityDelegate(QStyledItemDelegate):
    """A thin bar coloured by verdict, with the number beside it."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = index.data(ROW_ROLE)
        if not isinstance(row, MessageRow):
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        text = opt.text
        opt.text = ""
        style = opt.widget.style() if opt.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        rect = opt.rect.adjusted(6, 0, -6, 0)
        metrics = opt.fontMetrics
        text_width = metrics.horizontalAdvance("100 %") + 6
        bar = QRect(rect.left(), rect.center().y() - 3, max(10, rect.width() - text_width), 6)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        track = QColor(opt.palette.color(QPalette.ColorRole.Mid))
        track.setAlpha(70)
        painter.setBrush(track)
        painter.drawRoundedRect(bar, 3, 3)
        filled = QRect(bar)
        filled.setWidth(max(2, round(bar.width() * row.p_spam)))
        painter.setBrush(verdict_colour(row.verdict, opt.palette))
        painter.drawRoundedRect(filled, 3, 3)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        painter.setPen(
            opt.palette.color(
                QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
            )
        )
        painter.drawText(
            QRect(bar.right() + 4, rect.top(), text_width, rect.height()),
            int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
            text,
        )
        painter.restore()
