"""Sockets, CURVE keys and the allow-list, shared by the scheduler, worker and client processes."""
