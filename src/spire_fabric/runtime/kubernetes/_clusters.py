"""Which kubeconfig context serves which cluster of the topology, and the API clients of
each. Everything that talks to a cluster goes through a :class:`ClusterApi`."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient

from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.topology import Topology

# The source design's cluster contexts, for the enterprise preset's two clusters.
DEFAULT_CONTEXTS: Mapping[str, str] = {
    "upstream-cluster": "upstream-spire-cluster",
    "downstream-cluster": "downstream-spire-cluster",
}
REQUEST_TIMEOUT = 15.0


def label_selector(labels: Mapping[str, str]) -> str:
    """``k=v,…`` for a list call's ``label_selector``, in a stable order."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass
class ClusterApi:
    """One cluster of the topology as reached through one kubeconfig context."""

    cluster: str
    context: str
    api: k8s.ApiClient
    _dyn: DynamicClient | None = field(default=None, repr=False)
    # The dynamic client's discovery cache is not thread-safe: plan reads objects from 8
    # threads (at_once), and on a fresh cluster concurrent lookups that fill the cache
    # failed inside the client with KeyError: 'api'. Lookups go one at a time.
    discovery_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # Typed Any on purpose: the client's models declare every attribute Optional, while the
    # API server fills what we read (metadata, spec, status of a listed object); checking
    # each for None would bury the logic. What we return from here is typed.
    @functools.cached_property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    def streaming_core(self) -> Any:
        """A CoreV1Api on an ApiClient of its own, for one exec or port-forward stream.

        The client's ``stream``/``portforward`` swap ``call_api`` on the ApiClient they are
        given for the call's duration: on a shared one, a list made meanwhile by another
        thread goes out as a websocket ("Handshake status 200 OK"), and two overlapping
        streams can leave it swapped for good."""
        return k8s.CoreV1Api(k8s.ApiClient(self.api.configuration))

    @functools.cached_property
    def apps(self) -> Any:
        return k8s.AppsV1Api(self.api)

    @property
    def dyn(self) -> DynamicClient:
        with self.discovery_lock:
            if self._dyn is None:
                self._dyn = DynamicClient(self.api)
            return self._dyn

    def refresh_discovery(self) -> None:
        """New CRDs are invisible to a discovery cache made before them."""
        with self.discovery_lock:
            self._dyn = None

    def where(self) -> str:
        return f"cluster {self.cluster} (context {self.context})"

    def close(self) -> None:
        self.api.close()


def resolve_contexts(
    topology: Topology, kubeconfig: str | None, overrides: Mapping[str, str]
) -> dict[str, str]:
    """cluster -> context: ``--context`` first, then a context named like the cluster, then
    the source design's names, then (one-cluster topologies only) the current context."""
    available, current = _contexts(kubeconfig)
    unknown = set(overrides) - {c.name for c in topology.clusters}
    if unknown:
        raise KubernetesTargetError(
            f"--context {sorted(unknown)[0]}=…: topology {topology.name} has no cluster of "
            f"that name (it has: {', '.join(c.name for c in topology.clusters)})"
        )
    out: dict[str, str] = {}
    for c in topology.clusters:
        if c.name in overrides:
            ctx = overrides[c.name]
            source = f"--context {c.name}={ctx}"
        elif c.name in available:
            ctx, source = c.name, "a context of the same name"
        elif c.name in DEFAULT_CONTEXTS:
            ctx, source = DEFAULT_CONTEXTS[c.name], "the source design's default"
        elif len(topology.clusters) == 1 and current:
            ctx, source = current, "the current context"
        else:
            raise KubernetesTargetError(
                f"no context for cluster {c.name}: pass --context {c.name}=<context> "
                f"(kubeconfig {_where(kubeconfig)} has: {', '.join(sorted(available))})"
            )
        if ctx not in available:
            raise KubernetesTargetError(
                f"unknown context {ctx!r} for cluster {c.name} ({source}): kubeconfig "
                f"{_where(kubeconfig)} has {', '.join(sorted(available)) or 'no contexts'}"
            )
        out[c.name] = ctx
    return out


def connect(
    topology: Topology, kubeconfig: str | None, contexts: Mapping[str, str]
) -> dict[str, ClusterApi]:
    """A client per cluster, each checked to answer (the version endpoint) before use."""
    out: dict[str, ClusterApi] = {}
    for cluster, ctx in contexts.items():
        try:
            api = k8s_config.new_client_from_config(config_file=kubeconfig, context=ctx)
        except (ConfigException, OSError) as err:
            raise KubernetesTargetError(f"context {ctx} of {_where(kubeconfig)}: {err}") from err
        conn = ClusterApi(cluster, ctx, api)
        try:
            k8s.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT)
        except Exception as err:
            raise KubernetesTargetError(
                f"cannot reach the API server of {conn.where()}: {_short(err)}"
            ) from err
        out[cluster] = conn
    return out


def _contexts(kubeconfig: str | None) -> tuple[set[str], str | None]:
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as err:
        raise KubernetesTargetError(f"kubeconfig {_where(kubeconfig)}: {err}") from err
    return {c["name"] for c in contexts}, (current or {}).get("name")


def _where(kubeconfig: str | None) -> str:
    return kubeconfig or "$KUBECONFIG or ~/.kube/config"


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def api_error_message(err: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the reason."""
    import json

    body = getattr(err, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)[:500]
        except (ValueError, AttributeError):
            return str(body)[:500]
    return str(getattr(err, "reason", err))
