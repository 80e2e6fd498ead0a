"""The web dashboard (scaler_ui): a FastAPI app over the scheduler's status feed, its pure model, and its /metrics."""
