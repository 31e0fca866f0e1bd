"""`plan` and `up` on Kubernetes: the renderer's stages applied in order with server-side
apply, the installer core's SPIRE API steps between them, each rollout waited for.

Order (:data:`~spire_fabric.render.kubernetes.STAGES`): namespaces, CRDs (waited until
Established), RBAC, the installer's Secrets, MySQL, the servers; then federation bundles
through the Server API before anything federating is registered, node labels for agents
(k8s_psat names an agent by its node) and join tokens; then agents, registrations
(controller-manager resources, or entries through the SPIRE API), the workloads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes.client.exceptions import ApiException

import spire_fabric.runtime.kubernetes._objects as objects
from spire_fabric.identity import join_token_agent_id
from spire_fabric.render.kubernetes import (
    STAGES,
    InstallerSecrets,
    Stage,
    join_token_secret,
    selector_labels,
    staged_objects,
)
from spire_fabric.runtime.core import (
    FederationWork,
    apply_registrations,
    entry_changes,
    mint_join_token,
)
from spire_fabric.runtime.core.versions import checked_versions, image_version, save_versions
from spire_fabric.runtime.deployment import Change, DeploymentPlan, StepReporter, no_report
from spire_fabric.runtime.kubernetes._access import ClusterAccess
from spire_fabric.runtime.kubernetes._clusters import label_selector
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._installer_secrets import SecretValues
from spire_fabric.runtime.kubernetes._placement import Placement, label_nodes, node_placement
from spire_fabric.runtime.kubernetes._preflight import preflight
from spire_fabric.runtime.kubernetes._state import save
from spire_fabric.runtime.kubernetes._teardown import cluster_label
from spire_fabric.runtime.kubernetes._view import ClusterDeployment
from spire_fabric.runtime.kubernetes._waits import wait_crds_established, wait_rollouts
from spire_fabric.server import SpireServerClient
from spire_fabric.topology import (
    SpireUpstreamAuthority,
    Topology,
    agent_node_attestor,
    published_ports,
)

__all__ = ["KubernetesInstaller"]

Obj = dict[str, Any]
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Overlap: a stage's pods start while the next stages apply, where nothing in between
# needs them ready. The agents are waited for with the workloads: registrations need no
# agent, and a workload waits for its SVID by itself (its identity timeout, 30 s), so the
# workloads' pods start (image, interpreter) while the agents attest; before, each waited
# for the other (8.5 s, then 13.8 s). Both are still waited for until ready before `up`
# goes on, and the stage order is unchanged for anything that needs it.
APPLIED_ONLY = {"06-agents.yaml": "SPIRE agents (started; waited for with the workloads)"}
WORKLOADS_STAGE = "08-workloads.yaml"
WAITS_WITH = {WORKLOADS_STAGE}
# Stages that need nothing but what exists before the stage named (Prometheus and
# Alertmanager: their namespace, policies and config): applied then, so their pods start
# while MySQL, the servers and the agents come up, and waited for at their own place.
EARLY = {"09-monitoring.yaml": "04-mysql.yaml"}


# What other objects of a stage live in or are of: applied first, one after the other.
CONTAINERS_KINDS = ("Namespace", "CustomResourceDefinition")


def _apply_waves(batch: list[tuple[str, Obj]]) -> list[list[tuple[str, Obj]]]:
    """A stage's objects in the order they can be applied, each wave all at once:
    namespaces and CRDs (one a wave, in stage order), then what pods use (ConfigMaps,
    Secrets, claims, Services, accounts), then what makes pods. A pod made before its
    ConfigMap or claim exists fails to mount it, and the kubelet tries again only 10-15 s
    later."""
    first = [[i] for i in batch if i[1]["kind"] in CONTAINERS_KINDS]
    used = [i for i in batch if i[1]["kind"] not in (*CONTAINERS_KINDS, *ROLLOUT_KINDS)]
    makers = [i for i in batch if i[1]["kind"] in ROLLOUT_KINDS]
    return [*first, *(wave for wave in (used, makers) if wave)]


class KubernetesInstaller:
    """Plan and apply one topology on its clusters (a provider of the installer core)."""

    def __init__(self, deployment: ClusterDeployment, access: ClusterAccess) -> None:
        self.d = deployment
        self.access = access
        self.secret_values = SecretValues(access.state_dir)
        self._placement: Placement | None = None
        self._writing = False  # set by `up` after its checks: before, nothing is written

    @property
    def topology(self) -> Topology:
        return self.access.topology

    def _client(self, name: str) -> SpireServerClient:
        return self.d.server(name)

    # ---- what is applied -----------------------------------------------------------------

    def secrets(self) -> InstallerSecrets:
        """The Secrets' values: made (and kept) only once `up` has passed its checks."""
        self.secret_values.adopt_live(self.topology, self.access.clusters)
        return self.secret_values.values(self.topology, make=self._writing)

    def rendered(self) -> list[tuple[str, str, Obj]]:
        """(cluster, stage file, object) for every object, the Secrets' values filled in."""
        return [
            (cluster, file, o)
            for cluster, file, objs in staged_objects(self.topology, self.secrets())
            for o in objs
        ]

    def check(self) -> Placement:
        """Everything `up` can find wrong before it changes anything (permissions, foreign
        namespaces, taken NodePorts, the project image on no node, too few nodes); returns the
        node placement."""
        if self._placement is None:
            clusters = self.access.clusters
            # the objects without the Secrets' values: reading those needs permissions
            # the check is there to ask about first
            skeletons = staged_objects(self.topology)
            preflight(self.access.name, [(c, o) for c, _, objs in skeletons for o in objs],
                      clusters)  # fmt: skip
            self._placement = node_placement(self.topology, clusters)
        return self._placement

    # ---- plan ----------------------------------------------------------------------------

    def plan(self) -> DeploymentPlan:
        changes: list[Change] = []
        notes: list[str] = []
        unchanged = 0
        rendered = self.rendered()
        for found in objects.at_once(self._planned, rendered):
            if isinstance(found, Change):
                changes.append(found)
            elif found:
                notes.append(found)
            else:
                unchanged += 1
        for cluster, ref in self._stale(rendered):
            changes.append(Change("delete", ref.kind, f"{cluster}/{_ref_name(ref)}"))
        running = self._servers_running()
        try:
            changes += self._federation().changes(running)
        except Exception as err:
            notes.append(f"cannot read federation: {err}")
        if self.topology.kubernetes.registration == "spire-api":
            for s in sorted(running):
                try:
                    changes += entry_changes(s, self.d.entry_plan(s))
                except Exception as err:
                    notes.append(f"{s}: cannot read entries: {err}")
        published = published_ports(self.topology, "kubernetes")
        versions = tuple(self.planned_versions().items())
        return DeploymentPlan(self.access.name, "kubernetes", tuple(changes), tuple(notes),
                              unchanged, published, versions)  # fmt: skip

    def _planned(self, item: tuple[str, str, Obj]) -> Change | str:
        """One object's change: created, updated (its fields), or "" when unchanged; a
        dry run the API refuses is a note (its message)."""
        cluster, _, o = item
        conn = self.access.clusters[cluster]
        ref = objects.ObjectRef.of(o)
        name = f"{cluster}/{_ref_name(ref)}"
        live = objects.get_live(conn, ref)
        if live is None:
            return Change("create", ref.kind, name)
        try:
            applied = objects.apply(conn, o, dry_run=True)
        except KubernetesTargetError as err:
            return str(err)
        fields = objects.changed_fields(live, applied)
        return Change("update", ref.kind, name, fields=tuple(fields)) if fields else ""

    def planned_versions(self) -> dict[str, str]:
        """The SPIRE version of every server and agent, read from the tags of the images
        they will run (settings override the topology's), checked against the last `up`."""
        images = self.topology.kubernetes.images
        server, agent = image_version(images.server), image_version(images.agent)
        return checked_versions(self.topology, self.access.state_dir, server, agent)

    def _federation(self) -> FederationWork:
        # with a controller manager its ClusterFederatedTrustDomains own the relationships
        own = self.topology.kubernetes.registration == "spire-api"
        return FederationWork(self.topology, "kubernetes", self._client, relationships=own)

    def _stale(self, rendered: list[tuple[str, str, Obj]]) -> list[tuple[str, objects.ObjectRef]]:
        """Objects with our labels that the topology no longer has. Objects another object
        owns (a StatefulSet's volume claims) go with their owner and are not listed."""
        desired = {(c, objects.ObjectRef.of(o)) for c, _, o in rendered}
        out = []
        for cluster, conn in self.access.clusters.items():
            for live in objects.list_ours(conn, self.access.name):
                ref = objects.ObjectRef.of(live)
                meta = live.get("metadata") or {}
                owned = meta.get("owner_references") or meta.get("ownerReferences")
                if owned or cluster_label(live) != cluster or (cluster, ref) in desired:
                    continue
                out.append((cluster, ref))
        return out

    def _servers_running(self) -> set[str]:
        return {s.name for s in self.topology.servers if self.d.server_health(s.name)[1]}

    # ---- up ------------------------------------------------------------------------------

    def up(
        self, report: StepReporter = no_report, plan: DeploymentPlan | None = None
    ) -> DeploymentPlan:
        t = self.topology
        with report("check clusters (contexts, permissions, namespaces, NodePorts, images)"):
            placement = self.check()
        plan = plan if plan is not None else self.plan()
        versions = self.planned_versions()  # a skew SPIRE does not support changes nothing
        save(self.access.state_dir, self.access.written_topology, self.access.settings, t)
        self._writing = True
        # A nested server gets its CA through its parent's agent, with an entry that the
        # registrations stage makes: it (and its agents) can only be ready after that.
        nested = {s.name for s in t.servers
                  if isinstance(s.upstream_authority, SpireUpstreamAuthority)}  # fmt: skip
        deferred: list[tuple[str, objects.ObjectRef]] = []
        later: list[tuple[str, objects.ObjectRef]] = []  # applied, waited for with WAITS_WITH
        for stage in STAGES:
            # rendered again per stage: Secrets and join tokens made by earlier stages
            rendered = self.rendered()
            batch = [(c, o) for c, f, o in rendered if f == stage.file]
            early = [(c, o) for c, f, o in rendered if EARLY.get(f) == stage.file]
            if early:
                with report("start what waits on nothing (Prometheus, Alertmanager)"):
                    for cluster, o in early:
                        objects.apply(self.access.clusters[cluster], o)
            spire_api = stage.file.startswith("07-") and t.kubernetes.registration == "spire-api"
            if batch or spire_api:
                # a stage waited for with the ones before it: applied first, then all waited
                together = stage.file in WAITS_WITH and bool(later)
                title = APPLIED_ONLY.get(stage.file) or (
                    f"{stage.title.removesuffix(' (until ready)')} (started)" if together
                    else stage.title)  # fmt: skip
                with report(title):
                    waits, more = self._apply_stage(stage, batch, nested, spire_api)
                    deferred += more
                    if stage.file == WORKLOADS_STAGE:
                        self.d.start_identity_probes()
                    if stage.file in APPLIED_ONLY:
                        later, waits = later + waits, []
                    elif not together:
                        self._wait(waits)
                        waits = []
                if waits:
                    with report("SPIRE agents (until ready)"):
                        self._wait(later)
                    later = []
                    with report(stage.title):
                        self._wait(waits)
            if stage.file.startswith("07-") and deferred:
                with report("nested SPIRE servers and their agents (until ready)"):
                    self._wait(deferred)
                deferred = []
            if stage.then == "federation":
                with report("bootstrap federation bundles"):
                    self._federation().apply(self._servers_running())
                with report("label nodes for agents"):
                    label_nodes(placement, self.access.clusters)
                with report("join tokens"):
                    self._mint_join_tokens()
        if later:  # a topology without workloads
            with report("SPIRE agents (until ready)"):
                self._wait(later)
        stale = self._stale(self.rendered())
        if stale:
            with report("delete what the topology no longer has"):
                for cluster, conn in self.access.clusters.items():
                    refs = [r for c, r in stale if c == cluster]
                    objects.delete(conn, refs)
                    objects.wait_gone(conn, refs, self.access.settings.timeout)
        save_versions(self.access.state_dir, versions)
        return plan

    def _apply_stage(
        self, stage: Stage, batch: list[tuple[str, Obj]], nested: set[str], spire_api: bool
    ) -> tuple[list[tuple[str, objects.ObjectRef]], list[tuple[str, objects.ObjectRef]]]:
        """Apply (CRDs waited until Established); returns the rollouts to wait for, and
        those deferred until the registrations exist (nested servers and their agents)."""
        clusters = self.access.clusters
        for wave in _apply_waves(batch):
            objects.at_once(lambda item: objects.apply(clusters[item[0]], item[1]), wave)
        if stage.file.startswith("01-"):
            for cluster, conn in clusters.items():
                names = [o["metadata"]["name"] for c, o in batch if c == cluster]
                if names:
                    wait_crds_established(conn, names, min(self.access.settings.timeout, 60))
        if spire_api:
            servers = [s.name for s in self.topology.servers]
            apply_registrations(self.topology, servers, self._client, self.d.desired_entries)
        waits: list[tuple[str, objects.ObjectRef]] = []
        deferred: list[tuple[str, objects.ObjectRef]] = []
        for cluster, o in batch:
            if o["kind"] in ROLLOUT_KINDS:
                ref = (cluster, objects.ObjectRef.of(o))
                (deferred if _belongs_to(self.topology, o) & nested else waits).append(ref)
        return waits, deferred

    def _wait(self, refs: list[tuple[str, objects.ObjectRef]]) -> None:
        for cluster, conn in self.access.clusters.items():
            mine = [r for c, r in refs if c == cluster]
            if mine:
                wait_rollouts(conn, mine, self.access.settings.timeout)

    def _mint_join_tokens(self) -> None:
        """join_token agents on Kubernetes (the crd-free preset): one token each, kept in
        a Secret the agent reads, a new one only when there is none or it is spent.

        A token attests once. An agent pod replaced after attesting lost its SVID with its
        emptyDir and cannot attest again with the spent token (it crash-loops), so `up`
        heals it: a new token under the same alias (the entries hang on the alias), the
        old agent evicted, the agent's pods replaced to read the new Secret."""
        values = self.secret_values
        for a in self.topology.agents:
            if a.kubernetes is None or agent_node_attestor(a, "kubernetes") != "join_token":
                continue
            old = values.join_tokens.get(a.name)
            if old is not None and (self.d.agent_healthy(a.name) or not self._spent(a.server, old)):
                continue  # attested, or its first pod is still coming up with the token
            with self._client(a.server) as client:
                token = mint_join_token(client, self.topology, a, old)
            conn = self.access.clusters[a.kubernetes.cluster]
            objects.apply(conn, join_token_secret(self.topology, a, token))
            values.join_tokens[a.name] = token
            values.save()
            if old is not None:
                selector = label_selector(selector_labels(a.name, "agent"))
                for pod in conn.core.list_namespaced_pod(
                    a.kubernetes.namespace, label_selector=selector
                ).items:
                    with contextlib.suppress(ApiException):
                        conn.core.delete_namespaced_pod(pod.metadata.name, a.kubernetes.namespace)

    def _spent(self, server: str, token: str) -> bool:
        """Whether an agent attested with that token (SPIRE deletes a token when used)."""
        want = str(join_token_agent_id(self.topology.server(server).trust_domain, token))
        with self._client(server) as client:
            return any(str(x.id) == want for x in client.list_agents(timeout=10))


def _ref_name(ref: objects.ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


def _belongs_to(topology: Topology, o: Obj) -> set[str]:
    """The servers a rollout object is (a server's StatefulSet) or serves (an agent's
    DaemonSet), by its app label."""
    app = str(((o.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name", ""))
    out = {s.name for s in topology.servers if s.name == app}
    out |= {a.server for a in topology.agents if a.name == app}
    return out
