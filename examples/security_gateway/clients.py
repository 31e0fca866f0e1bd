"""External clients of the gateway: API keys (stored hashed), route allow-lists, rate limits.

An API key looks like ``sgw_<key id>_<secret>``. The file keeps, per client, the key id,
the SHA-256 of the secret, the routes the client may call and its rate. A fast hash is
right here because the secret is 32 random bytes, not a password: nobody can guess it from
the hash, and checking it must not cost milliseconds per request. The key itself is shown
once, by ``issue-key``, and never stored.

A key may expire (``expires_at``, Unix seconds); an expired key is refused like an unknown
one. ``list`` shows the clients without anything secret, ``revoke`` removes one.

The file format is a JSON document ``{"clients": {NAME: {...}}}``. The functions
:func:`add_client`, :func:`revoke_client`, :func:`list_clients`, :func:`parse_key_file` and
:func:`dump_key_file` work on the document itself, not on a path, so another writer (e.g.
an installer putting the same document into a Kubernetes Secret that is mounted as the
gateway's key file) produces exactly what the gateway reads. The gateway re-reads the file
when its stat changes (one ``stat`` per API-key request), which also follows
the symlink swap a kubelet does when a mounted Secret changes.

A route pattern is ``METHOD /path`` where a final ``/*`` matches one or more segments:
``GET /records/*`` allows ``GET /records/7``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KEY_PREFIX",
    "ApiKeys",
    "Client",
    "KeyFileError",
    "KeyInfo",
    "KeyRefused",
    "RateLimiter",
    "add_client",
    "dump_key_file",
    "issue_key",
    "list_clients",
    "list_keys",
    "parse_key_file",
    "parse_route",
    "revoke_client",
    "revoke_key",
    "route_allowed",
    "update_key_file",
]

log = logging.getLogger("security-gateway")

KEY_PREFIX = "sgw_"
KEY_ID = re.compile(r"[0-9a-f]{12}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
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


class KeyFileError(ValueError):
    """The key file (or document) is not what the gateway writes; says what is wrong."""


class KeyRefused(Exception):
    """This API key is not accepted (unknown, wrong secret, or expired)."""


@dataclass(frozen=True)
class KeyInfo:
    """One client of the key file, without its hash: what ``list`` shows."""

    name: str
    key_id: str
    routes: tuple[str, ...]
    rate: float
    burst: int
    issued_at: int | None
    expires_at: int | None

    def expired(self, now: float | None = None) -> bool:
        when = time.time() if now is None else now
        return self.expires_at is not None and when >= self.expires_at


def _number(entry: dict[str, Any], key: str, where: str, *, integer: bool = False) -> Any:
    value: Any = entry.get(key)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < 0:
        kind = "integer" if integer else "number"
        raise KeyFileError(f"{where}: {key!r} must be a non-negative {kind}")
    return value


def _check_client(name: object, entry: object) -> KeyInfo:
    where = f"client {str(name)[:64]!r}"
    if not isinstance(name, str) or not CLIENT_NAME.fullmatch(name):
        raise KeyFileError(f"{where}: names are 1-64 of A-Z a-z 0-9 . _ @ -")
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where}: expected an object")
    if not isinstance(entry.get("key_id"), str) or not KEY_ID.fullmatch(entry["key_id"]):
        raise KeyFileError(f"{where}: 'key_id' must be 12 hex digits")
    if not isinstance(entry.get("sha256"), str) or not SHA256_HEX.fullmatch(entry["sha256"]):
        raise KeyFileError(f"{where}: 'sha256' must be 64 hex digits")
    routes = entry.get("routes")
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise KeyFileError(f"{where}: 'routes' must be a list of 'METHOD /path'")
    try:
        parsed = tuple(parse_route(r) for r in routes)
    except ValueError as e:
        raise KeyFileError(f"{where}: {e}") from None
    optional = {
        key: _number(entry, key, where, integer=True) if entry.get(key) is not None else None
        for key in ("issued_at", "expires_at")
    }
    return KeyInfo(
        name=name,
        key_id=entry["key_id"],
        routes=parsed,
        rate=float(_number(entry, "rate", where)),
        burst=int(_number(entry, "burst", where, integer=True)),
        issued_at=optional["issued_at"],
        expires_at=optional["expires_at"],
    )


def parse_key_file(text: str | bytes) -> dict[str, Any]:
    """The key-file document, checked entry by entry; KeyFileError says what is wrong."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise KeyFileError("not JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFileError(f"not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clients", {}), dict):
        raise KeyFileError('expected {"clients": {NAME: {...}}}')
    data.setdefault("clients", {})
    seen: set[str] = set()
    for name, entry in data["clients"].items():
        info = _check_client(name, entry)
        if info.key_id in seen:
            raise KeyFileError(f"client {name!r}: key id {info.key_id} is used twice")
        seen.add(info.key_id)
    return data


def dump_key_file(document: dict[str, Any]) -> str:
    """The text of a key file; the document is checked first, so nothing bad is written."""
    parse_key_file(json.dumps(document))
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def list_clients(document: dict[str, Any]) -> list[KeyInfo]:
    """The clients of a key-file document, by name, without their hashes."""
    return [_check_client(n, e) for n, e in sorted(document.get("clients", {}).items())]


