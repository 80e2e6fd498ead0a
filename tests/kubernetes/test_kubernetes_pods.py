"""The worker Pod the kubernetes adapter builds, checked through the client's own models and the schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from scaler.cli.common import parse_command
from scaler.cli.worker import build_parser as worker_parser
from scaler.config.worker import WorkerConfig
from scaler.worker_manager.adapter import WorkerCommand
from scaler.worker_manager.kubernetes import (
    ANNOTATION_WORKER,
    KEYS_MOUNT,
    KubernetesAdapter,
    KubernetesOptions,
    build_worker_pod,
    load_template,
    pod_name,
    read_pod,
    to_dict,
    to_model,
)
from tests.kubernetes.fake_api import FakeCoreV1Api, validate_strictly

TEMPLATE = Path(__file__).parents[2] / "deploy" / "kubernetes" / "worker-pod.yaml"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def command(**settings: object) -> WorkerCommand:
    return WorkerCommand(WorkerConfig(address="tcp://scaler-scheduler:8516", **settings))  # type: ignore[arg-type]


def shipped_options(**overrides: object) -> KubernetesOptions:
    values: dict[str, object] = {"namespace": "scaler", "template": load_template(TEMPLATE)}
    values.update(overrides)
    return KubernetesOptions(**values)  # type: ignore[arg-type]


def round_trip(pod: client.V1Pod) -> dict:
    """The JSON the API server would get, validated, and read back into a model that gives the same JSON."""
    data = to_dict(pod)
    validate_strictly(data)
    again = to_model(data, "V1Pod")
    assert isinstance(again, client.V1Pod)
    assert to_dict(again) == data
    return data


def test_the_worker_pod_from_the_shipped_template_carries_name_labels_command_keys_resources_and_grace() -> None:
    work = command(
        keys_dir="/home/me/keys", grace_period_seconds=45, per_worker_capabilities={"gpu": 1}, death_timeout_seconds=120
    )
    options = shipped_options(keys_secret="scaler-worker-keys", cpu="2", memory="4Gi")
    data = round_trip(build_worker_pod("k8s.3f9c2a71", "k8s", work, options))

    meta = data["metadata"]
    assert (meta["name"], meta["namespace"]) == ("k8s-3f9c2a71", "scaler")
    assert meta["labels"] == {
        "app.kubernetes.io/part-of": "scaler",  # the template's label is kept
        "app.kubernetes.io/name": "scaler",
        "app.kubernetes.io/component": "worker",
        "scaler/manager": "k8s",
    }
    assert meta["annotations"] == {ANNOTATION_WORKER: "k8s.3f9c2a71"}

    spec = data["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 55  # the worker's 45 s to finish its task, and a margin
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["fsGroup"] == 10001  # from the template
    assert spec["volumes"] == [
        {"name": "scaler-keys", "secret": {"secretName": "scaler-worker-keys", "defaultMode": 0o440}}
    ]
    [container] = spec["containers"]
    assert container["name"] == "worker" and container["image"] == "scaler:latest"
    assert "command" not in container  # the image's entrypoint (tini) stays PID 1 and forwards SIGTERM
    assert container["volumeMounts"] == [{"name": "scaler-keys", "mountPath": KEYS_MOUNT, "readOnly": True}]
    assert container["env"] == [{"name": "SCALER_WORKER_NAME", "value": "k8s.3f9c2a71"}]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }

    args = container["args"]
    assert args[:4] == ["python", "-m", "scaler.cli.worker", "tcp://scaler-scheduler:8516"]
    parsed, _ = parse_command(worker_parser(), WorkerConfig, "worker", args[3:])
    assert parsed.name == "k8s.3f9c2a71"
    assert parsed.keys_dir == KEYS_MOUNT  # the Secret's mount, not the manager's own path
    assert (parsed.grace_period_seconds, parsed.death_timeout_seconds) == (45, 120)
    assert parsed.per_worker_capabilities == {"gpu": 1}
    assert parsed.exit_with_parent is False


def test_a_pod_without_template_gets_its_own_container_and_no_keys_when_the_workers_have_none() -> None:
    options = KubernetesOptions(namespace="default", image="registry.example/scaler:1.0")
    data = round_trip(build_worker_pod("Gpu_Pool.00ab", "Gpu_Pool", command(), options))
    assert data["metadata"]["name"] == "gpu-pool-00ab"
    [container] = data["spec"]["containers"]
    assert (container["name"], container["image"]) == ("worker", "registry.example/scaler:1.0")
    assert "volumes" not in data["spec"] and "volumeMounts" not in container and "resources" not in container
    assert data["spec"]["terminationGracePeriodSeconds"] == 40  # the default 30 s grace + 10


def test_a_template_saved_from_a_running_pod_loses_what_the_server_set() -> None:
    saved = load_template(TEMPLATE)
    saved["metadata"].update(uid="1234", resourceVersion="99", creationTimestamp="2026-01-01T00:00:00Z")
    saved["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "5678"}]
    saved["status"] = {"phase": "Running", "podIP": "10.0.0.7"}
    data = round_trip(build_worker_pod("k8s.1", "k8s", command(), shipped_options(template=saved)))
    assert set(data["metadata"]) == {"name", "namespace", "labels", "annotations"} and "status" not in data


def test_the_image_flag_overrides_the_template_and_the_template_is_not_changed() -> None:
    options = shipped_options(image="registry.example/scaler:2.0")
    first = to_dict(build_worker_pod("k8s.1", "k8s", command(), options))
    second = to_dict(build_worker_pod("k8s.2", "k8s", command(), options))
    assert first["spec"]["containers"][0]["image"] == "registry.example/scaler:2.0"
    assert first["spec"]["containers"][0]["args"][-1] != second["spec"]["containers"][0]["args"][-1]
    assert options.template is not None and options.template["metadata"]["name"] == "scaler-worker-template"
    assert "args" not in options.template["spec"]["containers"][0]


@pytest.mark.parametrize("worker", ["k8s.3f9c2a71", "A_B-c.ffff0000", "x" * 60 + ".12345678"])
def test_pod_names_are_dns_names(worker: str) -> None:
    name = pod_name(worker)
    assert DNS_SUBDOMAIN.match(name) and len(name) <= 253


def test_bad_set_ups_are_refused_before_any_pod_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no image"):
        build_worker_pod("k8s.1", "k8s", command(), KubernetesOptions())
    with pytest.raises(ValueError, match="k8s-keys-secret"):
        KubernetesAdapter("k8s", command(keys_dir="/keys"), shipped_options(), api=FakeCoreV1Api())
    with pytest.raises(ValueError, match="letter or digit"):
        KubernetesAdapter("k8s-", command(), shipped_options(), api=FakeCoreV1Api())
    misspelled = tmp_path / "pod.yaml"
    misspelled.write_text(TEMPLATE.read_text().replace("imagePullPolicy:", "imagePulPolicy:"))
    with pytest.raises(ValueError, match=r"spec\.containers\[0\]\.imagePulPolicy"):
        load_template(misspelled)
    misspelled.write_text(TEMPLATE.read_text().replace("containers:", "contaners:"))
    with pytest.raises(ValueError, match="pod.yaml is not a valid Pod"):
        load_template(misspelled)
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    with pytest.raises(ValueError, match="not a Pod manifest"):
        load_template(deployment)


def pod(status: dict, deleting: bool = False) -> client.V1Pod:
    meta = {"name": "k8s-1", **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return to_model({"metadata": meta, "spec": {"containers": [{"name": "worker"}]}, "status": status}, "V1Pod")


def test_reading_a_pods_status() -> None:
    assert read_pod(pod({"phase": "Running"})).phase == "Running"
    assert read_pod(pod({"phase": "Running"}, deleting=True)).leaving
    creating = read_pod(pod({"phase": "Pending", "containerStatuses": [_waiting("ContainerCreating")]}))
    assert (creating.detail, creating.fatal) == ("ContainerCreating", False)
    pulling = read_pod(pod({"phase": "Pending", "containerStatuses": [_waiting("ImagePullBackOff", "no such image")]}))
    assert (pulling.detail, pulling.fatal) == ("ImagePullBackOff: no such image", True)
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes fit"}
    assert read_pod(pod({"phase": "Pending", "conditions": [condition]})).detail == "Unschedulable: 0/3 nodes fit"
    killed = {
        "name": "worker",
        "image": "",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    }
    failed = read_pod(pod({"phase": "Failed", "containerStatuses": [killed]}))
    assert failed.detail == "pod k8s-1 failed; container worker OOMKilled with code 137"
    evicted = read_pod(pod({"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}))
    assert evicted.detail == "pod k8s-1 failed; Evicted: The node was low on memory."


def _waiting(reason: str, message: str = "") -> dict:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {
        "name": "worker",
        "image": "",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": waiting},
    }


def test_the_sample_pod_in_the_docs_is_what_the_adapter_builds() -> None:
    text = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    sample = text.split("<!-- k8s-sample-pod -->\n```yaml\n", 1)[1].split("```", 1)[0]
    options = shipped_options(keys_secret="scaler-worker-keys")
    built = to_dict(build_worker_pod("k8s.3f9c2a71", "k8s", command(keys_dir="/etc/scaler/keys"), options))
    assert yaml.safe_load(sample) == built


def test_the_k8s_settings_come_from_flags_and_from_the_config_file(tmp_path: Path) -> None:
    from scaler.cli import worker_manager as cli

    address = "tcp://scaler-scheduler:8516"
    config = cli.parse_config(
        cli.build_parser(),
        ["kubernetes", address, "--k8s-image=r/s:1", "--k8s-cpu=2", "--k8s-pending-timeout-seconds=60", "--name=k8s"],
    )
    assert (config.adapter, config.k8s_image, config.k8s_cpu, config.k8s_pending_timeout_seconds) == (
        "kubernetes", "r/s:1", "2", 60.0,
    )  # fmt: skip
    path = tmp_path / "c.toml"
    path.write_text('[worker_manager]\nadapter = "kubernetes"\nk8s_namespace = "batch"\nk8s_memory = "4Gi"\n')
    config = cli.parse_config(cli.build_parser(), ["-c", str(path), address])
    assert (config.adapter, config.k8s_namespace, config.k8s_memory) == ("kubernetes", "batch", "4Gi")
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_config(cli.build_parser(), ["kubernetes", address, "--k8s-pending-timeout-seconds=-1"])
    assert exit_info.value.code == 2
