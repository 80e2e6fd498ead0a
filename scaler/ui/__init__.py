"""``scaler_ui``: the web dashboard (Starlette on uvicorn), an optional extra: ``pip install 'scaler[ui]'``.

```
scheduler ──PUB──▶ StatusFeed ──▶ FeedReader thread ──▶ Dashboard (lock) ─┬─ DashboardModel (model.py, pure)
                                                                          └─ ClusterMetrics (metrics.py)
browser ◀── Starlette app (app.py): / and /static, /api/* JSON, /api/live (server-sent events), /metrics, /health
```

Only ``app.py`` and ``server.py`` import the ASGI stack, so the model is usable (and tested)
without the extra installed.
"""
