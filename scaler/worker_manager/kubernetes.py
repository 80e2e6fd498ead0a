"""The ``kubernetes`` adapter: one Pod per worker, named after it, deleted with a grace period so it drains.

Why Pods and not a Deployment's replicas: the manager starts and stops workers *by name*, and only
the worker the scheduler names (an idle one) may go. Scaling a Deployment down lets its ReplicaSet
choose which Pod to delete, and it may choose a busy one. With one Pod per worker, named after
the worker (``MANAGER.HEX`` -> ``manager-hex``), a start is one create and a stop is one delete of
exactly that Pod.

- **Start**: ``create_namespaced_pod`` with the Pod ``build_worker_pod`` makes: a copy of the
  template's spec (image, resources, node selectors...), the worker's command line as the
  container's ``args`` (``python -m scaler.cli.worker ADDRESS ... --name=NAME``), its keys from a
  Secret mounted at ``KEYS_MOUNT``, ``restartPolicy: Never`` (the manager, not the kubelet,
  decides whether a worker comes back) and ``terminationGracePeriodSeconds`` = the worker's
  grace period + ``GRACE_MARGIN_SECONDS``.
- **Stop**: ``delete_namespaced_pod`` with that grace period. The kubelet sends the container's
  main process SIGTERM, so the worker hands back its queued tasks and finishes its running one;
  SIGKILL only comes after the grace period.
- **Poll**: one ``list_namespaced_pod`` by label selector. A Pod that cannot start (image pull
  errors and the other ``FATAL_WAITING_REASONS``, held ``fatal_confirm_seconds``; pending, e.g.
  Unschedulable, past ``pending_timeout_seconds``) or that ended in phase Failed is deleted and
  reported FAILED with Kubernetes' reason. A Pod that ended cleanly (the worker exited 0) is
  deleted quietly.
- **Adopt**: the labels ``LABEL_COMPONENT=worker`` and ``LABEL_MANAGER=NAME`` select a manager's
  Pods; the annotation ``ANNOTATION_WORKER`` holds the worker's name. Pods already being deleted
  are left to finish draining.

The Pod builder and the reading of a Pod's status are pure functions over the client's models;
``KubernetesAdapter`` calls four ``CoreV1Api`` methods (create, delete, list, and nothing else).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import yaml

try:
    from kubernetes import client as _client
    from kubernetes import config as _config
    from kubernetes.client.exceptions import ApiException
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("the kubernetes adapter needs the official client: pip install 'scaler[kubernetes]'") from error
import urllib3

from scaler.config.worker_manager import WorkerManagerConfig
from scaler.protocol.messages import ManagedWorkerState
from scaler.worker_manager.adapter import EngineAdapter, WorkerCommand, WorkerStatus, check_manager_name, owned_by

logger = logging.getLogger(__name__)

# The client is partly typed; the models and config helpers are used as Any.
k8s: Any = _client
k8s_config: Any = _config

LABEL_APP = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGER = "scaler/manager"
ANNOTATION_WORKER = "scaler/worker-name"
CONTAINER_NAME = "worker"
KEYS_VOLUME = "scaler-keys"
KEYS_MOUNT = "/etc/scaler/keys"
GRACE_MARGIN_SECONDS = 10
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_REQUEST_SECONDS = 15

# Waiting reasons of a container that will not start by waiting: its Pod is deleted, reported FAILED.
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class KubernetesOptions:
    """How each worker Pod is made; empty strings leave the template's (or Kubernetes') value."""

    namespace: str = "default"
    template: Mapping[str, Any] | None = None  # a Pod manifest, as loaded from YAML
    image: str = ""
    keys_secret: str = ""  # Secret with worker.key_secret and scheduler.key
    cpu: str = ""
    memory: str = ""
    pending_timeout_seconds: float = 300.0  # 0: never
    fatal_confirm_seconds: float = 10.0  # a fatal waiting reason must hold this long (pulls are retried)
    python: str = "python"  # the interpreter in the workers' image


def pod_name(worker_name: str) -> str:
    """The Pod of worker ``worker_name``: lower case, ``_`` and ``.`` made ``-`` (a DNS name)."""
    return re.sub(r"[_.]", "-", worker_name.lower())


def worker_labels(manager_name: str) -> dict[str, str]:
    """The labels of every worker Pod of the manager called ``manager_name``."""
    return {LABEL_APP: "scaler", LABEL_COMPONENT: "worker", LABEL_MANAGER: manager_name}


def label_selector(manager_name: str) -> str:
    """The selector of that manager's worker Pods."""
    return f"{LABEL_COMPONENT}=worker,{LABEL_MANAGER}={manager_name}"


