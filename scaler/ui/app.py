"""The dashboard's web application (Starlette): the page, its JSON API, live updates, /metrics and /health.

Routes:

- ``/`` the page (or, with a token and none shown yet, the page that asks for it), ``/static/*`` its
  JavaScript and CSS (package data: no CDN), ``POST /login`` takes the token and sets the cookie;
- ``/api/summary``, ``/api/overview``, ``/api/workers``, ``/api/stream`` (``window`` seconds), ``/api/clients`` and
  ``/api/tasks`` (``q``, ``state``, ``sort``, ``order``, ``page``, ``page_size``: filtered, sorted and
  paged here, over the ring buffer);
- ``/api/live``: server-sent events, one ``summary`` a second; the page refetches its view when the
  model's ``version`` moves;
- ``/metrics`` (Prometheus text format) and ``/health`` (200, or 503 once the feed is silent too long).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from scaler.protocol.messages import StatusEvents, StatusSnapshot
from scaler.ui.metrics import ClusterMetrics
from scaler.ui.model import DashboardModel
from scaler.ui.security import TOKEN_COOKIE, bearer, token_matches
from scaler.ui.tasks import SORT_KEYS, STATES
from scaler.utility.rate_limited_log import RateLimitedLog

logger = logging.getLogger(__name__)

T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]
MAX_PAGE_SIZE = 1000


class Dashboard:
    """The model and the metrics behind one lock: the feed thread writes them, request handlers read them."""

    def __init__(
        self,
        model: DashboardModel,
        registry: CollectorRegistry | None = None,
        feed_silent_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.model = model
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ClusterMetrics(self.registry, stale_after_seconds=feed_silent_seconds, clock=clock)
        self.feed_silent_seconds = feed_silent_seconds
        self.stopping = threading.Event()  # set on shutdown: live update streams end
        self._clock = clock
        self._lock = threading.Lock()
        self._last_heard = clock()  # silence counts from the start, until a first message arrives
        self._heard_any = False
        self._errors = RateLimitedLog(interval=10.0, logger=logger, burst=1)

    def apply(self, messages: Iterable[StatusSnapshot | StatusEvents]) -> None:
        """Take feed messages into the model and the metrics. A message one of them fails on is logged."""
        with self._lock:
            for message in messages:
                self._last_heard = self._clock()
                self._heard_any = True
                for name, update in (("model", self.model.apply), ("metrics", self.metrics.update)):
                    try:
                        update(message)
                    except Exception:  # one bad message must not stop the dashboard
                        self._errors.error(self._clock(), "dashboard %s: a %s failed", name, type(message).__name__)
                        logger.debug("the message that failed: %r", message, exc_info=True)

    def read(self, view: Callable[[DashboardModel], T]) -> T:
        """``view(model)`` under the lock."""
        with self._lock:
            return view(self.model)

    def silent_for(self) -> float:
        """Seconds since the last feed message (or since the start, before any)."""
        with self._lock:
            return self._clock() - self._last_heard

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the feed is alive, and what ``/health`` says."""
        silent = self.silent_for()
        with self._lock:
            heard = self._heard_any
        healthy = silent <= self.feed_silent_seconds
        metrics = self.metrics.health()  # the scheduler it hears, and its counts while they are fresh
        metrics.pop("status", None)
        return healthy, {
            "status": "ok" if healthy else "feed silent",
            "feed_silent_seconds": round(silent, 3),
            "feed_heard": heard,
            **metrics,
        }

    def metrics_text(self) -> bytes:
        """The registry in the Prometheus text format."""
        with self._lock:
            return generate_latest(self.registry)


