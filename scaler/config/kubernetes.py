"""``KubernetesSettings``: the ``kubernetes`` adapter's settings, mixed into ``WorkerManagerConfig``.

They live here, not in ``worker_manager.py``, so the adapter's options stay in one place; the
manager's configuration only lists this class among its bases.
"""

from __future__ import annotations

import dataclasses

from scaler.config.logging_setup import LoggingSettings
from scaler.config.settings import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class KubernetesSettings(LoggingSettings):
    """How the ``kubernetes`` adapter makes each worker's Pod."""

    k8s_namespace: str = setting(
        "",
        help="the namespace of the worker Pods (default: the manager's own when it runs in a Pod, else the "
        "kubeconfig context's, else default)",
        group="kubernetes adapter",
    )
    k8s_pod_template: str = setting(
        "",
        help="a Pod manifest (YAML) whose spec every worker Pod copies: image, resources, node selectors, "
        "tolerations...; the adapter adds the name, labels, worker command line, keys and grace period",
        group="kubernetes adapter",
        metavar="FILE",
    )
    k8s_image: str = setting(
        "", help="the workers' container image (overrides the template's)", group="kubernetes adapter"
    )
    k8s_keys_secret: str = setting(
        "",
        help="the Secret holding worker.key_secret and scheduler.key, mounted in each worker Pod as its "
        "--keys-dir (needed when the workers have keys)",
        group="kubernetes adapter",
        metavar="NAME",
    )
    k8s_cpu: str = setting(
        "",
        help="each worker's CPU request and limit, e.g. 1 or 500m (default: the template's)",
        group="kubernetes adapter",
    )
    k8s_memory: str = setting(
        "",
        help="each worker's memory request and limit, e.g. 2Gi (default: the template's)",
        group="kubernetes adapter",
    )
    k8s_pending_timeout_seconds: float = setting(
        300.0,
        help="delete a worker Pod still pending (e.g. Unschedulable) after this long and report it failed "
        "(0: never; an image that cannot be pulled fails sooner)",
        group="kubernetes adapter",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k8s_pending_timeout_seconds < 0:
            raise ValueError(f"k8s_pending_timeout_seconds cannot be negative, got {self.k8s_pending_timeout_seconds}")
