"""The installer CLI, ``python -m spire_fabric.deploy``, and :func:`attach` for code.

Thin: each subcommand is one module exposing ``register(subparsers)``; :mod:`.cli` lists
them in ``SUBCOMMANDS``. The work is done by ``spire_fabric.runtime`` targets through the
``Deployment`` interface and by ``spire_fabric.verify``.

Installed with the ``deploy`` extra (``pip install 'spire-fabric[deploy]'``). ``main``
resolves on first use, so that ``python -m spire_fabric.deploy`` (runpy imports this
package first) can say in one line which extra is missing before anything imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spire_fabric._extras import require_extra

# Eager: it needs no extra, and the function must shadow its own submodule's name (a lazy
# name loses to the submodule once anything imports spire_fabric.deploy.attach).
from spire_fabric.deploy.attach import attach

if TYPE_CHECKING:
    from spire_fabric.deploy.cli import main

__all__ = ["attach", "main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        require_extra("deploy", "spire_fabric.deploy")
        from spire_fabric.deploy.cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
