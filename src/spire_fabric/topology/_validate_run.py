"""Validation of workloads' run descriptions (``Workload.run``, ``kubernetes.command``).

Separate from the structural rules in :mod:`._validate` because these read the
placeholder language: every ``{key:workload}`` must name a workload that exists and has
what is asked of it (a port for ``{url:…}``), so a typo fails ``plan``, not a process.
"""

from __future__ import annotations

import re

from spire_fabric.topology._errors import Problem
from spire_fabric.topology._model import Topology, Workload
from spire_fabric.topology._workload_run import PlaceholderError, placeholders

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NEEDS_PORT = ("port", "listen", "url")


def run_problems(topology: Topology) -> list[Problem]:
    by_name = {w.name: w for w in topology.workloads}
    problems: list[Problem] = []
    for w in topology.workloads:
        problems += _workload_run(w, by_name)
    return problems


def _workload_run(w: Workload, by_name: dict[str, Workload]) -> list[Problem]:
    run = w.run
    p = f"workloads[{w.name}].run"
    out: list[Problem] = []
    if run is None:
        return out
    if (run.module is None) == (not run.command):
        out.append(Problem(p, "give exactly one of `module` (python -m …) or `command` (argv)"))
    if run.module is not None and not re.fullmatch(r"[A-Za-z_][\w.]*", run.module):
        out.append(Problem(f"{p}.module", f"{run.module!r} is not a Python module name"))
    for what, port in (("port", run.port), ("metrics_port", run.metrics_port)):
        if port is not None and not 1 <= port <= 65535:
            out.append(Problem(f"{p}.{what}", f"{port} is not a TCP port (1-65535)"))
    if run.port is not None and run.port == run.metrics_port:
        out.append(Problem(f"{p}.metrics_port", "must differ from `port`"))
    texts = [(f"{p}.command[{i}]", t) for i, t in enumerate(run.command)]
    texts += [(f"{p}.args[{i}]", t) for i, t in enumerate(run.args)]
    for i, item in enumerate(run.env):
        name, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(name):
            out.append(Problem(f"{p}.env[{i}]", f"{item!r} must look like NAME=value"))
        texts.append((f"{p}.env[{i}]", value))
    if run.health is not None:
        h = run.health
        if run.port is None:
            out.append(Problem(f"{p}.health", "a health probe needs the workload's `port`"))
        if not h.path.startswith("/"):
            out.append(Problem(f"{p}.health.path", f"{h.path!r} must start with '/'"))
        if h.caller is not None and h.caller not in by_name:
            out.append(Problem(f"{p}.health.caller", f"unknown workload {h.caller!r}"))
        for i, item in enumerate(h.expect):
            if "=" not in item:
                out.append(Problem(f"{p}.health.expect[{i}]", f"{item!r} must be key=value"))
            texts.append((f"{p}.health.expect[{i}]", item.partition("=")[2]))
    if w.kubernetes is not None:
        texts += [(f"workloads[{w.name}].kubernetes.command[{i}]", t)
                  for i, t in enumerate(w.kubernetes.command)]  # fmt: skip
    for path, text in texts:
        out += _placeholders(path, text, w, by_name)
    return out


def _placeholders(path: str, text: str, w: Workload, by_name: dict[str, Workload]) -> list[Problem]:
    try:
        found = placeholders(text)
    except PlaceholderError as err:
        return [Problem(path, str(err))]
    out = []
    for ph in found:
        target = by_name.get(ph.workload) if ph.workload else w
        if target is None:
            out.append(Problem(path, f"{ph.text}: unknown workload {ph.workload!r}"))
        elif ph.key == "files" and target is not w:
            out.append(Problem(path, f"{ph.text}: a workload reaches only its own files"))
        elif ph.key == "metrics_listen" and target is not w:
            out.append(Problem(path, f"{ph.text}: a workload names only its own metrics_listen"))
        elif ph.key == "metrics_listen" and (w.run is None or w.run.metrics_port is None):
            out.append(Problem(path, f"{ph.text}: workload {w.name!r} has no run.metrics_port"))
        elif ph.key in _NEEDS_PORT and (target.run is None or target.run.port is None):
            out.append(Problem(path, f"{ph.text}: workload {target.name!r} has no run.port to use"))
    return out