class _JsonText(str):
    """JSON text that also has it as ``.data``: what ``ApiClient.deserialize`` reads, old clients and new."""

    @property
    def data(self) -> str:
        """The text (older clients read ``response.data``)."""
        return str(self)


def to_model(data: Mapping[str, Any], kind: str) -> Any:
    """``data`` (a manifest as a dict) as the client's model ``kind``, e.g. ``"V1Pod"``."""
    api = k8s.ApiClient()
    text = _JsonText(json.dumps(data))
    if "content_type" in inspect.signature(api.deserialize).parameters:  # clients from 2025 on
        return api.deserialize(text, kind, "application/json")
    return api.deserialize(text, kind)


def to_dict(model: Any) -> Any:
    """A model as the JSON the API server receives (camelCase keys, no None)."""
    return k8s.ApiClient().sanitize_for_serialization(model)


def unknown_fields(data: Mapping[str, Any], kind: str) -> list[str]:
    """The paths of the fields in ``data`` that model ``kind`` does not know (a misspelling, a wrong level)."""
    kept = to_dict(to_model(data, kind))
    return _dropped(data, kept, "")


def _dropped(given: Any, kept: Any, path: str) -> list[str]:
    if isinstance(given, Mapping):
        kept = kept if isinstance(kept, Mapping) else {}
        out = []
        for key, value in given.items():
            if value is None:
                continue
            if key not in kept:
                out.append(f"{path}.{key}" if path else str(key))
            else:
                out += _dropped(value, kept[key], f"{path}.{key}" if path else str(key))
        return out
    if isinstance(given, list) and isinstance(kept, list):
        pairs = enumerate(zip(given, kept, strict=False))
        return [miss for i, (a, b) in pairs for miss in _dropped(a, b, f"{path}[{i}]")]
    return []


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Pod manifest; ValueError if it is not one, or has fields a Pod does not."""
    with open(path, encoding="utf-8") as file:
        data = yaml.safe_load(file)
    if not isinstance(data, dict) or data.get("kind", "Pod") != "Pod":
        raise ValueError(f"{path} is not a Pod manifest (kind: Pod)")
    try:
        unknown = unknown_fields(data, "V1Pod")
    except ValueError as error:  # the client's models check types and required fields
        raise ValueError(f"{path} is not a valid Pod: {error}") from None
    if unknown:
        raise ValueError(f"{path}: fields a Pod does not have: {', '.join(unknown)}")
    return data


def build_worker_pod(name: str, manager_name: str, command: WorkerCommand, options: KubernetesOptions) -> Any:
    """The ``V1Pod`` of worker ``name``: the template's spec plus its name, labels, command line, keys, grace."""
    pod = to_model(copy.deepcopy(dict(options.template)), "V1Pod") if options.template else k8s.V1Pod()
    pod.api_version, pod.kind, pod.status = "v1", "Pod", None
    meta = pod.metadata or k8s.V1ObjectMeta()
    meta.name, meta.namespace, meta.generate_name = pod_name(name), options.namespace, None
    # What a template saved with `kubectl get pod -o yaml` carries from its Pod, and a create refuses.
    for server_set in ("uid", "resource_version", "creation_timestamp", "deletion_timestamp", "managed_fields"):
        setattr(meta, server_set, None)
    meta.owner_references = None
    meta.labels = {**(meta.labels or {}), **worker_labels(manager_name)}
    meta.annotations = {**(meta.annotations or {}), ANNOTATION_WORKER: name}
    pod.metadata = meta
    spec = pod.spec or k8s.V1PodSpec(containers=[])
    container = next((c for c in spec.containers if c.name == CONTAINER_NAME), None)
    if container is None:
        container = spec.containers[0] if spec.containers else k8s.V1Container(name=CONTAINER_NAME)
        spec.containers = [container, *(c for c in spec.containers if c is not container)]
    if options.image:
        container.image = options.image
    if not container.image:
        raise ValueError("the workers have no image: give --k8s-image, or a --k8s-pod-template with one")

    settings = command.settings
    if options.keys_secret:
        settings = dataclasses.replace(settings, keys_dir=KEYS_MOUNT, key_file=None, scheduler_key_file=None)
        spec.volumes = [v for v in spec.volumes or [] if v.name != KEYS_VOLUME] + [
            k8s.V1Volume(
                name=KEYS_VOLUME,
                secret=k8s.V1SecretVolumeSource(secret_name=options.keys_secret, default_mode=0o440),
            )
        ]
        container.volume_mounts = [m for m in container.volume_mounts or [] if m.name != KEYS_VOLUME] + [
            k8s.V1VolumeMount(name=KEYS_VOLUME, mount_path=KEYS_MOUNT, read_only=True)
        ]
    # args, not command: the image's entrypoint (tini in ours) stays PID 1, forwards SIGTERM and reaps.
    container.args = WorkerCommand(settings, python=options.python).argv(name)
    container.env = [e for e in container.env or [] if e.name != "SCALER_WORKER_NAME"] + [
        k8s.V1EnvVar(name="SCALER_WORKER_NAME", value=name)
    ]
    if options.cpu or options.memory:
        wanted = {key: value for key, value in (("cpu", options.cpu), ("memory", options.memory)) if value}
        resources = container.resources or k8s.V1ResourceRequirements()
        resources.requests = {**(resources.requests or {}), **wanted}
        resources.limits = {**(resources.limits or {}), **wanted}
        container.resources = resources
    spec.restart_policy = "Never"
    spec.termination_grace_period_seconds = math.ceil(settings.grace_period_seconds) + GRACE_MARGIN_SECONDS
    if spec.automount_service_account_token is None:
        spec.automount_service_account_token = False  # a worker never talks to the API server
    pod.spec = spec
    return pod


