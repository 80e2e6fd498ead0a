"""deploy/kubernetes: every manifest document is valid Kubernetes (offline schemas), and the pieces fit together."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.cli.common import parse_command
from scaler.cli.keygen import make_keys
from scaler.cli.scheduler import build_parser as scheduler_parser
from scaler.cli.worker_manager import build_parser as manager_parser
from scaler.cli.worker_manager import make_adapter, parse_config
from scaler.config.compat import SCHEDULER_UNSUPPORTED
from scaler.config.scheduler import SchedulerConfig
from scaler.io.security import PeerKeys, SchedulerKeys, check_bind
from scaler.monitor.feed import monitor_address_for
from scaler.worker_manager import kubernetes as adapter_module
from scaler.worker_manager.kubernetes import KubernetesAdapter, to_dict, unknown_fields
from tests.kubernetes.fake_api import FakeCoreV1Api, validate_strictly

DEPLOY = Path(__file__).parents[2] / "deploy" / "kubernetes"
MANIFESTS = sorted((DEPLOY / "manifests").glob("*.yaml")) + [DEPLOY / "worker-pod.yaml"]
MODELS = {"Deployment": "V1Deployment", "Service": "V1Service", "ServiceAccount": "V1ServiceAccount",
          "Role": "V1Role", "RoleBinding": "V1RoleBinding", "Pod": "V1Pod"}  # fmt: skip


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        for number, document in enumerate(yaml.safe_load_all(path.read_text())):
            if document is not None:
                out.append((f"{path.name}#{number}", document))
    return out


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test: the schemas must come from the installed package."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_manifests_are_all_there() -> None:
    kinds = sorted(d["kind"] for _, d in documents())
    assert kinds == ["Deployment", "Deployment", "Pod", "Role", "RoleBinding", "Service", "ServiceAccount"]


@pytest.mark.parametrize("where,document", documents(), ids=[where for where, _ in documents()])
def test_each_document_validates_against_the_kubernetes_schema_offline(where: str, document: dict, no_network) -> None:
    validate_strictly(document)  # kubernetes-validate, strict: unknown fields fail too
    assert unknown_fields(document, MODELS[document["kind"]]) == []  # and the client's own models know every field


def test_the_schema_check_catches_mistakes(no_network) -> None:
    deployment = find("Deployment", "scaler-scheduler")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["port"] = [{"containerPort": 8516}]
    with pytest.raises(AssertionError, match="port"):
        validate_strictly(broken)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(AssertionError, match="replicas"):
        validate_strictly(broken)


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_the_service_exposes_the_scheduler_port_and_the_monitor_port_and_selects_the_scheduler() -> None:
    deployment, service = find("Deployment", "scaler-scheduler"), find("Service", "scaler-scheduler")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    container_ports = {port["name"]: port["containerPort"] for port in container(deployment)["ports"]}
    assert ports == container_ports == {"scheduler": 8516, "monitor": 8518}
    assert monitor_address_for("tcp://scaler-scheduler:8516") == "tcp://scaler-scheduler:8518"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_the_worker_manager_may_only_create_delete_and_read_pods_in_its_namespace() -> None:
    role, binding = find("Role", "scaler-worker-manager"), find("RoleBinding", "scaler-worker-manager")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    deployment = find("Deployment", "scaler-worker-manager")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    assert find("ServiceAccount", account)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def secret_files(script_log: str, secret: str) -> list[str]:
    """The files ``create-secrets.sh`` put in ``secret`` (read from the fake kubectl's log)."""
    for line in script_log.splitlines():
        words = line.split()
        if words[:4] == ["create", "secret", "generic", secret]:
            return [word.split("=", 1)[1] for word in words[4:] if word.startswith("--from-file=")]
    raise AssertionError(f"create-secrets.sh made no secret {secret}: {script_log}")


def run_create_secrets(tmp_path: Path, real_kubectl: str | None = None) -> tuple[Path, str, str]:
    """Run create-secrets.sh on a fresh keygen directory with a ``kubectl`` that logs what it is asked.

    With ``real_kubectl``, each command is also run by the real one with ``--dry-run=client -o yaml``
    (offline: it only prints the object it would send). Returns the keys, the log and those objects.
    """
    keys = tmp_path / "keys"
    make_keys(keys)
    # make_keys makes the manager key pair too
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, objects = tmp_path / "kubectl.log", tmp_path / "objects.yaml"
    dry_run = f'"{real_kubectl}" "$@" --dry-run=client -o yaml >> {objects} && echo --- >> {objects}\n'
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        f'#!/bin/sh\nset -e\n{dry_run if real_kubectl else ""}[ "$1" = --namespace ] && shift 2\necho "$@" >> {log}\n'
    )
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env.pop("KUBECONFIG", None)
    subprocess.run([str(DEPLOY / "create-secrets.sh"), str(keys), "scaler"], env=env, check=True, timeout=60)
    return keys, log.read_text(), objects.read_text() if objects.exists() else ""


