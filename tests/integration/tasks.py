"""Task functions used by the integration tests (shipped to workers by value, see conftest)."""

from __future__ import annotations

import os
import time


def noop(x: int) -> int:
    return x


def add(x: int, y: int = 0, *, z: int = 0) -> int:
    return x + y + z


def sleep_return(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def pid_after(seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return os.getpid()


def append_line(path: str, text: str) -> None:
    with open(path, "a") as file:
        file.write(text + "\n")


def raise_value_error(message: str) -> None:
    raise ValueError(message)


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"custom {code}")
        self.code = code


def raise_custom(code: int) -> None:
    raise CustomError(code)


def exit_process() -> None:
    os._exit(1)


def return_unpicklable() -> object:
    import threading

    return threading.Lock()


class UnpicklableError(Exception):
    def __reduce__(self) -> object:
        raise TypeError("this exception refuses to be pickled")


def raise_unpicklable() -> None:
    raise UnpicklableError("boom")


def _fail_to_load() -> None:
    raise RuntimeError("this object cannot be rebuilt here")


class LoadsBadly:
    """Pickles fine on the worker; unpickling it (on the client) raises."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _fail_to_load, ()


def return_loads_badly() -> LoadsBadly:
    return LoadsBadly()
