"""Prometheus and Alertmanager of a local deployment: our own supervised processes.

Debian's binaries (``scripts/install-monitoring``), never the packages' system services:
each deployment runs its own pair with its configs and data under
``<state>/monitoring/``, listening on loopback at the topology's ports (NodePort numbers,
moved by ``--port-base`` like every other local port). Alertmanager's cluster gossip is off
(``--cluster.listen-address=``): by default it would listen on 0.0.0.0:9094.

Like the SPIRE components, each process carries the SHA-256 of the files it reads in its
environment, so a changed config changes the plan and restarts exactly that process.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from spire_fabric.render import (
    render_alert_rules,
    render_alertmanager_config,
    render_prometheus_config,
)
from spire_fabric.runtime.core import UpError
from spire_fabric.runtime.local.context import LocalContext
from spire_fabric.runtime.local.localize import LOOPBACK
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.topology._durations import format_duration

__all__ = [
    "MonitoringMissing",
    "monitoring_component",
    "monitoring_components",
    "monitoring_config_files",
    "monitoring_data_dirs",
    "monitoring_urls",
]

PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
# Debian names Alertmanager's binary prometheus-alertmanager; upstream's tarball alertmanager
_BINARIES = {PROMETHEUS: ("prometheus",), ALERTMANAGER: ("prometheus-alertmanager", "alertmanager")}


class MonitoringMissing(UpError):
    """The topology asks for monitoring and Prometheus or Alertmanager is not installed."""


def monitoring_component(name: str) -> str:
    return f"monitoring:{name}"


def _binary(kind: str) -> str:
    for name in _BINARIES[kind]:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                       else None)  # fmt: skip
        if found:
            return found
    raise MonitoringMissing(
        f"the topology's `monitoring:` needs {' or '.join(_BINARIES[kind])} on PATH: run "
        "scripts/install-monitoring (Debian: apt-get install prometheus "
        "prometheus-alertmanager), or remove `monitoring:` from the topology"
    )


def monitoring_urls(ctx: LocalContext) -> tuple[str, str] | None:
    """(Prometheus URL, Alertmanager URL) on this machine, or None without monitoring."""
    m = ctx.local.monitoring
    if m is None:
        return None
    return f"http://{LOOPBACK}:{m.prometheus_port}", f"http://{LOOPBACK}:{m.alertmanager_port}"


def monitoring_config_files(ctx: LocalContext) -> dict[str, tuple[tuple[Path, str], ...]]:
    """Component -> the files it reads (path, text), rendered from the local topology."""
    if ctx.local.monitoring is None:
        return {}
    paths = ctx.paths
    return {
        PROMETHEUS: (
            (Path(paths.prometheus_config()), render_prometheus_config(ctx.local, paths)),
            (Path(paths.prometheus_rules()), render_alert_rules(ctx.local)),
        ),
        ALERTMANAGER: ((Path(paths.alertmanager_config()), render_alertmanager_config(ctx.local)),),
    }


def _digest(files: tuple[tuple[Path, str], ...]) -> str:
    h = hashlib.sha256()
    for path, text in files:
        h.update(f"{path}\0{text}\0".encode())
    return h.hexdigest()


def monitoring_data_dirs(ctx: LocalContext) -> list[Path]:
    """The directories Prometheus' TSDB and Alertmanager's state live in."""
    root = Path(ctx.paths.monitoring_dir())
    return [root / f"{kind}-data" for kind in (PROMETHEUS, ALERTMANAGER)]


def monitoring_components(ctx: LocalContext) -> list[Component]:
    """The Prometheus and Alertmanager processes (none without ``monitoring:``)."""
    m = ctx.local.monitoring
    if m is None:
        return []
    files = monitoring_config_files(ctx)
    root = Path(ctx.paths.monitoring_dir())
    prometheus = (
        _binary(PROMETHEUS),
        f"--config.file={ctx.paths.prometheus_config()}",
        f"--storage.tsdb.path={root / 'prometheus-data'}",
        f"--storage.tsdb.retention.time={format_duration(m.retention)}",
        f"--web.listen-address={LOOPBACK}:{m.prometheus_port}",
    )
    alertmanager = (
        _binary(ALERTMANAGER),
        f"--config.file={ctx.paths.alertmanager_config()}",
        f"--storage.path={root / 'alertmanager-data'}",
        f"--web.listen-address={LOOPBACK}:{m.alertmanager_port}",
        "--cluster.listen-address=",
    )
    out = []
    for kind, argv in ((ALERTMANAGER, alertmanager), (PROMETHEUS, prometheus)):
        name = monitoring_component(kind)
        out.append(
            Component(
                name=name,
                argv=argv,
                log_path=str(ctx.log_path(name)),
                env={"SPIRE_FABRIC_CONFIG_SHA256": _digest(files[kind])},
                cwd=str(root),
            )
        )
    return out