@dataclasses.dataclass(frozen=True)
class PodView:
    """What a Pod's status means for its worker."""

    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    detail: str = ""
    fatal: bool = False  # a waiting reason that waiting will not fix
    leaving: bool = False  # being deleted


def read_pod(pod: Any) -> PodView:
    """Read a ``V1Pod``'s status: its phase, and for a Pod that is not running, why."""
    status = pod.status or k8s.V1PodStatus()
    phase = status.phase or "Pending"
    leaving = pod.metadata.deletion_timestamp is not None
    if phase == "Failed":
        return PodView(phase, _why_failed(pod), leaving=leaving)
    if phase != "Pending":
        return PodView(phase, "node not reporting" if phase == "Unknown" else "", leaving=leaving)
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state is not None else None
        if waiting is not None and waiting.reason:
            detail = f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
            return PodView(phase, detail, waiting.reason in FATAL_WAITING_REASONS, leaving)
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return PodView(phase, f"{condition.reason}: {condition.message}", leaving=leaving)
    return PodView(phase, "", leaving=leaving)


def _why_failed(pod: Any) -> str:
    status = pod.status
    parts = [f"pod {pod.metadata.name} failed"]
    if status.reason:
        parts.append(f"{status.reason}: {status.message}" if status.message else status.reason)
    for container in status.container_statuses or []:
        ended = container.state.terminated if container.state is not None else None
        if ended is not None:
            text = f"container {container.name} {ended.reason or 'exited'} with code {ended.exit_code}"
            parts.append(f"{text}: {ended.message.strip()}" if ended.message else text)
    return "; ".join(parts)


