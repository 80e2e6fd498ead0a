"""The kubernetes adapter against an in-memory API server stand-in: start, stop, poll, adopt, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from scaler.protocol.messages import ManagedWorkerState, WorkerManagerCommand
from scaler.worker_manager.adapter import WorkerStatus
from scaler.worker_manager.kubernetes import KubernetesAdapter, build_worker_pod, to_dict
from scaler.worker_manager.manager import WorkerManager
from tests.kubernetes.fake_api import Call, FakeCoreV1Api, _error
from tests.kubernetes.test_kubernetes_pods import command, shipped_options
from tests.managers.support import FakeScheduler

STARTING, RUNNING, FAILED = ManagedWorkerState.STARTING, ManagedWorkerState.RUNNING, ManagedWorkerState.FAILED


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[FakeCoreV1Api]:
    fake = FakeCoreV1Api()
    yield fake
    fake.close()


def adapter(api: FakeCoreV1Api, clock: Clock | None = None, name: str = "k8s", **options: object) -> KubernetesAdapter:
    values: dict[str, object] = {"keys_secret": "scaler-worker-keys", "fatal_confirm_seconds": 10.0}
    values.update(options)
    return KubernetesAdapter(
        name,
        command(keys_dir="/keys", grace_period_seconds=20),
        shipped_options(**values),
        api=api,
        clock=clock or Clock(),
    )


def states(report: dict[str, WorkerStatus]) -> dict[str, ManagedWorkerState]:
    return {name: status.state for name, status in report.items()}


def test_start_poll_and_stop_exactly_the_named_worker_which_gets_its_grace_period(api: FakeCoreV1Api) -> None:
    k8s = adapter(api)
    k8s.start("k8s.aaaa0001")
    k8s.start("k8s.aaaa0002")
    assert set(api.pods) == {"k8s-aaaa0001", "k8s-aaaa0002"}
    assert states(k8s.poll()) == {"k8s.aaaa0001": STARTING, "k8s.aaaa0002": STARTING}

    api.wait("k8s-aaaa0001", "ContainerCreating")
    api.run("k8s-aaaa0002")
    report = k8s.poll()
    assert report["k8s.aaaa0001"] == WorkerStatus(STARTING, "ContainerCreating")
    assert report["k8s.aaaa0002"] == WorkerStatus(RUNNING)

    api.run("k8s-aaaa0001")
    api.calls.clear()
    k8s.stop("k8s.aaaa0002")
    k8s.stop("k8s.aaaa0002")  # once only
    k8s.stop("k8s.nobody")  # not one of its workers: nothing is deleted
    assert api.calls == [Call("delete", "k8s-aaaa0002", 30)]  # the worker's 20 s grace + 10: SIGTERM, then it drains
    assert "deletionTimestamp" in api.pods["k8s-aaaa0002"]["metadata"]
    assert states(k8s.poll()) == {"k8s.aaaa0001": RUNNING, "k8s.aaaa0002": RUNNING}  # still draining

    api.exit("k8s-aaaa0002", 0)  # it drained and exited; the Pod is deleted a moment later
    assert states(k8s.poll()) == {"k8s.aaaa0001": RUNNING}
    api.finish_deletion("k8s-aaaa0002")
    assert states(k8s.poll()) == {"k8s.aaaa0001": RUNNING}
    assert set(api.pods) == {"k8s-aaaa0001"}  # the other worker was never touched


def test_a_restarted_manager_adopts_its_own_pods_by_label_and_no_others(api: FakeCoreV1Api) -> None:
    first = adapter(api)
    for name in ("k8s.0001", "k8s.0002", "k8s.0003"):
        first.start(name)
        api.run(name.replace(".", "-"))
    first.stop("k8s.0003")  # draining when the manager restarts: left to finish
    other = build_worker_pod("gpus.0001", "gpus", command(), shipped_options())
    api.add(to_dict(other))  # another manager's worker in the same namespace
    api.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {}})

    second = adapter(api)
    assert second.adopt() == ["k8s.0001", "k8s.0002"]
    assert states(second.poll()) == {"k8s.0001": RUNNING, "k8s.0002": RUNNING}
    api.calls.clear()
    second.stop("k8s.0001")
    assert api.calls == [Call("delete", "k8s-0001", 30)]
    assert adapter(api, name="gpus").adopt() == ["gpus.0001"]


def test_an_image_that_cannot_be_pulled_is_reported_with_the_reason_and_its_pod_deleted(api: FakeCoreV1Api) -> None:
    clock = Clock()
    k8s = adapter(api, clock)
    k8s.start("k8s.0001")
    api.wait("k8s-0001", "ErrImagePull", 'failed to pull image "scaler:typo": not found')
    assert k8s.poll()["k8s.0001"].state == STARTING  # pulls are retried: the reason must hold a while
    clock.now += 5
    api.wait("k8s-0001", "ImagePullBackOff", 'Back-off pulling image "scaler:typo"')
    assert k8s.poll()["k8s.0001"].state == STARTING
    clock.now += 5
    report = k8s.poll()
    assert report["k8s.0001"] == WorkerStatus(
        FAILED, 'pod k8s-0001 cannot start: ImagePullBackOff: Back-off pulling image "scaler:typo"'
    )
    assert api.pods == {} and api.calls[-1] == Call("delete", "k8s-0001", 0)
    assert k8s.poll()["k8s.0001"].state == FAILED  # reported until the manager forgets it
    k8s.forget("k8s.0001")
    assert k8s.poll() == {}


def test_a_fatal_reason_that_clears_starts_the_wait_again(api: FakeCoreV1Api) -> None:
    clock = Clock()
    k8s = adapter(api, clock)
    k8s.start("k8s.0001")
    api.wait("k8s-0001", "ErrImagePull", "registry timeout")
    k8s.poll()
    clock.now += 8
    api.wait("k8s-0001", "ContainerCreating")
    k8s.poll()
    clock.now += 8
    api.wait("k8s-0001", "ErrImagePull", "registry timeout")
    assert k8s.poll()["k8s.0001"].state == STARTING
    api.run("k8s-0001")
    assert k8s.poll()["k8s.0001"].state == RUNNING


def test_a_pod_that_stays_unschedulable_is_given_up_after_the_pending_timeout(api: FakeCoreV1Api) -> None:
    clock = Clock()
    k8s = adapter(api, clock, pending_timeout_seconds=120.0)
    k8s.start("k8s.0001")
    api.unschedulable("k8s-0001", "0/3 nodes are available: 3 Insufficient cpu.")
    assert k8s.poll()["k8s.0001"] == WorkerStatus(
        STARTING, "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )
    clock.now += 121
    assert k8s.poll()["k8s.0001"] == WorkerStatus(
        FAILED, "pod k8s-0001 still pending after 120 s: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )
    assert api.pods == {}


def test_pods_that_end_unasked_failed_are_reported_and_cleaned_up_and_clean_exits_are_not(api: FakeCoreV1Api) -> None:
    k8s = adapter(api)
    for name in ("k8s.0001", "k8s.0002", "k8s.0003", "k8s.0004", "k8s.0005"):
        k8s.start(name)
        api.run(name.replace(".", "-"))
    api.exit("k8s-0001", 1)
    api.exit("k8s-0002", 137, "OOMKilled")
    api.evict("k8s-0003", "The node was low on resource: memory.")
    api.exit("k8s-0004", 0)  # e.g. its scheduler went away for longer than the death timeout
    del api.pods["k8s-0005"]  # kubectl delete pod
    report = k8s.poll()
    assert report == {
        "k8s.0001": WorkerStatus(FAILED, "pod k8s-0001 failed; container worker Error with code 1"),
        "k8s.0002": WorkerStatus(FAILED, "pod k8s-0002 failed; container worker OOMKilled with code 137"),
        "k8s.0003": WorkerStatus(FAILED, "pod k8s-0003 failed; Evicted: The node was low on resource: memory."),
        "k8s.0005": WorkerStatus(
            FAILED, "pod k8s-0005 is gone: deleted by someone else, or evicted (kubectl delete, node drain)"
        ),
    }
    assert api.pods == {}  # every ended Pod deleted (restartPolicy Never Pods would otherwise stay)


def test_a_stopped_worker_that_exits_with_an_error_while_draining_is_not_a_failure(api: FakeCoreV1Api) -> None:
    k8s = adapter(api)
    k8s.start("k8s.0001")
    api.run("k8s-0001")
    k8s.stop("k8s.0001")
    api.exit("k8s-0001", 137)  # killed at the end of its grace period
    assert k8s.poll() == {}


def test_refusals_by_the_api_server_are_reported_with_its_message(api: FakeCoreV1Api) -> None:
    k8s = adapter(api)
    api.refusals.append(
        _error(403, "Forbidden", 'pods is forbidden: User "system:serviceaccount:scaler:default" cannot create')
    )
    k8s.start("k8s.0001")
    api.refusals.append(_error(403, "Forbidden", "exceeded quota: compute, requested: pods=1, limited: pods=4"))
    k8s.start("k8s.0002")
    k8s.start("k8s.0003")
    k8s.start("k8s.0003")  # the same name twice: the API server says so
    report = k8s.poll()
    assert report["k8s.0001"] == WorkerStatus(
        FAILED,
        'Kubernetes refused pod k8s-0001: 403 Forbidden: pods is forbidden: User "system:serviceaccount:scaler:default"'
        " cannot create",
    )
    assert report["k8s.0002"].detail.endswith("exceeded quota: compute, requested: pods=1, limited: pods=4")
    assert report["k8s.0003"] == WorkerStatus(
        FAILED, 'Kubernetes refused pod k8s-0003: 409 Conflict: pods "k8s-0003" already exists'
    )
    assert set(api.pods) == {"k8s-0003"}


@pytest.mark.timeout(60)
def test_the_manager_loop_starts_pods_to_the_target_and_deletes_only_the_pod_the_scheduler_names(
    api: FakeCoreV1Api,
) -> None:
    scheduler = FakeScheduler()
    k8s = KubernetesAdapter("k8s", command(), shipped_options(), api=api)
    manager = WorkerManager(scheduler.address, k8s, "k8s", 1, 4, poll_interval_seconds=0.2)
    thread = threading.Thread(target=manager.run, daemon=True)
    thread.start()
    try:
        scheduler.heartbeat(until=lambda beat: len(beat.workers) == 1)
        scheduler.send(WorkerManagerCommand(target=3, stop_workers=[]))
        scheduler.heartbeat(until=lambda beat: len(beat.workers) == 3)
        assert len(api.pods) == 3
        for pod in list(api.pods):
            api.run(pod)
        beat = scheduler.heartbeat(until=lambda beat: all(r.state == RUNNING for r in beat.workers))
        victim = beat.workers[1].worker_name
        scheduler.send(WorkerManagerCommand(target=2, stop_workers=[victim]))
        deadline = time.monotonic() + 10
        while not any(call.verb == "delete" for call in api.calls):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [call for call in api.calls if call.verb == "delete"] == [Call("delete", victim.replace(".", "-"), 40)]
        api.finish_deletion(victim.replace(".", "-"))
        beat = scheduler.heartbeat(until=lambda beat: victim not in {r.worker_name for r in beat.workers})
        assert len(beat.workers) == 2
    finally:
        manager.stop()
        thread.join(10)
        scheduler.close()
    assert not thread.is_alive() and len(api.pods) == 2  # a manager that stops leaves its Pods running


def test_a_manager_that_cannot_list_its_pods_at_start_stops_rather_than_start_a_second_set(
    api: FakeCoreV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise _error(403, "Forbidden", 'pods is forbidden: User "system:serviceaccount:scaler:default" cannot list')

    monkeypatch.setattr(api, "list_namespaced_pod", forbidden)
    with pytest.raises(RuntimeError, match="cannot list the worker pods in namespace scaler: 403 Forbidden: pods is"):
        adapter(api).adopt()
