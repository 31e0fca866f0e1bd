"""External clients of the gateway: API keys (stored hashed), route allow-lists, rate limits.

An API key looks like ``sgw_<key id>_<secret>``. The file keeps, per client, the key id,
the SHA-256 of the secret, the routes the client may call and its rate. A fast hash is
right here because the secret is 32 random bytes, not a password: nobody can guess it from
the hash, and checking it must not cost milliseconds per request. The key itself is shown
once, by ``issue-key``, and never stored.

A route pattern is ``METHOD /path`` where a final ``/*`` matches one or more segments:
``GET /records/*`` allows ``GET /records/7``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KEY_PREFIX",
    "ApiKeys",
    "Client",
    "RateLimiter",
    "issue_key",
    "parse_route",
    "route_allowed",
]

KEY_PREFIX = "sgw_"
# Names appear in audit lines and in the X-Gateway-Client header: keep them plain.
CLIENT_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def parse_route(text: str) -> str:
    """``"GET /records"`` normalized; ValueError says what is wrong."""
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if method.upper() not in ("GET", "POST") or not path.startswith("/"):
        raise ValueError(f"route {text!r}: expected 'GET /path' or 'POST /path' (/* at the end)")
    return f"{method.upper()} {path}"


def route_allowed(routes: tuple[str, ...], method: str, path: str) -> bool:
    for route in routes:
        r_method, _, r_path = route.partition(" ")
        if r_method != method:
            continue
        if r_path == path:
            return True
        if r_path.endswith("/*") and path.startswith(r_path[:-1]) and len(path) > len(r_path) - 1:
            return True
    return False


@dataclass(frozen=True)
class Client:
    """An authenticated caller: who, how it proved it, what it may call, how often."""

    name: str
    auth: str  # "apikey", "x509" or "jwt"
    routes: tuple[str, ...]
    rate: float  # requests per second
    burst: int


class ApiKeys:
    """The key file, re-read when it changes, so ``issue-key`` takes effect without a
    restart of the gateway."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_key_id: dict[str, tuple[str, dict[str, object]]] = {}

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._by_key_id = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        data = json.loads(self.path.read_text())
        self._by_key_id = {c["key_id"]: (name, c) for name, c in data.get("clients", {}).items()}
        self._stamp = stamp

    def authenticate(self, key: str) -> Client | None:
        """The client whose key this is, or None (unknown key or wrong secret)."""
        if not key.startswith(KEY_PREFIX):
            return None
        key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
        if not sep:
            return None
        with self._lock:
            self._load()
            found = self._by_key_id.get(key_id)
        if found is None:
            return None
        name, entry = found
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, str(entry["sha256"])):
            return None
        return Client(
            name=name,
            auth="apikey",
            routes=tuple(str(r) for r in entry.get("routes", [])),  # type: ignore[attr-defined]
            rate=float(entry.get("rate", 10)),  # type: ignore[arg-type]
            burst=int(entry.get("burst", 20)),  # type: ignore[call-overload]
        )


def issue_key(path: str | Path, client: str, routes: list[str], rate: float, burst: int) -> str:
    """Add or replace ``client``'s key in the file (0600, written atomically); returns the
    key, which is not stored anywhere."""
    if not CLIENT_NAME.fullmatch(client):
        raise ValueError(f"client name {client!r}: 1-64 of A-Z a-z 0-9 . _ @ -")
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {"clients": {}}
    key_id = secrets.token_hex(6)
    secret = secrets.token_hex(32)
    data.setdefault("clients", {})[client] = {
        "key_id": key_id,
        "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "routes": [parse_route(r) for r in routes],
        "rate": rate,
        "burst": burst,
        "issued_at": int(time.time()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
    return f"{KEY_PREFIX}{key_id}_{secret}"


class RateLimiter:
    """A token bucket per client name: ``rate`` requests per second, bursts of ``burst``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last time)

    def take(self, client: Client) -> float:
        """0 if the request may go now, else the seconds until it may (Retry-After)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client.name, (float(client.burst), now))
            tokens = min(float(client.burst), tokens + (now - last) * client.rate)
            if tokens >= 1:
                self._buckets[client.name] = (tokens - 1, now)
                return 0.0
            self._buckets[client.name] = (tokens, now)
            return (1 - tokens) / client.rate if client.rate > 0 else math.inf
