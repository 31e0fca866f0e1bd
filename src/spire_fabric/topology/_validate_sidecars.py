"""Validation of workloads' sidecars (``Workload.sidecars``).

Each mode has the fields it needs and no others, so a sidecar that would run but not do
what its author meant (a server sidecar that admits nobody, a client sidecar with nowhere
to dial, a files sidecar asked to listen on an app port) fails `plan` naming the field.
Nothing is allowed by default: a server sidecar without an allow list is an error, not an
open door.
"""

from __future__ import annotations

import re
import signal
from posixpath import normpath

from spire_fabric.identity import SpiffeId, SpiffeIdError, TrustDomain
from spire_fabric.topology._errors import Problem, shown
from spire_fabric.topology._model import Sidecar, Topology, Workload

__all__ = ["sidecar_problems", "workload_port"]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_MAX = 63
# The fields each mode may set; the rest must stay at their defaults.
_FIELDS = {
    "server": {"app_port", "allow_ids", "allow_trust_domains", "status_port"},
    "client": {"listen_port", "target", "allow_ids", "allow_trust_domains", "status_port"},
    "files": {"signal", "pid_file", "jwt_audiences", "status_port"},
}
_OPTIONAL = ("app_port", "listen_port", "target", "allow_ids", "allow_trust_domains", "signal",
             "pid_file", "jwt_audiences", "status_port")


def workload_port(w: Workload) -> int | None:
    """Where the workload serves: its Service port on Kubernetes, else its local port."""
    if w.kubernetes is not None and w.kubernetes.service_port is not None:
        return w.kubernetes.service_port
    return w.run.port if w.run is not None else None


def sidecar_problems(topology: Topology) -> list[Problem]:
    by_name = {w.name: w for w in topology.workloads}
    declared = {td.name for td in topology.trust_domains}
    out: list[Problem] = []
    for w in topology.workloads:
        names: set[str] = set()
        taken: dict[str, int | None] = {
            "the workload's local port (run.port)": w.run.port if w.run else None,
            "the workload's service_port": w.kubernetes.service_port if w.kubernetes else None}
        for i, s in enumerate(w.sidecars):
            p = f"workloads[{w.name}].sidecars[{s.name or i}]"
            if s.name in names:
                out.append(Problem(f"{p}.name", f"{s.name!r} is used by another sidecar of "
                                   f"{w.name!r}"))  # fmt: skip
            names.add(s.name)
            out += _sidecar(p, w, s, by_name, declared, taken)
        if w.sidecars and w.run is None and w.kubernetes is None:
            out.append(Problem(f"workloads[{w.name}].sidecars", "a sidecar runs beside the "
                               "workload's app: give the workload `run` or `kubernetes`"))
    return out


def _sidecar(p: str, w: Workload, s: Sidecar, by_name: dict[str, Workload],
             declared: set[TrustDomain], taken: dict[str, int | None]) -> list[Problem]:
    """The problems of one sidecar; `taken` holds the workload's ports seen so far."""
    out: list[Problem] = []
    if len(s.name) > _LABEL_MAX or not _LABEL.fullmatch(s.name):
        out.append(Problem(f"{p}.name", f"{shown(s.name)} is not a DNS-1123 label; it names "
                           "a container and a local process"))  # fmt: skip
    elif s.name == w.name:
        out.append(Problem(f"{p}.name", f"{s.name!r} is the app container's name"))
    if s.mode not in _FIELDS:
        return [*out, Problem(f"{p}.mode", f"{shown(s.mode)} is not one of server, client, "
                                           "files")]  # fmt: skip
    for f in _OPTIONAL:
        if f not in _FIELDS[s.mode] and getattr(s, f) not in (None, ()):
            out.append(Problem(f"{p}.{f}", f"not used by a {s.mode} sidecar (it takes "
                               f"{', '.join(sorted(_FIELDS[s.mode]))})"))  # fmt: skip
    for f in ("app_port", "listen_port", "status_port"):
        port = getattr(s, f)
        if port is not None and not 1 <= port <= 65535:
            out.append(Problem(f"{p}.{f}", f"{shown(port)} is not a TCP port (1-65535)"))
    for i, sid in enumerate(s.allow_ids):
        try:
            SpiffeId.parse(sid)
        except SpiffeIdError as e:
            out.append(Problem(f"{p}.allow_ids[{i}]", str(e)))
    for i, td in enumerate(s.allow_trust_domains):
        if td not in declared:
            out.append(Problem(f"{p}.allow_trust_domains[{i}]", f"trust domain '{td}' is not "
                               "declared in trust_domains"))  # fmt: skip
    own = workload_port(w)
    if s.mode == "server":
        if s.app_port is None:
            out.append(Problem(f"{p}.app_port", "a server sidecar forwards to the app's plain "
                               "port on 127.0.0.1: give app_port"))  # fmt: skip
        if own is None:
            out.append(Problem(f"{p}.mode", f"a server sidecar listens on the workload's port, "
                               f"and {w.name!r} has none (run.port or kubernetes.service_port)"))
        if not s.allow_ids and not s.allow_trust_domains:
            out.append(Problem(f"{p}.allow_ids", "nothing is allowed by default: list the "
                               "callers in allow_ids or allow_trust_domains"))  # fmt: skip
    elif s.mode == "client":
        if s.listen_port is None:
            out.append(Problem(f"{p}.listen_port", "a client sidecar needs the plain local "
                               "port the app connects to"))  # fmt: skip
        target = by_name.get(s.target) if s.target else None
        if not s.target:
            out.append(Problem(f"{p}.target", "a client sidecar dials a workload: name it"))
        elif target is None:
            out.append(Problem(f"{p}.target", f"unknown workload {shown(s.target)}"))
        elif target.name == w.name:
            out.append(Problem(f"{p}.target", "a workload does not dial itself"))
        elif workload_port(target) is None:
            out.append(Problem(f"{p}.target", f"workload {target.name!r} serves no port"))
    else:
        if (s.signal is None) != (s.pid_file is None):
            which = "signal" if s.signal is None else "pid_file"
            out.append(Problem(f"{p}.{which}", "signal and pid_file go together: whom to tell, "
                               "and how"))  # fmt: skip
        if s.signal is not None and not _is_signal(s.signal):
            out.append(Problem(f"{p}.signal", f"{shown(s.signal)} is not a signal name such "
                               "as HUP"))  # fmt: skip
        if s.pid_file is not None and (s.pid_file.startswith("/") or
                                       normpath(s.pid_file).startswith("..")):
            out.append(Problem(f"{p}.pid_file", f"{shown(s.pid_file)} must be a path inside "
                               "the workload's files directory"))  # fmt: skip
        for i, aud in enumerate(s.jwt_audiences):
            if not aud or aud != aud.strip():
                out.append(Problem(f"{p}.jwt_audiences[{i}]", f"{shown(aud)} is not an "
                                   "audience"))  # fmt: skip
    for f in ("app_port", "listen_port", "status_port"):
        port = getattr(s, f)
        for what, other in taken.items():
            if port is not None and port == other:
                out.append(Problem(f"{p}.{f}", f"{port} is already {what}"))
        taken[f"{s.name}'s {f}"] = port
    return out


def _is_signal(text: str) -> bool:
    name = text.upper()
    return (name if name.startswith("SIG") else f"SIG{name}") in signal.Signals.__members__
