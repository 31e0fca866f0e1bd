"""`restart_replica` on Kubernetes (what `rotate root` rolls the other replicas with): the
pod is deleted and the call returns only once the StatefulSet's replacement of the same
name, a new uid, runs with every container ready; a replacement that never gets ready is
an error naming what was seen. A fake core API plays the pod's life: what the kubelet
and the StatefulSet controller do is the clusters' (not run here)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._pods import replace_pod


def _pod(uid: str, phase: str = "Running", ready: bool = True) -> Any:
    statuses = [SimpleNamespace(ready=ready), SimpleNamespace(ready=True)] if phase else []
    status = SimpleNamespace(phase=phase, container_statuses=statuses)
    return SimpleNamespace(metadata=SimpleNamespace(uid=uid), status=status)


class Core:
    """Reads return the pod's life after the delete, one state per read (404: gone)."""

    def __init__(self, life: list[Any]) -> None:
        self.life = life
        self.deleted: list[tuple[str, str]] = []
        self.reads = 0

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self.reads += 1
        if not self.deleted:
            return _pod("old")
        state = self.life.pop(0) if len(self.life) > 1 else self.life[0]
        if state is None:
            raise ApiException(status=404, reason="Not Found")
        return state

    def delete_namespaced_pod(self, name: str, namespace: str) -> None:
        self.deleted.append((name, namespace))


def _conn(core: Core) -> Any:
    return SimpleNamespace(core=core, where=lambda: "cluster downstream")


def test_returns_once_the_replacement_of_the_same_name_is_ready() -> None:
    core = Core([_pod("old"), None, _pod("new", "Pending", False), _pod("new", ready=False),
                 _pod("new")])  # fmt: skip
    replace_pod(_conn(core), "spire", "srv-1", timeout=30, interval=0)
    assert core.deleted == [("srv-1", "spire")]
    assert core.reads == 6  # the uid before, then terminating, gone, pending, not ready, ready
    assert core.life == [_pod("new")]


def test_a_replacement_that_never_gets_ready_is_an_error_naming_what_was_seen() -> None:
    core = Core([_pod("new", ready=False)])
    with pytest.raises(KubernetesTargetError,
                       match=r"spire/srv-1 of cluster downstream not back and ready after "
                             r"0\.01 s: replaced, Running, not ready"):  # fmt: skip
        replace_pod(_conn(core), "spire", "srv-1", timeout=0.01, interval=0.005)
    old = Core([_pod("old")])  # never even deleted by the controller
    with pytest.raises(KubernetesTargetError, match="the old pod, terminating"):
        replace_pod(_conn(old), "spire", "srv-1", timeout=0.01, interval=0.005)
