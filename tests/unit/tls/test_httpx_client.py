"""The httpx one-liner: `httpx.Client(verify=httpx_ssl_context(...))` runs the SPIFFE check."""

from __future__ import annotations

import httpx
import pytest

from spire_fabric.tls import authorize_id, httpx_ssl_context

from .conftest import CLIENT_ID, SERVER_ID, World
from .test_mtls_contexts import _serve


def test_httpx_sync_client_gets_through_to_an_authorized_server(world: World) -> None:
    context = httpx_ssl_context(world.client_svid, world.bundles, authorize_id(SERVER_ID))
    with _serve(world) as server, httpx.Client(verify=context) as client:
        response = client.get(server.url + "/")
    assert response.status_code == 200 and response.text == CLIENT_ID


def test_httpx_sync_client_refuses_a_server_with_another_id(world: World) -> None:
    context = httpx_ssl_context(
        world.client_svid, world.bundles, authorize_id("spiffe://td-a.test/other")
    )
    with (
        _serve(world) as server,
        httpx.Client(verify=context) as client,
        pytest.raises(httpx.ConnectError, match="not authorized"),
    ):
        client.get(server.url + "/")


async def test_httpx_async_client_checks_the_server_too(world: World) -> None:
    good = httpx_ssl_context(world.client_svid, world.bundles, authorize_id(SERVER_ID))
    bad = httpx_ssl_context(world.client_svid, world.bundles, authorize_id("spiffe://x.test/y"))
    with _serve(world) as server:
        async with httpx.AsyncClient(verify=good) as client:
            assert (await client.get(server.url + "/")).text == CLIENT_ID
        async with httpx.AsyncClient(verify=bad) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(server.url + "/")
