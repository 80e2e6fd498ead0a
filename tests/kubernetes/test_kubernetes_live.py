"""The kubernetes adapter on a real cluster: runs where KUBECONFIG points at one, and skips otherwise.

Each test works in a namespace of its own (``scaler-test-HEX``), deleted at the end even on failure.

- Needs only the cluster: a worker Pod whose image cannot be pulled is reported FAILED with
  Kubernetes' reason, and deleted.
- Needs also ``SCALER_K8S_IMAGE``, an image built from deploy/kubernetes/Dockerfile that the
  cluster can pull: the scheduler from deploy/kubernetes/manifests/scheduler.yaml with keys in
  Secrets; two worker Pods that join it by name; a second adapter (a restarted manager) that
  adopts them; a stop that deletes exactly the named Pod, which drains and goes.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.cli.keygen import make_keys
from scaler.config.worker import WorkerConfig
from scaler.protocol.messages import ManagedWorkerState
from scaler.worker_manager.adapter import WorkerCommand
from scaler.worker_manager.kubernetes import KubernetesAdapter, KubernetesOptions, load_template

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

DEPLOY = Path(__file__).parents[2] / "deploy" / "kubernetes"


def cluster() -> Any:
    """An ``ApiClient`` for the cluster KUBECONFIG names, or a skip saying why there is none."""
    path = os.environ.get("KUBECONFIG", "")
    if not path:
        pytest.skip("KUBECONFIG is not set: no Kubernetes cluster to run the live tests against")
    missing = [part for part in path.split(os.pathsep) if part and not os.path.exists(part)]
    if missing:
        pytest.skip(f"KUBECONFIG names files that do not exist: {', '.join(missing)}")
    from kubernetes import client, config

    try:
        api_client = config.new_client_from_config()
        client.CoreV1Api(api_client).list_namespace(limit=1, _request_timeout=10)
    except Exception as error:  # any reason the cluster cannot be reached is a reason to skip
        pytest.skip(f"KUBECONFIG={path}, but its cluster does not answer: {type(error).__name__}: {error}")
    return api_client


@pytest.fixture
def namespace() -> Iterator[tuple[Any, str]]:
    from kubernetes import client

    api_client = cluster()
    core = client.CoreV1Api(api_client)
    name = f"scaler-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield api_client, name
    finally:
        core.delete_namespace(name, grace_period_seconds=0)
        api_client.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(1)


@pytest.mark.timeout(300)
def test_live_a_worker_pod_whose_image_cannot_be_pulled_is_reported_failed_with_why_and_deleted(namespace) -> None:
    from kubernetes import client

    api_client, ns = namespace
    core = client.CoreV1Api(api_client)
    options = KubernetesOptions(
        namespace=ns, image="registry.invalid/scaler/none:0", fatal_confirm_seconds=5.0, pending_timeout_seconds=240.0
    )
    adapter = KubernetesAdapter("live", WorkerCommand(WorkerConfig(address="tcp://nowhere:8516")), options, api=core)
    adapter.start("live.00000001")
    status = wait_for(
        "the Pod to be reported FAILED",
        lambda: (s := adapter.poll().get("live.00000001")) is not None and s.state == ManagedWorkerState.FAILED and s,
        timeout=240,
    )
    print(f"\nreported: {status.detail}")
    assert any(reason in status.detail for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"))
    wait_for("the Pod to be deleted", lambda: not core.list_namespaced_pod(ns).items, timeout=60)


def keys_secret(name: str, directory: Path, files: list[str]) -> dict[str, Any]:
    data = {file: base64.b64encode((directory / file).read_bytes()).decode() for file in files}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}


def scheduler_log(core: Any, ns: str) -> str:
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=scheduler").items
    return "".join(core.read_namespaced_pod_log(pod.metadata.name, ns) for pod in pods)


@pytest.mark.timeout(600)
def test_live_workers_join_the_scheduler_are_adopted_after_a_restart_and_only_the_named_one_is_stopped(
    namespace, tmp_path: Path
) -> None:
    from kubernetes import client

    image = os.environ.get("SCALER_K8S_IMAGE", "")
    if not image:
        pytest.skip("SCALER_K8S_IMAGE is not set: give an image built from deploy/kubernetes/Dockerfile")
    api_client, ns = namespace
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)

    keys = tmp_path / "keys"
    make_keys(keys)
    # make_keys makes the manager key pair too
    core.create_namespaced_secret(
        ns, keys_secret("scaler-scheduler-keys", keys, ["scheduler.key_secret", "scheduler.key", "allowed_keys"])
    )
    core.create_namespaced_secret(ns, keys_secret("scaler-worker-keys", keys, ["worker.key_secret", "scheduler.key"]))
    for document in yaml.safe_load_all((DEPLOY / "manifests" / "scheduler.yaml").read_text()):
        if document["kind"] == "Deployment":
            document["spec"]["template"]["spec"]["containers"][0]["image"] = image
            apps.create_namespaced_deployment(ns, document)
        else:
            core.create_namespaced_service(ns, document)
    wait_for(
        "the scheduler to be ready",
        lambda: (apps.read_namespaced_deployment("scaler-scheduler", ns).status.ready_replicas or 0) >= 1,  # fmt: skip
        timeout=300,
    )

    work = WorkerCommand(
        WorkerConfig(address="tcp://scaler-scheduler:8516", keys_dir=str(keys), grace_period_seconds=5)
    )
    options = KubernetesOptions(
        namespace=ns, template=load_template(DEPLOY / "worker-pod.yaml"), image=image, keys_secret="scaler-worker-keys"
    )
    first = KubernetesAdapter("live", work, options, api=core)
    names = ["live.00000001", "live.00000002"]
    started = time.monotonic()
    for name in names:
        first.start(name)
    wait_for(
        "both workers to run",
        lambda: all(s.state == ManagedWorkerState.RUNNING for s in first.poll().values()) and len(first.poll()) == 2,
        timeout=300,
    )
    wait_for(
        "both workers to join the scheduler",
        lambda: all(f"worker|{name}|" in scheduler_log(core, ns) for name in names),
        timeout=120,
    )
    print(f"\nscale-up: 2 worker Pods created -> both joined the scheduler in {time.monotonic() - started:.1f} s")

    second = KubernetesAdapter("live", work, options, api=core)  # a restarted manager
    assert second.adopt() == names
    stopped = time.monotonic()
    second.stop(names[0])
    wait_for("the stopped worker to go", lambda: names[0] not in second.poll(), timeout=60)
    print(f"scale-down: delete (grace {second.grace_seconds} s) -> Pod gone in {time.monotonic() - stopped:.1f} s")
    report = second.poll()
    assert list(report) == [names[1]] and report[names[1]].state == ManagedWorkerState.RUNNING
