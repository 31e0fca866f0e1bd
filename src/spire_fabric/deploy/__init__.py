"""The installer CLI, ``python -m spire_fabric.deploy``. Thin: parse, call the layers, print.

Each subcommand is one module exposing ``register(subparsers)``; :mod:`.cli` lists them in
``SUBCOMMANDS`` so ``up``/``verify``/``status``/``down`` plug in the same way.
"""

from spire_fabric.deploy.cli import main

__all__ = ["main"]
