"""The scheduler: a pure state core (state.py and its tables) and the I/O loop around it (server.py)."""
