"""`attach(name)` lives in :mod:`spire_fabric.runtime.attach`; re-exported here, where code
and notebooks have always imported it from."""

from spire_fabric.runtime.attach import attach

__all__ = ["attach"]
