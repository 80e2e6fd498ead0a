"""Run the dashboard: a thread reads the status feed into the ``Dashboard``, uvicorn serves the app.

The feed's ZeroMQ socket lives in the reader thread only (ZeroMQ sockets are not thread-safe);
request handlers read the model under the dashboard's lock. Ctrl-C or SIGTERM (uvicorn's handlers)
stop the server; the reader then stops and closes the feed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import uvicorn

from scaler.config.ui import UIConfig, split_host_port
from scaler.io.security import PeerKeys
from scaler.monitor.feed import StatusFeed
from scaler.ui.app import Dashboard, create_app
from scaler.ui.model import DashboardModel

logger = logging.getLogger(__name__)

_RECEIVE_SECONDS = 0.25  # how often the reader looks at the stop flag and the parent while the feed is quiet


class FeedReader(threading.Thread):
    """Reads ``feed`` into ``dashboard`` until ``dashboard.stopping`` is set; then closes the feed."""

    def __init__(self, feed: StatusFeed, dashboard: Dashboard, on_parent_exit: threading.Event | None = None):
        super().__init__(name="scaler-ui-feed", daemon=True)
        self._feed = feed
        self._dashboard = dashboard
        self._parent = os.getppid()
        self._on_parent_exit = on_parent_exit  # set when the parent process is gone (--exit-with-parent)

    def run(self) -> None:
        """The thread's loop."""
        try:
            while not self._dashboard.stopping.is_set():
                messages = self._feed.receive(_RECEIVE_SECONDS)
                if messages:
                    self._dashboard.apply(messages)
                if self._on_parent_exit is not None and os.getppid() != self._parent:
                    logger.warning("scaler_ui: its parent exited; stopping")
                    self._on_parent_exit.set()
                    return
        finally:
            self._feed.close()


def serve(config: UIConfig, keys: PeerKeys | None = None) -> None:
    """Serve the dashboard as ``config`` says until SIGINT/SIGTERM (or the parent's exit, if asked)."""
    host, port = split_host_port(config.ui_address)
    dashboard = Dashboard(
        DashboardModel(tasks_ring_size=config.tasks_ring_size, history_seconds=config.history_seconds),
        feed_silent_seconds=config.feed_silent_seconds,
    )
    app = create_app(dashboard, token=config.ui_token)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,  # open live-update streams end then
        )
    )
    parent_gone = threading.Event() if config.exit_with_parent else None
    reader = FeedReader(StatusFeed(config.address, keys), dashboard, parent_gone)
    reader.start()
    if parent_gone is not None:
        threading.Thread(target=_stop_when, args=(parent_gone, server), daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    logger.info("scaler_ui: serving http://%s:%d/ from the status feed %s", shown, port, config.address)
    # uvicorn turns SIGINT/SIGTERM into a graceful stop, then raises the signal again once stopped,
    # for the handlers it found; handlers that only note it make Ctrl-C and SIGTERM an exit with 0.
    previous = {sig: signal.signal(sig, _noted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        dashboard.stopping.set()
        reader.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.info("scaler_ui: stopped")


def _noted(sig: int, frame: object) -> None:
    logger.debug("scaler_ui: signal %d after the server stopped", sig)


def _stop_when(event: threading.Event, server: uvicorn.Server) -> None:
    event.wait()
    server.should_exit = True
