"""``ClientObjects``: which objects to create and delete, with no scheduler."""

from __future__ import annotations

import pickle

from scaler.client.object_reference import ObjectReference
from scaler.client.objects import ClientObjects

A, B, C, D = (bytes([i]) * 16 for i in range(4))


def test_explicit_objects_are_created_once_and_kept() -> None:
    objects = ClientObjects(limit_bytes=10)
    assert objects.add_explicit(A, 100) is True
    assert objects.add_explicit(A, 100) is False
    assert A in objects
    assert objects.release_automatic([A]) == []
    assert objects.statistics()["objects_explicit"] == 1
    assert objects.created == 1


def test_automatic_objects_are_created_once_and_pinned_while_used() -> None:
    objects = ClientObjects(limit_bytes=100)
    assert objects.use_automatic(A, 80) == (True, [])
    assert objects.use_automatic(A, 80) == (False, [])
    assert objects.use_automatic(B, 80) == (True, [])  # over the limit, but both are pinned
    assert objects.release_automatic([A]) == []  # A still has one user
    assert objects.release_automatic([A]) == [A]  # now unpinned and over the limit: least recent goes
    assert A not in objects and B in objects
    assert objects.release_automatic([B]) == []  # B alone fits
    assert objects.statistics()["objects_automatic_bytes"] == 80


def test_least_recently_used_unpinned_objects_go_first() -> None:
    objects = ClientObjects(limit_bytes=30)
    for object_id in (A, B, C):
        objects.use_automatic(object_id, 10)
        objects.release_automatic([object_id])
    objects.use_automatic(A, 10)  # A is now the most recent, and pinned
    objects.release_automatic([A])
    created, evicted = objects.use_automatic(D, 10)
    assert created and evicted == [B]
    assert [object_id in objects for object_id in (A, B, C, D)] == [True, False, True, True]
    assert objects.deleted == 1


def test_an_evicted_object_is_created_again_when_used_again() -> None:
    objects = ClientObjects(limit_bytes=0)
    assert objects.use_automatic(A, 5) == (True, [])
    assert objects.release_automatic([A]) == [A]
    assert objects.use_automatic(A, 5) == (True, [])


def test_bytes_stay_bounded_over_a_long_loop() -> None:
    objects = ClientObjects(limit_bytes=1000)
    deleted = 0
    for i in range(10_000):
        object_id = i.to_bytes(16, "big")
        created, evicted = objects.use_automatic(object_id, 100)
        assert created
        deleted += len(evicted) + len(objects.release_automatic([object_id]))
        assert objects.statistics()["objects_automatic_bytes"] <= 1000
    assert objects.statistics()["objects_automatic"] == 10
    assert deleted == 10_000 - 10


def test_sending_explicitly_an_automatic_object_keeps_it_without_creating_it_again() -> None:
    objects = ClientObjects(limit_bytes=0)
    objects.use_automatic(A, 10)
    assert objects.add_explicit(A, 10) is False
    assert objects.release_automatic([A]) == []
    assert A in objects
    assert objects.use_automatic(A, 10) == (False, [])


def test_clear_forgets_everything() -> None:
    objects = ClientObjects(limit_bytes=100)
    objects.add_explicit(A, 1)
    objects.use_automatic(B, 1)
    objects.clear()
    assert A not in objects and B not in objects
    assert objects.release_automatic([B]) == []
    assert objects.add_explicit(A, 1) is True


def test_object_reference_is_a_small_hashable_picklable_value() -> None:
    reference = ObjectReference(A, "name", 12)
    copy = pickle.loads(pickle.dumps(reference))
    assert copy == reference and hash(copy) == hash(reference)
    assert (copy.object_id, copy.name, copy.size) == (A, "name", 12)
    assert ObjectReference(A, "other name", 12) == reference  # identity is the content
    assert reference != ObjectReference(B, "name", 12)
    assert A.hex() in repr(reference)
    assert len(pickle.dumps(reference)) < 200
