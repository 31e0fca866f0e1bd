"""`spire_fabric.testing.kubeconfig`: any kubeconfig with a context per cluster is accepted,
and one that cannot serve is refused with a message naming what is wrong (the clusters
themselves are exercised by tests/kubernetes_clusters)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spire_fabric.testing import kubeconfig as kc


def _kubeconfig(path: Path, contexts: list[str]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": "https://127.0.0.1:1"}}
                     for c in contexts],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": c, "context": {"cluster": c, "user": "u"}} for c in contexts],
    }))
    return path


def test_contexts_default_to_the_design_names_and_follow_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kc.UPSTREAM_CONTEXT_ENV, raising=False)
    monkeypatch.delenv(kc.DOWNSTREAM_CONTEXT_ENV, raising=False)
    assert kc.cluster_contexts() == {kc.UPSTREAM: "upstream-spire-cluster",
                                     kc.DOWNSTREAM: "downstream-spire-cluster"}
    monkeypatch.setenv(kc.UPSTREAM_CONTEXT_ENV, "kind-up")
    monkeypatch.setenv(kc.DOWNSTREAM_CONTEXT_ENV, "k3d-down")
    assert kc.cluster_contexts() == {kc.UPSTREAM: "kind-up", kc.DOWNSTREAM: "k3d-down"}


def test_a_missing_context_is_named_with_the_ones_there_and_the_variable(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "config", ["kind-up", "kind-other"])
    with pytest.raises(kc.KubeconfigError) as err:
        kc.two_clusters(path, {kc.UPSTREAM: "kind-up", kc.DOWNSTREAM: "kind-down"})
    message = str(err.value)
    assert "no context 'kind-down' for the downstream-spire-cluster" in message
    assert "contexts: kind-other, kind-up" in message
    assert kc.DOWNSTREAM_CONTEXT_ENV in message and "\n" not in message


def test_an_unreadable_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(kc.KubeconfigError, match=r"kubeconfig .*nowhere: cannot be read"):
        kc.two_clusters(tmp_path / "nowhere")
    (tmp_path / "list").write_text("- a\n- b\n")
    with pytest.raises(kc.KubeconfigError, match="not a kubeconfig"):
        kc.two_clusters(tmp_path / "list")


def test_a_cluster_that_does_not_answer_is_named_by_its_context(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "config", ["kind-up"])
    with pytest.raises(kc.KubeconfigError, match=r"context 'kind-up' of .*: cannot list nodes"):
        kc.two_clusters(path, {kc.UPSTREAM: "kind-up"})