def add_client(
    document: dict[str, Any],
    client: str,
    routes: list[str],
    rate: float,
    burst: int,
    *,
    expires_in: float | None = None,
    now: float | None = None,
) -> tuple[dict[str, Any], str]:
    """A new document with ``client`` added (or its key replaced) and the new key, which
    is stored nowhere. ``expires_in`` seconds from ``now``; None: the key does not expire."""
    if not CLIENT_NAME.fullmatch(client):
        raise ValueError(f"client name {client!r}: 1-64 of A-Z a-z 0-9 . _ @ -")
    if not routes:
        raise ValueError("give at least one route")
    if not (math.isfinite(rate) and rate > 0) or burst < 1:
        raise ValueError(f"rate must be > 0 and burst >= 1, got {rate:g} and {burst}")
    if expires_in is not None and not (math.isfinite(expires_in) and expires_in > 0):
        raise ValueError(f"expires_in must be a positive number of seconds, got {expires_in}")
    issued = int(time.time() if now is None else now)
    key_id = secrets.token_hex(6)
    secret = secrets.token_hex(32)
    entry: dict[str, Any] = {
        "key_id": key_id,
        "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "routes": [parse_route(r) for r in routes],
        "rate": rate,
        "burst": burst,
        "issued_at": issued,
    }
    if expires_in is not None:
        entry["expires_at"] = issued + math.ceil(expires_in)
    clients = dict(document.get("clients", {}))
    clients[client] = entry
    return {**document, "clients": clients}, f"{KEY_PREFIX}{key_id}_{secret}"


def revoke_client(document: dict[str, Any], client: str) -> dict[str, Any]:
    """A new document without ``client``; ValueError if there is no such client."""
    clients = dict(document.get("clients", {}))
    if client not in clients:
        raise ValueError(f"no client {client!r} in the key file")
    del clients[client]
    return {**document, "clients": clients}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """The key file's document under an exclusive lock (a sibling ``.lock`` file), so two
    ``issue-key`` runs cannot lose each other's client."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = '{"clients": {}}'
        try:
            yield parse_key_file(text)
        except KeyFileError as e:
            raise KeyFileError(f"{path}: {e}") from None
    finally:
        os.close(fd)


def _write(path: Path, document: dict[str, Any]) -> None:
    text = dump_key_file(document)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def issue_key(
    path: str | Path,
    client: str,
    routes: list[str],
    rate: float,
    burst: int,
    *,
    expires_in: float | None = None,
) -> str:
    """Add or replace ``client``'s key in the file (0600, written atomically); returns the
    key, which is not stored anywhere."""
    path = Path(path)
    with _locked(path) as document:
        new, key = add_client(document, client, routes, rate, burst, expires_in=expires_in)
        _write(path, new)
    return key


def update_key_file(
    path: str | Path, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Apply ``change`` to the file's document under its lock, and write the result."""
    path = Path(path)
    with _locked(path) as document:
        _write(path, change(document))


def revoke_key(path: str | Path, client: str) -> None:
    """Remove ``client`` from the file; a running gateway refuses its key from then on."""
    path = Path(path)
    with _locked(path) as document:
        _write(path, revoke_client(document, client))


def list_keys(path: str | Path) -> list[KeyInfo]:
    """The clients in the file (none if it does not exist)."""
    path = Path(path)
    with _locked(path) as document:
        return list_clients(document)


class ApiKeys:
    """The key file, re-read when it changes, so ``issue-key`` and ``revoke-key`` take
    effect without a restart of the gateway. A file that cannot be read or parsed makes
    every key check raise KeyFileError (the gateway answers 503), logged once per change
    of the file, not per request."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._clients: dict[str, tuple[KeyInfo, str]] = {}
        self._error: KeyFileError | None = None

    def _load(self) -> None:
        try:
            st = self.path.stat()  # one syscall per key check: cheap, and revocation is instant
        except FileNotFoundError:
            self._stamp, self._clients, self._error = None, {}, None
            return
        except OSError as e:
            self._stamp, self._error = None, KeyFileError(f"{self.path}: {e.strerror}")
            log.error("event=api-keys-unreadable path=%s error=%s", self.path, e.strerror)
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            document = parse_key_file(self.path.read_bytes())
        except (KeyFileError, OSError) as e:
            self._error = KeyFileError(f"{self.path}: {e}")
            log.error("event=api-keys-unusable path=%s error=%s; every API key gets 503 until "
                      "the file is fixed", self.path, json.dumps(str(e)[:300]))  # fmt: skip
            return
        self._clients = {
            info.key_id: (info, document["clients"][info.name]["sha256"])
            for info in list_clients(document)
        }
        if self._error is not None:
            log.info("event=api-keys-usable-again path=%s clients=%d", self.path,
                     len(self._clients))  # fmt: skip
        self._error = None

    def check(self, key: str) -> Client:
        """The client whose key this is; KeyRefused (unknown, wrong secret, expired) or
        KeyFileError (the file cannot be used)."""
        if not key.startswith(KEY_PREFIX):
            raise KeyRefused("unknown API key")
        key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
        if not sep:
            raise KeyRefused("unknown API key")
        with self._lock:
            self._load()
            if self._error is not None:
                raise self._error
            found = self._clients.get(key_id)
        if found is None:
            raise KeyRefused("unknown API key")
        info, sha256 = found
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, sha256):
            raise KeyRefused("unknown API key")
        if info.expired():
            raise KeyRefused("API key expired")
        return Client(name=info.name, auth="apikey", routes=info.routes, rate=info.rate,
                      burst=info.burst)  # fmt: skip

    def authenticate(self, key: str) -> Client | None:
        """The client whose key this is, or None (unknown key, wrong secret, expired)."""
        try:
            return self.check(key)
        except KeyRefused:
            return None


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
