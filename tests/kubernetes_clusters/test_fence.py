"""The network fence: nothing from a pod or service network is routed off this machine.

"The outside" is a network namespace of the test's own (`sfk-outside`, a veth pair, an
address the test assigns, the host's connected route to it): the test sends traffic to no
address that its own namespaces do not own. A process on the host reaches it; a pod on any
node of either cluster does not, and neither does a pod's packet to a service address that
kube-proxy did not translate.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubernetes_clusters._kube import SMOKE_NS, Kube

OUTSIDE_NS = "sfk-outside"
OUTSIDE_LINK = "sfk-out0"
HOST_SIDE, OUTSIDE_ADDR = "10.250.9.1", "10.250.9.2"
PORT = 8080


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def outside(kubes: dict[str, Kube], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An HTTP server in a namespace that stands for the world beyond this machine."""
    log = tmp_path_factory.mktemp("outside") / "requests.log"
    _ip("netns", "add", OUTSIDE_NS)
    server = None
    try:
        _ip("link", "add", OUTSIDE_LINK, "type", "veth", "peer", "name", "sfk-out1")
        _ip("link", "set", "sfk-out1", "netns", OUTSIDE_NS)
        _ip("addr", "add", f"{HOST_SIDE}/30", "dev", OUTSIDE_LINK)
        _ip("link", "set", OUTSIDE_LINK, "up")
        _ip("-n", OUTSIDE_NS, "addr", "add", f"{OUTSIDE_ADDR}/30", "dev", "sfk-out1")
        _ip("-n", OUTSIDE_NS, "link", "set", "sfk-out1", "up")
        _ip("-n", OUTSIDE_NS, "link", "set", "lo", "up")
        # A way back to anything, as the real outside would have.
        _ip("-n", OUTSIDE_NS, "route", "add", "default", "via", HOST_SIDE)
        server = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{OUTSIDE_NS}", "--", sys.executable, "-u", "-c",
             "import http.server, socketserver\n"
             "class H(http.server.BaseHTTPRequestHandler):\n"
             "    def do_GET(self):\n"
             "        print('request from', self.client_address[0], flush=True)\n"
             "        self.send_response(200); self.end_headers(); self.wfile.write(b'outside')\n"
             # HTTPServer.server_bind looks its own name up in DNS, which this namespace
             # has no way to (and must not) reach
             "class S(http.server.HTTPServer):\n"
             "    def server_bind(self):\n"
             "        socketserver.TCPServer.server_bind(self)\n"
             "        self.server_name, self.server_port = 'outside', self.server_address[1]\n"
             f"S(('{OUTSIDE_ADDR}', {PORT}), H).serve_forever()\n"],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        last: Exception | None = None
        while time.monotonic() < deadline and not log.read_text():
            try:
                urllib.request.urlopen(f"http://{OUTSIDE_ADDR}:{PORT}/", timeout=1)
                break
            except OSError as exc:
                last = exc
                time.sleep(0.2)
        else:
            raise AssertionError(f"outside server not up: exit {server.poll()}, {last!r}, "
                                 f"log {log.read_text()!r}")
        yield log
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "link", "del", OUTSIDE_LINK], capture_output=True)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True)


def test_a_host_process_reaches_the_outside(outside: Path) -> None:
    try:
        body = urllib.request.urlopen(f"http://{OUTSIDE_ADDR}:{PORT}/", timeout=5).read()
    except OSError as exc:
        raise AssertionError(f"{exc}; outside server log: {outside.read_text()!r}") from exc
    assert body == b"outside"
    assert f"request from {HOST_SIDE}" in outside.read_text()


def test_pods_on_every_node_cannot_reach_the_outside(kube: Kube, outside: Path) -> None:
    before = outside.read_text()
    script = (
        "import socket, urllib.request\n"
        "def attempt(url):\n"
        "    try:\n"
        "        urllib.request.urlopen(url, timeout=4)\n"
        "        return 'reached'\n"
        "    except OSError as exc:\n"
        "        return 'blocked ' + type(exc).__name__\n"
        f"print(attempt('http://{OUTSIDE_ADDR}:{PORT}/'))\n"
        # a service address of this cluster that no Service has: kube-proxy leaves it
        # untranslated, and it must not be routed off the machine either
        f"print(attempt('http://{kube.info['service_unused_ip']}:{PORT}/'))\n"
        # and the same pod does reach its own API server through the kubernetes Service
        "s = socket.create_connection(('kubernetes.default.svc', 443), timeout=5)\n"
        "print('api reachable'); s.close()\n"
    )
    # every node: each has its own link to the host, and the fence must hold on each
    for node in kube.nodes:
        phase, logs = kube.run_python(SMOKE_NS, f"fence-probe-{node['name']}", script,
                                      node=node["name"])
        assert phase == "Succeeded", (node, logs)
        outside_result, service_result, api = logs.strip().splitlines()
        assert outside_result.startswith("blocked"), (node, logs)
        assert service_result.startswith("blocked"), (node, logs)
        assert api == "api reachable", node
    assert outside.read_text() == before, "the outside server saw a request from a pod"
