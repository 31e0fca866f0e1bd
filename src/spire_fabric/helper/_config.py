"""What the helper is asked to do: `HelperConfig`, built from the command line.

The file names and modes follow spiffe-helper's contract (`svid.pem`, `svid_key.pem`,
`svid_bundle.pem`; certificates 0644, keys and tokens 0600), so a program configured for
spiffe-helper finds its files where it expects them. Every bad value is refused before
anything is written, with an error that names the option.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.errors import SpireFabricError

__all__ = ["HelperConfig", "HelperConfigError", "JwtSvidFile", "parse_mode", "parse_signal"]

DEFAULT_SVID = "svid.pem"
DEFAULT_KEY = "svid_key.pem"
DEFAULT_BUNDLE = "svid_bundle.pem"


class HelperConfigError(SpireFabricError, ValueError):
    """A helper option is invalid; the message names the option."""


@dataclass(frozen=True)
class JwtSvidFile:
    """A JWT-SVID for `audience`, kept fresh in `file` (a name inside the cert dir)."""

    audience: str
    file: str


@dataclass(frozen=True)
class HelperConfig:
    """One helper run. File names are plain names inside `cert_dir`."""

    cert_dir: Path
    endpoint: str | None = None
    spiffe_id: str | None = None  # which SVID, when the agent issues several (else the first)
    svid_file: str = DEFAULT_SVID
    key_file: str = DEFAULT_KEY
    bundle_file: str = DEFAULT_BUNDLE
    include_federated: bool = False
    jwt_svids: tuple[JwtSvidFile, ...] = ()
    jwt_bundle_file: str | None = None
    cert_mode: int = 0o644
    key_mode: int = 0o600
    jwt_mode: int = 0o600
    signal: signal.Signals | None = None
    pid: int | None = None
    pid_file: Path | None = None
    command: tuple[str, ...] = ()
    once: bool = False
    health_listen: tuple[str, int] | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        names = {"--svid-file": self.svid_file, "--key-file": self.key_file,
                 "--bundle-file": self.bundle_file}
        if self.jwt_bundle_file is not None:
            names["--jwt-bundle-file"] = self.jwt_bundle_file
        for i, j in enumerate(self.jwt_svids):
            names[f"--jwt-svid #{i + 1}"] = j.file
            if not j.audience:
                raise HelperConfigError(f"--jwt-svid #{i + 1}: the audience is empty")
        seen: dict[str, str] = {}
        for option, name in names.items():
            _check_file_name(option, name)
            if name in seen:
                raise HelperConfigError(f"{option}: {name!r} is also the file of {seen[name]}")
            seen[name] = option
        if self.signal is not None and self.pid is None and self.pid_file is None:
            raise HelperConfigError("--signal needs --pid or --pid-file: whom to signal")
        if self.signal is None and (self.pid is not None or self.pid_file is not None):
            raise HelperConfigError("--pid/--pid-file need --signal: which signal to send")
        if self.pid is not None and self.pid_file is not None:
            raise HelperConfigError("--pid and --pid-file: give one of them")
        if self.pid is not None and self.pid <= 1:
            raise HelperConfigError(f"--pid: {self.pid} is not a process the helper may signal")
        if not (math.isfinite(self.timeout) and self.timeout > 0):  # nan passes `<= 0`
            raise HelperConfigError(f"--timeout: must be positive, got {self.timeout}")

    def path(self, name: str) -> Path:
        return self.cert_dir / name


def _check_file_name(option: str, name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise HelperConfigError(f"{option}: {name!r} must be a plain file name inside the "
                                "cert dir (no '/')")
    if name.startswith(".") and name.endswith(".tmp"):
        raise HelperConfigError(f"{option}: {name!r} is the helper's temporary-file pattern")


def parse_mode(option: str, text: str) -> int:
    """An octal file mode such as 0640; no set-id, sticky or execute bits."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise HelperConfigError(f"{option}: {text!r} is not an octal file mode such as 0640") \
            from None
    if mode < 0 or mode & ~0o666:
        raise HelperConfigError(f"{option}: {text!r} may hold only read/write bits (e.g. 0640)")
    if not mode & 0o400:
        raise HelperConfigError(f"{option}: {text!r} leaves the file unreadable to its owner")
    return mode


def parse_signal(text: str) -> signal.Signals:
    """`HUP`, `SIGHUP` or `1`."""
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        raise HelperConfigError(f"--signal: {text!r} is not a signal name such as HUP") from None
