"""``scaler_top``'s screen: a textual app that draws ``TopModel`` from a ``StatusFeed``.

The feed is polled without blocking several times a second on textual's own loop (a receive with
no wait costs a syscall), so there is no thread: each snapshot redraws the tables, and a timer
redraws the status line every refresh interval, so silence is noticed even when nothing arrives.
What to draw comes from ``scaler.monitor.top_model``, which is tested without a terminal.

Importing this module imports textual; ``scaler.cli.top`` catches the ImportError and says what
to install.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from scaler.config.top import TopConfig
from scaler.io.security import PeerKeys
from scaler.monitor.feed import StatusFeed
from scaler.monitor.top_model import CLIENT_COLUMNS, SORT_KEYS, TopModel

POLL_SECONDS = 0.1  # how often the feed is read; a snapshot shows at most this late
EVENT_ROWS = 5
STATE_STYLES = {"draining": "yellow", "lost": "bold red"}  # a worker row in any other state is unstyled


class _NoteHandler(logging.Handler):
    """Puts scaler's warnings (an unreadable frame, say) in the events pane, not over the screen."""

    def __init__(self, model: TopModel) -> None:
        super().__init__(logging.WARNING)
        self.model = model

    def emit(self, record: logging.LogRecord) -> None:
        self.model.note(f"{record.levelname.lower()}: {record.getMessage()}")


class TopApp(App[int]):
    """The live monitor; ``run()`` returns 0 when the user quits."""

    TITLE = "scaler_top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #header { height: 3; padding: 0 1; }
    #status { height: 1; padding: 0 1; background: $boost; }
    #status.silent { background: $error; color: $text; text-style: bold; }
    .title { height: 1; padding: 0 1; text-style: bold; }
    #clients { height: auto; max-height: 8; }
    #workers { height: 1fr; }
    #events { height: auto; max-height: 6; padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        *(Binding(entry.key, f"sort('{entry.key}')", f"sort {entry.name}") for entry in SORT_KEYS),
    ]

    def __init__(self, config: TopConfig, keys: PeerKeys | None = None) -> None:
        super().__init__()
        self.config = config
        self.model = TopModel(config.address, config.sort_by)
        self.feed = StatusFeed(config.address, keys)
        self._handler = _NoteHandler(self.model)

    def compose(self) -> ComposeResult:
        """The panes, top to bottom."""
        yield Static(id="header")
        yield Static(id="status")
        yield Static("clients", classes="title")
        yield DataTable(id="clients", cursor_type="none", zebra_stripes=True)
        yield Static("workers", classes="title")
        yield DataTable(id="workers", cursor_type="row", zebra_stripes=True)
        yield Static(id="events")
        yield Footer()

    def on_mount(self) -> None:
        """Set up the tables and the timers, and hand scaler's warnings to the events pane."""
        logging.getLogger("scaler").addHandler(self._handler)
        self.query_one("#clients", DataTable).add_columns(*CLIENT_COLUMNS)
        self._draw_tables()
        self._draw_status()
        self.set_interval(POLL_SECONDS, self._poll)
        self.set_interval(self.config.refresh_interval_seconds, self._draw_status)

    def on_unmount(self) -> None:
        """Close the feed and give the log handler back."""
        logging.getLogger("scaler").removeHandler(self._handler)
        self.feed.close()

    def action_sort(self, key: str) -> None:
        """Order the workers by the column of ``key`` (a second press flips the order)."""
        if self.model.press(key):
            self._draw_tables()

    async def action_quit(self) -> None:
        """Leave with status 0; textual restores the terminal."""
        self.exit(0)

    def _poll(self) -> None:
        if self.model.take(self.feed.receive(0)):
            self._draw_tables()
            self._draw_status()

    def _draw_status(self) -> None:
        text, silent = self.model.status(self.feed.silent_for(), self.feed.heard_any, self.config.silent_after_seconds)
        status = self.query_one("#status", Static)
        status.update(Text(text))
        status.set_class(silent, "silent")
        self.query_one("#events", Static).update(Text("\n".join(self.model.events(EVENT_ROWS))))

    def _draw_tables(self) -> None:
        self.query_one("#header", Static).update(Text("\n".join(self.model.header())))
        clients = self.query_one("#clients", DataTable)
        clients.clear()
        for row in self.model.clients():
            clients.add_row(*(Text(cell) for cell in row))
        workers = self.query_one("#workers", DataTable)
        cursor = workers.cursor_row
        workers.clear(columns=True)  # the sorted column's header shows its direction
        workers.add_columns(*self.model.worker_columns())
        for row in self.model.workers():
            style = STATE_STYLES.get(row[1], "")
            workers.add_row(*(Text(cell, style=style) for cell in row))
        if workers.row_count:
            workers.move_cursor(row=min(cursor, workers.row_count - 1), animate=False)


def run(config: TopConfig, keys: PeerKeys | None = None) -> int:
    """Show the monitor until the user quits; the exit status (0)."""
    app = TopApp(config, keys)
    result = app.run()
    return 0 if result is None else result
