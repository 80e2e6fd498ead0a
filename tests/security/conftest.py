"""Security tests: hostile peers against a real scheduler, and CURVE authentication."""

from collections.abc import Iterator

import cloudpickle
import pytest

from tests.security import hostile_tasks
from tests.security.hostile_support import Bystander, HostileScheduler

cloudpickle.register_pickle_by_value(hostile_tasks)  # the workers cannot import the tests package


@pytest.fixture(scope="module")
def hostile_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileScheduler]:
    """A real scheduler (log in a file) with one real worker, shared by a test module."""
    with HostileScheduler(tmp_path_factory.mktemp("scheduler")) as running:
        yield running


@pytest.fixture
def bystander(hostile_scheduler: HostileScheduler) -> Iterator[Bystander]:
    """A legitimate client with tasks in flight for the length of the test; call ``check()`` at the end."""
    watcher = Bystander(hostile_scheduler)
    yield watcher
    watcher.close()
