from __future__ import annotations

import pytest

from ._federated import Federated, start_federated


@pytest.fixture
def federated(spire_server_factory, spire_agent_factory) -> Federated:
    return start_federated(spire_server_factory, spire_agent_factory)
