"""Files mode: SPIFFE identity as files for programs without SPIFFE code.

``python -m spire_fabric.helper`` keeps an X509-SVID, its key, the trust bundle and
JWT-SVIDs on disk, current, and tells the program when they rotate, by signal or command:
the contract of spiffe-helper (whose Go module is not served here), written in Python on
the SDK's Workload API client. `--help` documents the files, modes and options.

The rest of the house uses it as a sidecar in files mode (topology ``sidecars``).
"""

from ._cli import main, parse_args
from ._config import HelperConfig, HelperConfigError, JwtSvidFile
from ._health import HealthServer, HelperState
from ._helper import FilesHelper, HelperError

__all__ = [
    "FilesHelper",
    "HealthServer",
    "HelperConfig",
    "HelperConfigError",
    "HelperError",
    "HelperState",
    "JwtSvidFile",
    "main",
    "parse_args",
]
