"""The main window: accounts and folders, the message table, the explanation pane, settings tabs."""

from __future__ import annotations

import html

from PySide6.QtCore import QItemSelection, QModelIndex, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from spamguard.engine.session import MessageRow

from .detail import DetailPane
from .messages import ROW_ROLE, MessageFilter, MessageModel, ProbabilityDelegate
from .models_page import ModelsPage
from .thresholds import ThresholdsPanel

PLACE_ROLE = Qt.ItemDataRole.UserRole


class MainWindow(QMainWindow):
    """Shows what the engine did; asks the controller to scan, label, undo or quit."""

    scanRequested = Signal()
    addAccountRequested = Signal()
    removeAccountRequested = Signal()
    editAccountRequested = Signal()
    demoRequested = Signal()
    quitRequested = Signal()
    closedToTray = Signal()
    signInRequested = Signal(str)  # an account's "Sign in again…" link in the banner
    unlockRequested = Signal()  # the banner's "Enter the passphrase…" link (encrypted file)
    reviewRequested = Signal(str)  # an account's "Review the first scan…" link in the banner

    def __init__(self, settings: QSettings, models_page: ModelsPage, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.keep_running_in_tray = False
        self.setWindowTitle(self.tr("SpamGuard"))

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.banner.setContentsMargins(10, 6, 10, 6)
        self.banner.setAutoFillBackground(True)
        self.banner.setBackgroundRole(self.banner.backgroundRole().AlternateBase)
        self.banner.setTextInteractionFlags(
            Qt.TextInteractionFlag.LinksAccessibleByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        )
        self.banner.linkActivated.connect(self._banner_link)
        self.banner.hide()
        # First run, no account yet: the two ways forward, as buttons.
        self.first_run = QFrame()
        self.first_run.setFrameShape(QFrame.Shape.StyledPanel)
        first = QHBoxLayout(self.first_run)
        first.setContentsMargins(10, 6, 10, 6)
        self.first_run_text = QLabel(
            self.tr(
                "No mail account is set up yet. Try SpamGuard on the bundled demo mailbox "
                "(offline, nothing touches your mail), or add your account."
            )
        )
        self.first_run_text.setWordWrap(True)
        self.demo_button = QPushButton(self.tr("Try the &demo mailbox"))
        self.demo_button.setToolTip(
            self.tr("Scores 36 example messages in a temporary folder, in a few seconds")
        )
        self.first_add_button = QPushButton(self.tr("&Add account…"))
        first.addWidget(self.first_run_text, 1)
        first.addWidget(self.demo_button)
        first.addWidget(self.first_add_button)
        self.first_run.hide()
        outer.addWidget(self.first_run)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        outer.addWidget(self.tabs, 1)
        # The banner sits below the list, above the status bar: when it comes or goes only
        # the list's bottom edge moves, never the rows under the pointer (a click that lands
        # during a reconnect must act on the row the user aimed at).
        outer.addWidget(self.banner)
        self.setCentralWidget(central)

        # -- messages tab --
        messages = QWidget()
        mlayout = QVBoxLayout(messages)
        mlayout.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText(self.tr("Search subject or sender"))
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip(self.tr("Show only messages whose subject or sender contains this"))
        self.filter = QComboBox()
        self.filter.addItems(
            [self.tr("All messages"), self.tr("Flagged only"), self.tr("Moved today")]
        )
        self.filter.setToolTip(
            self.tr("Flagged only: suspicious or spam. Moved today: sent to Junk today")
        )
        self.scan_button = QPushButton(self.tr("Scan &now"))
        self.scan_button.setToolTip(self.tr("Check every account for new mail now"))
        bar.addWidget(self.search, 1)
        bar.addWidget(self.filter)
        bar.addWidget(self.scan_button)
        mlayout.addLayout(bar)

        self.places = QTreeWidget()
        self.places.setHeaderHidden(True)
        self.places.setToolTip(self.tr("Accounts and the folders SpamGuard looks after"))
        self.places.setMinimumWidth(110)
        everything = QTreeWidgetItem([self.tr("All accounts")])
        everything.setData(0, PLACE_ROLE, (None, None))
        self.places.addTopLevelItem(everything)

        self.model = MessageModel(self)
        self.proxy = MessageFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.setItemDelegateForColumn(
            MessageModel.PROBABILITY, ProbabilityDelegate(self.table)
        )
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(MessageModel.SUBJECT, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        for column, width in (
            (MessageModel.DATE, 96),
            (MessageModel.FROM, 150),
            (MessageModel.PROBABILITY, 116),
            (MessageModel.VERDICT, 96),
            (MessageModel.ACTION, 110),
            (MessageModel.STAGE, 52),
        ):
            self.table.setColumnWidth(column, width)
        self.table.sortByColumn(MessageModel.DATE, Qt.SortOrder.DescendingOrder)

        self.detail = DetailPane()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.places)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setStretchFactor(2, 1)
        self.splitter.setSizes([130, 800, 310])
        mlayout.addWidget(self.splitter, 1)
        self.tabs.addTab(messages, self.tr("&Messages"))

        self.thresholds = ThresholdsPanel()
        self.tabs.addTab(self.thresholds, self.tr("&Thresholds"))
        self.models_page = models_page
        self.tabs.addTab(models_page, self.tr("M&odels"))

        # -- status bar --
        self.status_text = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.undo_batch = QPushButton(self.tr("Undo"))
        self.undo_batch.setToolTip(self.tr("Move the last batch back to where it was"))
        self.undo_batch.hide()
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.undo_batch)
        self.statusBar().addPermanentWidget(self.progress)

        # -- menus: every action has a shortcut, so the mouse is optional --
        file_menu = self.menuBar().addMenu(self.tr("&File"))
        self.scan_action = QAction(self.tr("&Scan now"), self)
        self.scan_action.setShortcut(QKeySequence.StandardKey.Refresh)
        self.add_account_action = QAction(self.tr("&Add account…"), self)
        self.edit_account_action = QAction(self.tr("&Edit account…"), self)
        self.remove_account_action = QAction(self.tr("&Remove account…"), self)
        self.quit_action = QAction(self.tr("&Quit"), self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        for action in (
            self.scan_action,
            self.add_account_action,
            self.edit_account_action,
            self.remove_account_action,
        ):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        find = QAction(self.tr("Find"), self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.triggered.connect(lambda: self.search.setFocus())
        self.addAction(find)

        self.search.textChanged.connect(self.proxy.set_text)
        self.filter.currentIndexChanged.connect(self.proxy.set_mode)
        self.scan_button.clicked.connect(self.scanRequested)
        self.scan_action.triggered.connect(self.scanRequested)
        self.add_account_action.triggered.connect(self.addAccountRequested)
        self.remove_account_action.triggered.connect(self.removeAccountRequested)
        self.edit_account_action.triggered.connect(self.editAccountRequested)
        self.demo_button.clicked.connect(self.demoRequested)
        self.first_add_button.clicked.connect(self.addAccountRequested)
        self.quit_action.triggered.connect(self.quitRequested)
        self.places.currentItemChanged.connect(self._place_changed)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.model.modelReset.connect(self._reselect)
        self.detail.markRequested.connect(self._acting_on)
        self.detail.undoRequested.connect(self._acting_on)
        self.setTabOrder(self.search, self.filter)
        self.setTabOrder(self.filter, self.scan_button)
        self.setTabOrder(self.scan_button, self.places)
        self.setTabOrder(self.places, self.table)
        self.setTabOrder(self.table, self.detail.spam_button)
        self.resize(1240, 720)
        self.restore()

    # -- accounts and folders --------------------------------------------------------------

    def add_account(self, name: str, folders: list[str]) -> None:
        root = self.places.topLevelItem(0)
        for i in range(root.childCount()):
            if root.child(i).text(0) == name:
                return
        item = QTreeWidgetItem([name])
        item.setData(0, PLACE_ROLE, (name, None))
        for folder in folders:
            child = QTreeWidgetItem([folder])
            child.setData(0, PLACE_ROLE, (name, folder))
            item.addChild(child)
        root.addChild(item)
        root.setExpanded(True)
        item.setExpanded(True)
        if self.places.currentItem() is None:
            self.places.setCurrentItem(root)

    def remove_account_place(self, name: str) -> None:
        """Take the account and its folders out of the side bar, and its rows out of the list."""
        root = self.places.topLevelItem(0)
        for i in range(root.childCount()):
            if root.child(i).text(0) == name:
                if self.places.currentItem() in (root.child(i), *_children(root.child(i))):
                    self.places.setCurrentItem(root)
                root.takeChild(i)
                break
        self.model.set_rows([r for r in self.model.rows() if r.account != name])

    def _place_changed(self, current: QTreeWidgetItem | None) -> None:
        account, folder = current.data(0, PLACE_ROLE) if current else (None, None)
        self.proxy.set_place(account, folder)

    # -- selection and detail --------------------------------------------------------------

    def selected_row(self) -> MessageRow | None:
        indexes = self.table.selectionModel().selectedRows()
        if not indexes:
            return None
        row = indexes[0].data(ROW_ROLE)
        return row if isinstance(row, MessageRow) else None

    def _selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        row = self.selected_row()
        if row is not None and self.proxy.pinned not in (None, row.key):
            self.proxy.pin(None)  # another message picked: the acted-on one may leave the view
        self.detail.show_row(row)

    def _acting_on(self, key: tuple[str, str, str], *_: object) -> None:
        """Spam, Not spam or Undo was pressed: keep this message in view and selected, so
        the selection never slides onto the next row when the action moves it elsewhere."""
        self.proxy.pin(key)

    def _reselect(self) -> None:
        self.detail.show_row(self.selected_row())

    def select_key(self, key: tuple[str, str, str]) -> bool:
        for r in range(self.proxy.rowCount()):
            index = self.proxy.index(r, 0)
            row = index.data(ROW_ROLE)
            if isinstance(row, MessageRow) and row.key == key:
                self.table.selectRow(r)
                self.table.scrollTo(index)
                return True
        return False

    def row_updated(self, row: MessageRow) -> None:
        current = self.detail.row
        if current is not None and current.key == row.key:
            self.detail.show_row(row)

    def current_index(self) -> QModelIndex:
        return self.table.currentIndex()

    # -- banner and status -----------------------------------------------------------------

    def show_banner(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.setToolTip("")
        self.banner.setVisible(bool(text))

    def show_sign_in_banner(self, account: str, detail: str) -> None:
        """Says ``account`` needs a browser sign-in, with a link that starts it; the engine's
        message (which names the command-line way) is the tooltip."""
        link = f'<a href="signin:{html.escape(account, quote=True)}">'
        self.banner.setText(
            html.escape(
                self.tr("%1 can no longer be read: its sign-in expired or was withdrawn.").replace(
                    "%1", account
                ),
                quote=False,
            )
            + f" {link}"
            + self.tr("Sign in again…")
            + "</a>"
        )
        self.banner.setToolTip(detail)
        self.banner.setVisible(True)

    def show_unlock_banner(self, accounts: list[str]) -> None:
        """The encrypted password file is locked: these accounts wait for its passphrase."""
        self.banner.setText(
            html.escape(
                self.tr(
                    "%1 waits for the passphrase of SpamGuard's encrypted password file."
                ).replace("%1", ", ".join(accounts)),
                quote=False,
            )
            + ' <a href="unlock:">'
            + self.tr("Enter the passphrase…")
            + "</a>"
        )
        self.banner.setToolTip("")
        self.banner.setVisible(True)

    def show_review_banner(self, account: str) -> None:
        """``account``'s first scan waits for the user's review: nothing moves until then."""
        self.banner.setText(
            html.escape(
                self.tr(
                    "SpamGuard has looked at %1 and changed nothing yet: it waits for your choice."
                ).replace("%1", account),
                quote=False,
            )
            + f' <a href="review:{html.escape(account, quote=True)}">'
            + self.tr("Review the first scan…")
            + "</a>"
        )
        self.banner.setToolTip("")
        self.banner.setVisible(True)

    def _banner_link(self, href: str) -> None:
        if href.startswith("signin:"):
            self.signInRequested.emit(href.removeprefix("signin:"))
        elif href.startswith("review:"):
            self.reviewRequested.emit(href.removeprefix("review:"))
        elif href == "unlock:":
            self.unlockRequested.emit()

    def show_first_run(self, show: bool) -> None:
        self.first_run.setVisible(show)
        if show:
            self.demo_button.setFocus()

    def show_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setVisible(total > 0 and done < total)
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.status_text.setText(text)

    # -- persistence -----------------------------------------------------------------------

    def save(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("window/header", self.table.horizontalHeader().saveState())
        s.setValue("window/filter", self.filter.currentIndex())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.sync()

    def restore(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitter = s.value("window/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)
        header = s.value("window/header")
        if header is not None:
            self.table.horizontalHeader().restoreState(header)
        self.filter.setCurrentIndex(int(s.value("window/filter", 0)))
        self.tabs.setCurrentIndex(int(s.value("window/tab", 0)))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save()
        if self.keep_running_in_tray:
            # The tray keeps watching mail; closing the window only hides it.
            event.ignore()
            self.hide()
            self.closedToTray.emit()
            return
        event.accept()
        self.quitRequested.emit()


def _children(item: QTreeWidgetItem) -> list[QTreeWidgetItem]:
    return [item.child(i) for i in range(item.childCount())]
