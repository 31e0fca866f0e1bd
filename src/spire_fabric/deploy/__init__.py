"""The installer CLI, ``python -m spire_fabric.deploy``, and :func:`attach` for code.

Thin: each subcommand is one module exposing ``register(subparsers)``; :mod:`.cli` lists
them in ``SUBCOMMANDS``. The work is done by ``spire_fabric.runtime`` targets through the
``Deployment`` interface and by ``spire_fabric.verify``.
"""

from spire_fabric.deploy.attach import attach
from spire_fabric.deploy.cli import main

__all__ = ["attach", "main"]