def describe_api_error(error: Exception) -> str:
    """An ``ApiException`` (or a connection error) in one line: the status and the API server's message."""
    if isinstance(error, ApiException):
        try:
            message = json.loads(error.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = str(error.body or "")
        return f"{error.status} {error.reason}: {message}".strip().rstrip(":")
    return f"{type(error).__name__}: {error}"


@dataclasses.dataclass
class _Pod:
    pod_name: str
    created_at: float
    fatal_since: float | None = None


class KubernetesAdapter(EngineAdapter):
    """One Pod per worker of the manager called ``manager_name``; see the module docstring.

    ``api`` is a ``kubernetes.client.CoreV1Api`` (default: from the in-cluster service account,
    else the kubeconfig); anything with its create, delete and list calls for namespaced Pods does.
    """

    kind = "kubernetes"

    def __init__(
        self,
        manager_name: str,
        command: WorkerCommand,
        options: KubernetesOptions,
        api: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manager_name = check_manager_name(manager_name)
        if not _LABEL_VALUE.match(manager_name):
            raise ValueError(f"manager name {manager_name!r} must end with a letter or digit (a Kubernetes label)")
        settings = command.settings
        if not options.keys_secret and (settings.keys_dir or settings.key_file or settings.scheduler_key_file):
            raise ValueError(
                "the workers have keys but no Secret to find them in: give --k8s-keys-secret "
                "(a Secret holding worker.key_secret and scheduler.key)"
            )
        self.command = command
        self.options = options
        build_worker_pod(f"{manager_name}.0", manager_name, command, options)  # a bad template fails now
        self._own_api = api is None
        self.api = api if api is not None else core_api()
        self.grace_seconds = math.ceil(settings.grace_period_seconds) + GRACE_MARGIN_SECONDS
        self._clock = clock
        self._pods: dict[str, _Pod] = {}
        self._failed: dict[str, str] = {}
        self._stopping: set[str] = set()

    @property
    def namespace(self) -> str:
        """The namespace of the worker Pods."""
        return self.options.namespace

    def pod_of(self, name: str) -> str | None:
        """The Pod name of worker ``name``, if it has a Pod."""
        pod = self._pods.get(name)
        return pod.pod_name if pod is not None else None

    def adopt(self) -> list[str]:
        """Take over this manager's Pods (by label), except those already being deleted."""
        now = self._clock()
        try:
            pods = self._list()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            # Without the list, the manager would start a second set of workers: better stop (and be restarted).
            raise RuntimeError(
                f"cannot list the worker pods in namespace {self.namespace}: {describe_api_error(error)}"
            ) from error
        for pod in pods:
            name = (pod.metadata.annotations or {}).get(ANNOTATION_WORKER, "")
            if owned_by(self.manager_name, name) and pod.metadata.deletion_timestamp is None:
                self._pods[name] = _Pod(pod.metadata.name, now)
        return sorted(self._pods)

    def start(self, name: str) -> None:
        """Create worker ``name``'s Pod; a refusal (quota, RBAC, invalid) is FAILED with the API server's words."""
        body = build_worker_pod(name, self.manager_name, self.command, self.options)
        try:
            self.api.create_namespaced_pod(self.namespace, body, _request_timeout=_REQUEST_SECONDS)
        except ApiException as error:
            self._failed[name] = f"Kubernetes refused pod {body.metadata.name}: {describe_api_error(error)}"
            return
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # The Pod may exist all the same: the next poll tells (it is reported gone if it does not).
            logger.warning("worker manager %s: creating pod %s: %s", self.manager_name, body.metadata.name, error)
        self._pods[name] = _Pod(body.metadata.name, self._clock())
        logger.info("worker %s is pod %s/%s", name, self.namespace, body.metadata.name)

    def stop(self, name: str) -> None:
        """Delete worker ``name``'s Pod with the grace period: the kubelet sends SIGTERM and the worker drains."""
        pod = self._pods.get(name)
        if pod is None or name in self._stopping:
            return
        self._stopping.add(name)
        self._delete(pod.pod_name, self.grace_seconds)

    def poll(self) -> dict[str, WorkerStatus]:
        """List the Pods; delete and report those that cannot start or failed; forget those that ended."""
        now = self._clock()
        listed = {}
        for pod in self._list():
            listed[pod.metadata.name] = pod
        report: dict[str, WorkerStatus] = {}
        for name, mine in list(self._pods.items()):
            pod = listed.get(mine.pod_name)
            stopping = name in self._stopping
            if pod is None:
                del self._pods[name]
                self._stopping.discard(name)
                if not stopping:
                    self._failed[name] = (
                        f"pod {mine.pod_name} is gone: deleted by someone else, or evicted (kubectl delete, node drain)"
                    )
                continue
            view = read_pod(pod)
            why = self._why_give_up(mine, view, now) if not stopping and not view.leaving else None
            if view.phase in ("Succeeded", "Failed") or why is not None:
                del self._pods[name]
                self._stopping.discard(name)
                if not view.leaving:  # one being deleted goes by itself
                    self._delete(mine.pod_name, 0)
                if not stopping and (why is not None or view.phase == "Failed"):
                    self._failed[name] = why or view.detail
                continue
            state = ManagedWorkerState.STARTING if view.phase == "Pending" else ManagedWorkerState.RUNNING
            report[name] = WorkerStatus(state, view.detail)
        report.update({name: WorkerStatus(ManagedWorkerState.FAILED, why) for name, why in self._failed.items()})
        return report

    def forget(self, name: str) -> None:
        """Drop a FAILED worker (its Pod is already deleted)."""
        self._failed.pop(name, None)

    def close(self) -> None:
        """Close the API client if this adapter made it; the Pods keep running."""
        if self._own_api:
            self.api.api_client.close()

    def _why_give_up(self, mine: _Pod, view: PodView, now: float) -> str | None:
        if view.phase != "Pending":
            return None
        if view.fatal:
            mine.fatal_since = mine.fatal_since if mine.fatal_since is not None else now
            if now - mine.fatal_since >= self.options.fatal_confirm_seconds:
                return f"pod {mine.pod_name} cannot start: {view.detail}"
        else:
            mine.fatal_since = None
        timeout = self.options.pending_timeout_seconds
        if timeout > 0 and now - mine.created_at > timeout:
            return f"pod {mine.pod_name} still pending after {timeout:g} s: {view.detail or 'no reason given'}"
        return None

    def _list(self) -> list[Any]:
        return list(
            self.api.list_namespaced_pod(
                self.namespace, label_selector=label_selector(self.manager_name), _request_timeout=_REQUEST_SECONDS
            ).items
        )

    def _delete(self, name: str, grace_seconds: int) -> None:
        try:
            self.api.delete_namespaced_pod(
                name, self.namespace, grace_period_seconds=grace_seconds, _request_timeout=_REQUEST_SECONDS
            )
        except ApiException as error:
            if error.status != 404:
                logger.warning("worker manager %s: deleting pod %s: %s", self.manager_name, name, error)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            logger.warning("worker manager %s: deleting pod %s: %s", self.manager_name, name, error)


def default_namespace() -> str:
    """The namespace this process runs in (its service account's), else the kubeconfig context's, else default."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as file:
            return file.read().strip() or "default"
    except OSError:
        pass
    try:
        _, active = k8s_config.list_kube_config_contexts()
        return str(active["context"].get("namespace") or "default")
    except (k8s_config.ConfigException, OSError, KeyError, TypeError):
        return "default"


def core_api() -> Any:
    """A ``CoreV1Api`` from the in-cluster service account, else from ``$KUBECONFIG`` / ``~/.kube/config``."""
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config()
        except (k8s_config.ConfigException, OSError) as error:
            raise RuntimeError(f"no Kubernetes cluster to talk to (not in a Pod, no kubeconfig): {error}") from None
    return k8s.CoreV1Api()


def from_config(config: WorkerManagerConfig, command: WorkerCommand, api: Any = None) -> KubernetesAdapter:
    """The adapter ``scaler_worker_manager kubernetes`` runs, from its ``k8s_*`` settings."""
    template = load_template(config.k8s_pod_template) if config.k8s_pod_template else None
    options = KubernetesOptions(
        namespace=config.k8s_namespace or default_namespace(),
        template=template,
        image=config.k8s_image,
        keys_secret=config.k8s_keys_secret,
        cpu=config.k8s_cpu,
        memory=config.k8s_memory,
        pending_timeout_seconds=config.k8s_pending_timeout_seconds,
    )
    return KubernetesAdapter(config.manager_name, command, options, api=api)