def _static(name: str) -> str:
    return resources.files("scaler.ui").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _int(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None


def create_app(dashboard: Dashboard, token: str | None = None, live_interval_seconds: float = 1.0) -> Starlette:
    """The dashboard's ASGI application over ``dashboard``; with ``token``, everything but /health asks for it."""

    def authorized(request: Request) -> bool:
        return token_matches(
            token,
            request.cookies.get(TOKEN_COOKIE),
            bearer(request.headers.get("authorization")),
            request.query_params.get("token"),
        )

    def protected(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "this dashboard needs its token"}, status_code=401)
            return await endpoint(request)

        return guarded

    def view(read: Callable[[DashboardModel], Any]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return JSONResponse(await run_in_threadpool(dashboard.read, read))

        return protected(endpoint)

    async def index(request: Request) -> Response:
        if not authorized(request):
            return HTMLResponse(_static("login.html"))
        return HTMLResponse(_static("index.html"))

    async def login(request: Request) -> Response:
        # A urlencoded form, read here: starlette's form parser would need python-multipart for one field.
        body = await request.body()
        offered = parse_qs(body[:4096].decode("utf-8", "replace")).get("token", [""])[0]
        if not token_matches(token, offered):
            page = _static("login.html").replace("<!--error-->", '<p class="error">That is not the token.</p>')
            return HTMLResponse(page, status_code=401)
        response = RedirectResponse("/", status_code=303)
        if token:
            response.set_cookie(TOKEN_COOKIE, offered, httponly=True, samesite="strict")
        return response

    async def stream(request: Request) -> Response:
        try:  # the last ``window`` seconds of the feed's own clock: the browser's clock may differ
            window = float(request.query_params.get("window", "60") or 60)
        except ValueError:
            return JSONResponse({"error": "window must be a number of seconds"}, status_code=400)
        return JSONResponse(await run_in_threadpool(dashboard.read, lambda model: model.stream_view(window)))

    async def tasks(request: Request) -> Response:
        params = request.query_params
        order = params.get("order", "desc")
        try:
            page = max(1, _int(request, "page", 1))
            page_size = min(MAX_PAGE_SIZE, max(1, _int(request, "page_size", 50)))
            if order not in ("asc", "desc"):
                raise ValueError(f"order must be asc or desc, got {order!r}")

            def read(model: DashboardModel) -> dict[str, Any]:
                result = model.tasks.query(
                    text=params.get("q", ""),
                    state=params.get("state", ""),
                    sort=params.get("sort", "submitted"),
                    descending=order == "desc",
                    offset=(page - 1) * page_size,
                    limit=page_size,
                )
                return {
                    "total": result.total,
                    "page": page,
                    "page_size": page_size,
                    "held": len(model.tasks),
                    "ring_size": model.tasks.ring_size,
                    "forgotten": model.tasks.forgotten,
                    "counts": dict(model.tasks.counts),
                    "states": list(STATES),
                    "columns": list(SORT_KEYS),
                    "rows": [row.to_json() for row in result.rows],
                }

            return JSONResponse(await run_in_threadpool(dashboard.read, read))
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    async def live(request: Request) -> Response:
        try:
            count = _int(request, "count", 0)  # 0: until the page goes; N: that many events (scripts, tests)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)

        async def events() -> AsyncIterator[str]:
            sent = 0
            yield "retry: 2000\n\n"  # how soon the browser reconnects after the dashboard restarts
            while not dashboard.stopping.is_set():
                summary = dashboard.read(lambda model: model.summary())
                _, health = dashboard.health()
                summary["feed_silent_seconds"] = health["feed_silent_seconds"]
                yield f"event: summary\ndata: {json.dumps(summary)}\n\n"
                sent += 1
                if count and sent >= count:
                    return
                await asyncio.sleep(live_interval_seconds)
                if await request.is_disconnected():
                    return

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def metrics(request: Request) -> Response:
        return Response(await run_in_threadpool(dashboard.metrics_text), media_type=CONTENT_TYPE_LATEST)

    async def health(request: Request) -> Response:
        healthy, body = dashboard.health()
        return JSONResponse(body, status_code=200 if healthy else 503)

    routes = [
        Route("/", index),
        Route("/login", login, methods=["POST"]),
        Route("/api/summary", view(lambda model: model.summary())),
        Route("/api/overview", view(lambda model: model.overview())),
        Route("/api/workers", view(lambda model: model.workers_view())),
        Route("/api/clients", view(lambda model: model.clients_view())),
        Route("/api/stream", protected(stream)),
        Route("/api/tasks", protected(tasks)),
        Route("/api/live", protected(live)),
        Route("/metrics", protected(metrics)),
        Route("/health", health),
        Mount("/static", app=StaticFiles(packages=[("scaler.ui", "static")]), name="static"),
    ]
    return Starlette(routes=routes)
