from __future__ import annotations

import pytest

from spire_fabric.identity import BundleSet
from spire_fabric.testing.pki import Ca, MutableSvidSource, make_ca, make_svid

SERVER_ID = "spiffe://td-a.test/server"
CLIENT_ID = "spiffe://td-b.test/client"


class World:
    """Two trust domains with CAs, a server SVID in A and a client SVID in B."""

    def __init__(self) -> None:
        self.ca_a: Ca = make_ca("td-a.test")
        self.ca_b: Ca = make_ca("td-b.test")
        self.bundles = BundleSet([self.ca_a.bundle("td-a.test"), self.ca_b.bundle("td-b.test")])
        self.server_svid = MutableSvidSource(make_svid(self.ca_a, SERVER_ID))
        self.client_svid = MutableSvidSource(make_svid(self.ca_b, CLIENT_ID))


@pytest.fixture
def world() -> World:
    return World()
