"""`place_signing_ca` on Kubernetes annotates the server's pods so the kubelet rewrites the
Secret volume at once (a pod update makes it sync that pod), instead of on its own minute.
What the kubelet then does is proven on the test clusters by the key-compromise drill's
`rotate root` (its bridge and switch steps); here: which pods are touched, how, and that a
caller without permission to patch pods still places the CA."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from spire_fabric.runtime.kubernetes.deployment import SIGNING_CA_PLACED, _nudge_server_pods


class Core:
    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.listed: list[tuple[str, str]] = []
        self.patched: list[tuple[str, str, Any]] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        self.listed.append((namespace, label_selector))
        pods = [SimpleNamespace(metadata=SimpleNamespace(name=f"srv-{i}")) for i in range(2)]
        return SimpleNamespace(items=pods)

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any) -> None:
        if self.status is not None:
            raise ApiException(status=self.status, reason="nope")
        self.patched.append((name, namespace, body))


def test_every_pod_of_the_server_gets_the_digest_of_what_was_placed() -> None:
    core = Core()
    _nudge_server_pods(SimpleNamespace(core=core), "srv", "spire", b"chain-1")  # type: ignore[arg-type]
    (ns, selector), = core.listed
    assert ns == "spire" and "srv" in selector and "server" in selector
    assert [p[0] for p in core.patched] == ["srv-0", "srv-1"]
    digests = {p[2]["metadata"]["annotations"][SIGNING_CA_PLACED] for p in core.patched}
    assert len(digests) == 1
    other = Core()
    _nudge_server_pods(SimpleNamespace(core=other), "srv", "spire", b"chain-2")  # type: ignore[arg-type]
    assert other.patched[0][2]["metadata"]["annotations"][SIGNING_CA_PLACED] not in digests


def test_without_permission_to_patch_pods_the_nudge_is_skipped_and_other_errors_raise() -> None:
    _nudge_server_pods(SimpleNamespace(core=Core(403)), "srv", "spire", b"c")  # type: ignore[arg-type]
    with pytest.raises(ApiException):
        _nudge_server_pods(SimpleNamespace(core=Core(500)), "srv", "spire", b"c")  # type: ignore[arg-type]
