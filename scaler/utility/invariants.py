"""The one exception a broken invariant raises, shared by every pure core's ``validate()``.

``validate()`` methods check with ``require`` instead of ``assert``: ``python -O`` strips asserts,
and a check that runs in tests but vanishes in production hides the very bugs it exists for.
``InvariantError`` subclasses ``AssertionError``, so code and tests that expect an assertion
failure from ``validate()`` keep working.
"""

from __future__ import annotations


class InvariantError(AssertionError):
    """A pure core's bookkeeping is inconsistent: a bug, never a peer's fault."""


def require(condition: object, message: str) -> None:
    """Raise ``InvariantError(message)`` unless ``condition`` holds."""
    if not condition:
        raise InvariantError(message)