@pytest.fixture
def cluster_keys(tmp_path: Path) -> tuple[Path, str]:
    keys, log, _ = run_create_secrets(tmp_path)
    return keys, log


def test_create_secrets_makes_valid_secrets_and_the_template_configmap(tmp_path: Path, no_network) -> None:
    real = shutil.which("kubectl")
    if real is None:
        pytest.skip("kubectl is not installed: it would make the Secrets (offline, --dry-run=client)")
    keys, log, objects = run_create_secrets(tmp_path, real)
    made = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(objects) if d}
    assert set(made) == {
        ("Secret", "scaler-scheduler-keys"),
        ("Secret", "scaler-worker-keys"),
        ("Secret", "scaler-manager-keys"),
        ("ConfigMap", "scaler-worker-template"),
    }
    for (kind, name), document in made.items():
        assert document["metadata"]["namespace"] == "scaler"
        document["metadata"].pop("creationTimestamp", None)  # kubectl prints null, which the server fills in
        validate_strictly(document)
        if kind == "Secret":
            files = {Path(file).name: Path(file).read_bytes() for file in secret_files(log, name)}
            assert {key: base64.b64decode(value) for key, value in document["data"].items()} == files
    template = made[("ConfigMap", "scaler-worker-template")]["data"]
    assert template == {"worker-pod.yaml": (DEPLOY / "worker-pod.yaml").read_text()}


def mount(tmp_path: Path, name: str, files: list[str]) -> Path:
    """What a Secret volume of ``files`` looks like in the Pod (0440, as the manifests ask)."""
    directory = tmp_path / name
    directory.mkdir()
    for file in files:
        shutil.copy(file, directory)
        (directory / Path(file).name).chmod(0o440)
    return directory


def flag(args: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in args if arg.startswith(f"--{name}="))


def test_each_role_finds_its_keys_in_its_secret_and_the_commands_parse(
    cluster_keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, log = cluster_keys
    assert "configmap scaler-worker-template --from-file=worker-pod.yaml=" in log

    scheduler = container(find("Deployment", "scaler-scheduler"))
    scheduler_mount = scheduler["volumeMounts"][0]["mountPath"]
    scheduler_dir = mount(tmp_path, "scheduler", secret_files(log, "scaler-scheduler-keys"))
    args = [arg.replace(scheduler_mount, str(scheduler_dir)) for arg in scheduler["args"]]
    assert args[0] == "scaler_scheduler"
    config, _ = parse_command(scheduler_parser(), SchedulerConfig, "scheduler", args[1:], SCHEDULER_UNSUPPORTED)
    scheduler_keys = SchedulerKeys.load(config.keys_dir, config.key_file, config.allow_list_file)
    check_bind(config.address, scheduler_keys, config.insecure)  # 0.0.0.0 with keys is allowed
    assert scheduler_keys is not None and {"worker", "manager"} <= set(scheduler_keys.allowed.values())

    manager_deployment = find("Deployment", "scaler-worker-manager")
    manager = container(manager_deployment)
    assert manager["args"][:3] == ["scaler_worker_manager", "kubernetes", "tcp://scaler-scheduler:8516"]
    worker_secret = flag(manager["args"], "k8s-keys-secret")
    worker_dir = mount(tmp_path, "worker", secret_files(log, worker_secret))
    assert PeerKeys.load("worker", worker_dir) is not None  # what each worker Pod mounts at /etc/scaler/keys

    volumes = {v["name"]: v for v in manager_deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in manager["volumeMounts"]}
    manager_dir = mount(tmp_path, "manager", secret_files(log, volumes["keys"]["secret"]["secretName"]))
    template = flag(manager["args"], "k8s-pod-template")
    assert template == f"{mounts['template']}/worker-pod.yaml" and volumes["template"]["configMap"]["name"] == (
        "scaler-worker-template"
    )
    args = [
        arg.replace(mounts["keys"], str(manager_dir)).replace(template, str(DEPLOY / "worker-pod.yaml"))
        for arg in manager["args"][1:]
    ]
    config = parse_config(manager_parser(), args)
    assert PeerKeys.load("manager", config.keys_dir, config.manager_key_file, config.scheduler_key_file) is not None
    assert PeerKeys.load("worker", config.keys_dir, config.key_file, config.scheduler_key_file) is not None

    # The command's own factory, with the fake API server in place of the cluster's.
    api = FakeCoreV1Api(namespace="default")
    monkeypatch.setattr(adapter_module, "core_api", lambda: api)
    engine = make_adapter(config)
    assert isinstance(engine, KubernetesAdapter) and engine.namespace == "default"
    engine.start("k8s.0001")  # the fake validates the Pod against the schema
    pod = to_dict(engine.api.list_namespaced_pod("default", label_selector="scaler/manager=k8s").items[0])
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == worker_secret
    assert "--keys-dir=/etc/scaler/keys" in pod["spec"]["containers"][0]["args"]
    api.close()
