"""A read-only web view of a running deployment: ``python -m spire_fabric.dashboard``.

Pages: overview (topology diagram, a health colour per component), servers, agents,
entries (searchable), federation (mismatches highlighted), workloads, metrics (charts of
SPIRE's own telemetry). It reads through ``attach(name)`` and the ``Deployment`` interface,
the SPIRE Server API, the agents' Workload API and SPIRE's Prometheus telemetry; it changes
nothing (every route is GET, only list/get/fetch calls are made).

Why Starlette + uvicorn + Jinja2 (optional extra ``spire-fabric[dashboard]``): a small,
well-kept ASGI toolkit and its standard server, and server-side templates with
autoescaping on everywhere; no HTTP parsing of our own, no JavaScript framework, no CDN
(charts and the diagram are inline SVG drawn server-side). See ``_app.py`` for how values
are kept from ever reaching the page unescaped.

Access: it binds 127.0.0.1 by default and has no login, which is right on loopback of a
developer's machine (whoever can reach it can already read the deployment's state). Served
beyond loopback it would need TLS and authentication in front of it (e.g. a reverse proxy
doing mTLS with an admin SVID or single sign-on); ``--host`` other than loopback prints a
warning saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spire_fabric._extras import require_extra
from spire_fabric.dashboard._collect import Snapshot, collect

if TYPE_CHECKING:
    from spire_fabric.dashboard._app import PAGES, create_app

__all__ = ["PAGES", "Snapshot", "collect", "create_app"]


def __getattr__(name: str) -> Any:
    # The web app resolves on first use, so that `python -m spire_fabric.dashboard` (runpy
    # imports this package first) can say in one line which extra is missing.
    if name in ("PAGES", "create_app"):
        require_extra("dashboard", "spire_fabric.dashboard")
        from spire_fabric.dashboard import _app

        return getattr(_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
