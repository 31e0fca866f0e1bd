"""Every ```python block of the task docs runs against real SPIRE, so the docs cannot rot.

Blocks of one page run in order in one namespace (later blocks use earlier names), with
two federated trust domains up and the page's environment variables set. Blocks fenced as
```py are illustrations that need something not installed (httpx) and are not run.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from integration.tls._federated import SERVICE_A, SERVICE_B, start_federated

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

# page -> lines its output must contain (what the page claims happens)
EXPECTED = {
    "fetch-an-svid.md": [f"I am {SERVICE_A}", "root(s) for td-a.test", "'td-b.test'"],
    "serve-mtls.md": [f"hello {SERVICE_A}", f"hi {SERVICE_A}", f"peer: {SERVICE_A}"],
    "call-across-trust-domains.md": [
        f"{SERVICE_B} answered PING",
        "td-b.test refresh hint",
        "watched td-b.test x509 roots: 1",
    ],
    "validate-a-jwt.md": [f"caller: {SERVICE_B}", "refused: jwtsvid: expected audience"],
    "explore-trust-bundles.md": [
        "own trust domain: td-a.test",
        "federated: td-b.test 1 root(s)",
        "follows td-b.test at https://127.0.0.1:",
        "workload trusts td-b.test with 1 root(s)",
        "JWT bundles for: ['td-a.test', 'td-b.test']",
        "td-b.test bundle endpoint: sequence",
    ],
}


def python_blocks(page: str) -> list[str]:
    return _BLOCK.findall((DOCS / page).read_text())


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_docs_page_examples_run_against_real_spire(
    page: str, spire_server_factory, spire_agent_factory, monkeypatch
) -> None:
    blocks = python_blocks(page)
    assert blocks, f"{page} has no ```python blocks"
    world = start_federated(spire_server_factory, spire_agent_factory)
    world.register(SERVICE_A, "a")
    world.register(SERVICE_B, "b")
    # Wait until both agents serve the SVIDs with federated bundles, as a deployed
    # workload would find them.
    world.x509_source(SERVICE_A, "a").close()
    world.x509_source(SERVICE_B, "b").close()
    monkeypatch.setenv("SPIFFE_ENDPOINT_SOCKET", world.agent_a.endpoint)
    monkeypatch.setenv("TD_A_SOCKET", world.agent_a.endpoint)
    monkeypatch.setenv("TD_B_SOCKET", world.agent_b.endpoint)
    monkeypatch.setenv("TD_B_BUNDLE_ENDPOINT", world.server_b.federation_url)
    monkeypatch.setenv("TD_A_SERVER_SOCKET", str(world.server_a.socket_path))

    out = io.StringIO()
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOCS / page}[block {i + 1}]", "exec"), namespace)
    printed = out.getvalue()
    for expected in EXPECTED[page]:
        assert expected in printed, f"{page}: expected {expected!r} in output:\n{printed}"
