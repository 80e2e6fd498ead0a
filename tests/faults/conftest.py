"""Fault tests kill real processes; they share the integration fixtures and task functions."""

import cloudpickle

from tests.faults import fault_tasks
from tests.integration.conftest import client, combo, descendants, wait_no_descendants  # noqa: F401

cloudpickle.register_pickle_by_value(fault_tasks)  # the workers cannot import the tests package
