"""Ready-made mTLS servers: threaded (socketserver / http.server handlers) and asyncio."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from spire_fabric.identity import SpiffeId, X509BundleSource, X509SvidSource

from ._authorize import Authorizer
from ._context import SpiffeServerContext, mtls_server_context
from ._peer import peer_spiffe_id

if TYPE_CHECKING:
    import spiffe

__all__ = ["MtlsServer", "TlsThreadingServer", "serve_mtls_threaded", "start_mtls_server"]

logger = logging.getLogger("spire_fabric.tls")


class _LogBudget:
    """At most ``lines`` log lines per ``window`` seconds; the rest are counted and said in
    one line when the next window opens. A handshake flood must not become a disk flood."""

    def __init__(self, lines: int = 20, window: float = 10.0) -> None:
        self.lines, self.window = lines, window
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._used = 0
        self._dropped = 0

    def take(self) -> tuple[bool, int]:
        """(may log now, lines dropped in the window before, to report first)."""
        now = time.monotonic()
        with self._lock:
            dropped = 0
            if now - self._start >= self.window:
                dropped, self._dropped = self._dropped, 0
                self._start, self._used = now, 0
            if self._used < self.lines:
                self._used += 1
                return True, dropped
            self._dropped += 1
            return False, dropped


class TlsThreadingServer(socketserver.ThreadingTCPServer):
    """Accepts plain TCP and handshakes in the per-connection thread; the public base of
    servers built on this package's TLS contexts (the federation bundle endpoint is one).

    Handshaking in ``accept()`` (what wrapping the listening socket does) would let one
    slow or silent client stall every other client; here the handshake, and with it the
    SPIFFE check, runs with a timeout in the connection's own thread.

    Bounded for hostile clients: at most ``max_connections`` connections at once (one
    thread each; a connection over the cap is closed at once, before any handshake, and
    counted in ``refused_over_cap``), a listen backlog of 128 so a burst of new
    connections is not dropped, and ``rejected`` keeps only the last
    ``REJECTED_KEPT`` reasons.
    """

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128  # the listen backlog; socketserver's default is 5
    REJECTED_KEPT = 100

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        context: SpiffeServerContext,
        handshake_timeout: float,
        max_connections: int = 512,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.rejected: collections.deque[str] = collections.deque(maxlen=self.REJECTED_KEPT)
        self.refused_over_cap = 0
        self._rejected_lock = threading.Lock()
        self._active = 0
        self._active_lock = threading.Lock()
        self._cap_logged = 0.0
        self._refusal_log = _LogBudget()
        super().__init__(address, handler)

    @property
    def active_connections(self) -> int:
        """Connections being handshaken or served now."""
        return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        """In the accept loop: refuse a connection over the cap, else start its thread."""
        with self._active_lock:
            over = self._active >= self.max_connections
            if over:
                self.refused_over_cap += 1
                log_now = time.monotonic() - self._cap_logged >= 10.0
                if log_now:
                    self._cap_logged = time.monotonic()
            else:
                self._active += 1
        if over:
            if log_now:  # at most one line per 10 s, however hard the flood
                logger.warning(
                    "tls: %d connections open, the cap; refusing new ones (%d so far)",
                    self.max_connections, self.refused_over_cap,
                )  # fmt: skip
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._active_lock:
                self._active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Complete the handshake in this connection's thread (bounded by the handshake timeout),
        then serve; a refused peer is logged and recorded in ``rejected``.
        """
        try:
            self._serve_connection(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.handshake_timeout)
        try:
            conn = self.context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
            conn.do_handshake()  # our SSLSocket class runs verify_peer here
        except (OSError, ValueError) as e:
            with self._rejected_lock:
                self.rejected.append(str(e))
            log_it, dropped = self._refusal_log.take()
            if dropped:
                logger.info("tls: %d more refused handshakes were not logged", dropped)
            if log_it:
                logger.info("tls: handshake with %s refused: %.300s", client_address, e)
            request.close()
            return
        conn.settimeout(None)
        try:
            self.finish_request(conn, client_address)
        except Exception:
            self.handle_error(conn, client_address)
        finally:
            self.shutdown_request(conn)


class MtlsServer:
    """A running threaded mTLS server; a context manager that stops it on exit.

    ``rejected`` lists why handshakes were refused (for logs and tests).
    """

    def __init__(self, server: TlsThreadingServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``https://host:port`` of the server."""
        host, port = self.address
        return f"https://{host}:{port}"

    @property
    def context(self) -> SpiffeServerContext:
        """The rotating server context the server uses."""
        return self._server.context

    @property
    def rejected(self) -> list[str]:
        """Why the last refused peers were refused (at most ``REJECTED_KEPT``), oldest
        first (for diagnostics and tests)."""
        with self._server._rejected_lock:
            return list(self._server.rejected)

    @property
    def server(self) -> TlsThreadingServer:
        """The socket server itself (its cap and counters)."""
        return self._server

    def close(self) -> None:
        """Stop serving and close the socket; connections in progress finish."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> MtlsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_mtls_threaded(
    handler: type[socketserver.BaseRequestHandler],
    svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet | spiffe.X509Bundle,
    authorizer: Authorizer,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    handshake_timeout: float = 10.0,
    context: SpiffeServerContext | None = None,
    client_cert: Literal["required", "optional"] = "required",
    max_connections: int = 512,
) -> MtlsServer:
    """Serve ``handler`` (e.g. an ``http.server.BaseHTTPRequestHandler``) over mTLS.

    Each connection runs in its own thread; a handler reads its verified peer with
    ``peer_spiffe_id(self.request)``. Pass ``context`` to reuse one built elsewhere
    (then the three sources are ignored). ``client_cert="optional"``: see
    ``mtls_server_context``. At most ``max_connections`` at once (see
    ``TlsThreadingServer``). Returns once the socket listens.
    """
    ctx = context or mtls_server_context(
        svid_source, bundle_source, authorizer, client_cert=client_cert
    )
    return MtlsServer(
        TlsThreadingServer((host, port), handler, ctx, handshake_timeout, max_connections)
    )


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, SpiffeId], Awaitable[None]]


async def start_mtls_server(
    handler: Handler,
    svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet | spiffe.X509Bundle,
    authorizer: Authorizer,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    handshake_timeout: float = 10.0,
    **kwargs: Any,
) -> asyncio.Server:
    """``asyncio.start_server`` over mTLS; ``handler(reader, writer, peer_id)`` per client.

    The peer is verified and authorized inside the handshake (asyncio drives our
    SSLObject), so ``handler`` only ever sees accepted peers.
    """
    context = mtls_server_context(svid_source, bundle_source, authorizer)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = peer_spiffe_id(writer.get_extra_info("ssl_object"))
        except LookupError:
            # Cannot happen with our context; refuse rather than serve an unchecked peer.
            logger.error("tls: connection without a verified SPIFFE peer; closing")
            writer.close()
            return
        try:
            await handler(reader, writer, peer)
        finally:
            if not writer.is_closing():
                writer.close()

    return await asyncio.start_server(
        on_connect,
        host,
        port,
        ssl=context,
        ssl_handshake_timeout=handshake_timeout,
        family=socket.AF_INET if ":" not in host else socket.AF_INET6,
        **kwargs,
    )
