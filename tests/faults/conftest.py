"""Fault tests kill real processes; they share the integration fixtures and task functions."""

from tests.integration.conftest import client, combo, descendants, wait_no_descendants  # noqa: F401
