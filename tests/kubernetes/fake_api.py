"""An in-memory stand-in for the few ``CoreV1Api`` calls the kubernetes adapter makes, and a kubelet's moves.

It keeps Pods as the JSON an API server would store, checks every created Pod against the
Kubernetes schema (kubernetes-validate, strict: an unknown field fails), answers ``list`` with
real ``V1Pod`` models deserialized by the client, and raises the client's own ``ApiException``
where a server would (409 on a duplicate name, 404 on a missing Pod, a queued refusal). The test
plays the kubelet and the scheduler with ``run``, ``wait``, ``unschedulable``, ``exit``, ``evict``
and ``finish_deletion``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from typing import Any

import kubernetes_validate
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scaler.worker_manager.kubernetes import to_model

SCHEMA_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def validate_strictly(document: dict[str, Any]) -> None:
    """Raise ``AssertionError`` naming the first schema error of ``document`` (unknown fields included)."""
    for version in SCHEMA_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(part) for part in error.path)
            raise AssertionError(
                f"{document.get('kind')} {document.get('metadata', {}).get('name')} (schema {version}) at {where}: "
                f"{error.message}"
            ) from None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status})
    return error


@dataclasses.dataclass
class Call:
    verb: str
    name: str
    grace_period_seconds: int | None = None


class FakeCoreV1Api:
    """Pods in memory: create, delete, list (with an equality label selector), and the kubelet's moves."""

    def __init__(self, namespace: str = "scaler") -> None:
        self.namespace = namespace
        self.pods: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.refusals: list[ApiException] = []
        self._api = client.ApiClient()
        self._uid = 0

    # -- the API calls -----------------------------------------------------------------------

    def create_namespaced_pod(self, namespace: str, body: Any, **_: Any) -> Any:
        assert namespace == self.namespace, f"pod created in {namespace}, not {self.namespace}"
        data = self._api.sanitize_for_serialization(body)
        validate_strictly(data)
        name = data["metadata"]["name"]
        self.calls.append(Call("create", name))
        if self.refusals:
            raise self.refusals.pop(0)
        if name in self.pods:
            raise _error(409, "Conflict", f'pods "{name}" already exists')
        assert data["metadata"].get("namespace") in (None, namespace)
        self._uid += 1
        data["metadata"].update(namespace=namespace, uid=f"uid-{self._uid}", creationTimestamp=_now())
        data["status"] = {"phase": "Pending"}
        self.pods[name] = data
        return self._model(data)

    def delete_namespaced_pod(
        self, name: str, namespace: str, grace_period_seconds: int | None = None, **_: Any
    ) -> Any:
        assert namespace == self.namespace
        self.calls.append(Call("delete", name, grace_period_seconds))
        pod = self.pods.get(name)
        if pod is None:
            raise _error(404, "Not Found", f'pods "{name}" not found')
        grace = (
            grace_period_seconds
            if grace_period_seconds is not None
            else pod["spec"].get("terminationGracePeriodSeconds", 30)
        )
        if grace == 0 or pod["status"]["phase"] in ("Succeeded", "Failed") or not self._started(pod):
            del self.pods[name]
        else:  # the kubelet sends SIGTERM now, SIGKILL after the grace period; finish_deletion() ends it
            pod["metadata"].setdefault("deletionTimestamp", _now())
            pod["metadata"]["deletionGracePeriodSeconds"] = grace
        return client.V1Status(status="Success")

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **_: Any) -> Any:
        assert namespace == self.namespace
        wanted = dict(term.split("=", 1) for term in label_selector.split(",") if term)
        items = [
            self._model(pod)
            for pod in list(self.pods.values())  # a snapshot: the manager thread lists while a test moves Pods
            if all(pod["metadata"].get("labels", {}).get(key) == value for key, value in wanted.items())
        ]
        return client.V1PodList(items=items)

    # -- the kubelet's and the scheduler's moves -----------------------------------------------

    def add(self, manifest: dict[str, Any], phase: str = "Running") -> None:
        """A Pod that was there before (e.g. made by a manager that restarted since)."""
        data = copy.deepcopy(manifest)
        data["metadata"].setdefault("namespace", self.namespace)
        data["status"] = {"phase": phase}
        self.pods[data["metadata"]["name"]] = data

    def run(self, name: str) -> None:
        """Scheduled, image pulled, container started."""
        pod = self.pods[name]
        pod["status"] = {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [self._container(pod, {"running": {"startedAt": _now()}})],
        }

    def wait(self, name: str, reason: str, message: str = "") -> None:
        """Scheduled, but the container waits (ContainerCreating, ImagePullBackOff...)."""
        pod = self.pods[name]
        waiting = {"reason": reason, **({"message": message} if message else {})}
        pod["status"] = {"phase": "Pending", "containerStatuses": [self._container(pod, {"waiting": waiting})]}

    def unschedulable(self, name: str, message: str) -> None:
        pod = self.pods[name]
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        pod["status"] = {"phase": "Pending", "conditions": [condition]}

    def exit(self, name: str, code: int, reason: str = "") -> None:
        """The container exited (restartPolicy Never: the Pod ends Succeeded or Failed)."""
        pod = self.pods[name]
        terminated = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error")}
        pod["status"] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [self._container(pod, {"terminated": terminated})],
        }

    def evict(self, name: str, message: str) -> None:
        self.pods[name]["status"] = {"phase": "Failed", "reason": "Evicted", "message": message}

    def finish_deletion(self, name: str) -> None:
        """A Pod being deleted is gone (its container exited within the grace period)."""
        assert "deletionTimestamp" in self.pods[name]["metadata"]
        del self.pods[name]

    def close(self) -> None:
        self._api.close()

    # -- helpers ------------------------------------------------------------------------------

    def _started(self, pod: dict[str, Any]) -> bool:
        return any("running" in s.get("state", {}) for s in pod["status"].get("containerStatuses", []))

    def _container(self, pod: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        spec = pod["spec"]["containers"][0]
        return {
            "name": spec["name"],
            "image": spec.get("image", ""),
            "imageID": "",
            "ready": "running" in state,
            "restartCount": 0,
            "state": state,
        }

    def _model(self, data: dict[str, Any]) -> Any:
        return to_model(data, "V1Pod")
