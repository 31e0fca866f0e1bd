"""Turn a topology into what runs on this machine: loopback ports, datastore, selectors.

Why a transformation and not special cases in the renderers: the renderers stay pure and
target-agnostic, and `plan`, `up`, `status` and `verify` all read the same localized
topology, so a port or selector is decided in exactly one place.

Ports: a server that has Kubernetes NodePorts listens locally on those numbers (the source
design's 31081/31443 upstream, 32081/32443 downstream), with health on `api - 1`;
`--port-base` shifts every local port (servers', agents', workloads') by
`port_base - 31000`, here and nowhere else, each checked to stay in 1024-65535.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from spire_fabric.errors import SpireFabricError
from spire_fabric.topology import (
    Datastore,
    LocalRun,
    MySqlDatastore,
    PostgresDatastore,
    Server,
    ServerPorts,
    Sidecar,
    SqliteDatastore,
    Topology,
    Workload,
    server_replicas,
    validate_localized,
    validate_topology,
)

__all__ = [
    "DEFAULT_PORT_BASE",
    "LocalSettings",
    "LocalizeError",
    "datastore_from_url",
    "local_ports",
    "localize",
]

DEFAULT_PORT_BASE = 31000
LOOPBACK = "127.0.0.1"


class LocalizeError(SpireFabricError, ValueError):
    """A local setting (port base, datastore URL) cannot be applied; says which and why."""


@dataclass(frozen=True)
class LocalSettings:
    """What the user chose for this machine, on top of the topology."""

    port_base: int = DEFAULT_PORT_BASE
    datastore_url: str | None = None  # mysql://… or postgres://…; `{server}` per server
    uid: int = dataclasses.field(default_factory=os.getuid)


def localize(topology: Topology, settings: LocalSettings) -> Topology:
    """The topology as the local target runs it: ``topology`` validated (free when it was
    already: presets, builders and loaders validate), then what this function changes
    validated again (:func:`validate_localized`: hosts, ports, datastores, selectors)."""
    validate_topology(topology)
    _refuse_replicas(topology)
    offset = settings.port_base - DEFAULT_PORT_BASE
    servers = tuple(
        dataclasses.replace(
            s,
            host=_loopback(s.host),
            ports=_shift(local_ports(s), offset),
            datastore=(
                datastore_from_url(settings.datastore_url, s.name, len(topology.servers))
                if settings.datastore_url
                else s.datastore
            ),
        )
        for s in topology.servers
    )
    agents = tuple(
        dataclasses.replace(
            a,
            host=LOOPBACK,
            health_port=None if a.health_port is None else _port(a.health_port + offset),
            telemetry_port=(
                None if a.telemetry_port is None else _port(a.telemetry_port + offset)
            ),
        )
        for a in topology.agents
    )
    # Each agent serves exactly the entries parented to it, so the process's uid is
    # enough to tell the workload apart from anything else on this agent's socket.
    uid_selector = (f"unix:uid:{settings.uid}",)
    workloads = tuple(
        _with(
            w,
            local_selectors=uid_selector,
            run=_shift_run(w.run, offset),
            sidecars=tuple(_shift_sidecar(s, offset) for s in w.sidecars),
        )
        if w.run is not None or w.sidecars
        # most workloads (50k in a scale plan) are registrations only: one field changes
        else _with_local_selectors(w, uid_selector)
        for w in topology.workloads
    )
    monitoring = topology.monitoring
    if monitoring is not None:
        monitoring = dataclasses.replace(
            monitoring,
            prometheus_port=_port(monitoring.prometheus_port + offset),
            alertmanager_port=_port(monitoring.alertmanager_port + offset),
        )
    local = dataclasses.replace(
        topology, servers=servers, agents=agents, workloads=workloads, monitoring=monitoring
    )
    validate_localized(local)
    _proxies_alone(local)
    return local


def _proxies_alone(local: Topology) -> None:
    """Locally every process is the same uid, so each workload on an agent is served every
    SVID of that agent. Our SDK picks its own by SPIFFE_ID; ghostunnel cannot choose and
    presents the first, which could be another workload's. So a workload with a server or
    client sidecar must be the only workload of its agent here."""
    for w in local.workloads:
        if any(s.mode != "files" for s in w.sidecars):
            others = [o.name for o in local.workloads if o.agent == w.agent and o is not w]
            if others:
                raise LocalizeError(
                    f"workloads[{w.name}].agent: {w.agent!r} also serves {', '.join(others)}; "
                    "a workload with a ghostunnel sidecar needs an agent of its own on the "
                    "local target (ghostunnel presents the first SVID the agent gives it)")


def _shift_sidecar(s: Sidecar, offset: int) -> Sidecar:
    """A sidecar's local ports move with every other port."""
    def moved(port: int | None) -> int | None:
        return None if port is None else _port(port + offset)

    return dataclasses.replace(s, app_port=moved(s.app_port), listen_port=moved(s.listen_port),
                               status_port=moved(s.status_port))


def _refuse_replicas(topology: Topology) -> None:
    """The local target runs one process per server. Replicas would need one address that
    agents dial and that spreads over several processes (a DNS name with several loopback
    addresses, i.e. editing this machine's name resolution, or a load balancer of ours in
    front of SPIRE): neither is a thing we will do to a laptop, so the count is refused."""
    for s in topology.servers:
        n = server_replicas(s, "local")
        if n > 1:
            raise LocalizeError(
                f"servers[{s.name}].replicas is {n}: the local target runs one process per "
                "server; run highly available servers with `up --target kubernetes`, or set "
                "replicas under servers[].kubernetes only"
            )


def _shift_run(run: LocalRun | None, offset: int) -> LocalRun | None:
    if run is None or (run.port is None and run.metrics_port is None):
        return run
    return dataclasses.replace(
        run,
        port=None if run.port is None else _port(run.port + offset),
        metrics_port=None if run.metrics_port is None else _port(run.metrics_port + offset),
    )


_WORKLOAD_FIELDS = frozenset(f.name for f in dataclasses.fields(Workload))


def _with(workload: Workload, **changes: object) -> Workload:
    """``dataclasses.replace`` without running ``__init__`` and ``__post_init__`` again:
    the workload's fields were coerced when it was made, the changed ones are checked by
    :func:`validate_localized`, and at 50k workloads replace was a tenth of `plan`."""
    if not _WORKLOAD_FIELDS.issuperset(changes):
        unknown = sorted(changes.keys() - _WORKLOAD_FIELDS)
        raise TypeError(f"Workload has no field(s) {', '.join(unknown)}")
    new = object.__new__(Workload)
    new.__dict__.update(workload.__dict__, **changes)
    if "spiffe_id" in changes:  # the parsed ID kept beside the fields is the old one's
        new.__dict__.pop("_parsed_spiffe_id", None)
    return new


def _with_local_selectors(workload: Workload, selectors: tuple[str, ...]) -> Workload:
    """:func:`_with` of ``local_selectors`` alone, for the workloads that change nothing
    else (no run, no sidecars): a third of localizing 50k workloads was ``_with``'s
    keyword handling."""
    new = object.__new__(Workload)
    fields = new.__dict__
    fields.update(workload.__dict__)
    fields["local_selectors"] = selectors
    return new


def _loopback(host: str) -> str:
    """A loopback address the topology chose is kept (servers that share container ports,
    as in the nested preset, each get their own: Linux routes all of 127/8 to lo);
    anything else becomes 127.0.0.1, so nothing listens beyond this machine."""
    return host if host.startswith("127.") else LOOPBACK


def local_ports(server: Server) -> ServerPorts:
    """The server's local ports before any `--port-base` shift."""
    k8s = server.kubernetes
    if k8s is not None and k8s.node_ports.api is not None:
        api = k8s.node_ports.api
        federation = k8s.node_ports.federation or server.ports.federation
        telemetry = None if server.ports.telemetry is None else api - 2
        return ServerPorts(api=api, health=api - 1, federation=federation, telemetry=telemetry)
    return server.ports


def _shift(ports: ServerPorts, offset: int) -> ServerPorts:
    return ServerPorts(
        api=_port(ports.api + offset),
        health=_port(ports.health + offset),
        federation=_port(ports.federation + offset),
        telemetry=None if ports.telemetry is None else _port(ports.telemetry + offset),
    )


def _port(value: int) -> int:
    if not 1024 <= value <= 65535:
        raise LocalizeError(
            f"--port-base moves a port to {value}, outside 1024-65535; pick another base"
        )
    return value


def datastore_from_url(url: str, server: str, server_count: int) -> Datastore:
    """`mysql://user:pass@host:3306/db` or `postgres://user:pass@host:5432/db?sslmode=…`.

    Two SPIRE servers must never share one database, so with several servers the URL's
    database name must contain `{server}`, replaced by each server's name (`-` becomes
    `_`, which MySQL and PostgreSQL accept unquoted).
    """
    if server_count > 1 and "{server}" not in url:
        raise LocalizeError(
            f"--datastore {_redact(url)}: this topology has {server_count} servers and two "
            "SPIRE servers cannot share one database; put {server} in the database name, "
            "e.g. mysql://spire:secret@127.0.0.1:3306/spire_{server}"
        )
    url = url.replace("{server}", re.sub(r"[^A-Za-z0-9_]", "_", server))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("mysql", "mariadb"):
        if not parts.hostname or not parts.path.strip("/"):
            raise LocalizeError(
                f"--datastore {_redact(url)}: expected mysql://user:pass@host:port/db"
            )
        userinfo = unquote(parts.username or "")
        if parts.password:
            userinfo += ":" + unquote(parts.password)
        query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
        query["parseTime"] = "true"  # SPIRE refuses MySQL DSNs without it
        params = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
        host = f"{parts.hostname}:{parts.port or 3306}"
        return MySqlDatastore(dsn=f"{userinfo}@tcp({host}){parts.path}?{params}")
    if scheme in ("postgres", "postgresql"):
        if not parts.hostname or not parts.path.strip("/"):
            raise LocalizeError(
                f"--datastore {_redact(url)}: expected postgres://user:pass@host:port/db"
            )
        return PostgresDatastore(dsn=url if parts.query else f"{url}?sslmode=disable")
    if scheme == "sqlite":
        return SqliteDatastore()
    raise LocalizeError(
        f"--datastore {_redact(url)}: unsupported scheme {parts.scheme!r}; "
        "use mysql://, mariadb:// or postgres://"
    )


def _redact(url: str) -> str:
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)
