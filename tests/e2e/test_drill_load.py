"""The drill's load generator against a real enterprise deployment: every flow carries
traffic, and a failure a real component produces (the external client's API key revoked
in the gateway's key file) is counted under its flow with the gateway's own reason."""

from __future__ import annotations

import time

from drill.load import FLOWS, GATEWAY, KEYS_FILE, LOAD_CLIENT, TrafficLoad
from spire_fabric.examples.security_gateway.clients import (
    dump_key_file,
    parse_key_file,
    revoke_client,
)

from .conftest import Deploy


def test_every_flow_carries_traffic_and_a_revoked_api_key_is_counted_with_its_reason(
    enterprise: Deploy,
) -> None:
    d = enterprise.deployment()
    load = TrafficLoad(d)
    with load:
        time.sleep(8)
        clean = load.report()
        raw = d.workload_file(GATEWAY, KEYS_FILE)
        assert raw is not None
        d.put_workload_file(GATEWAY, KEYS_FILE,
                            dump_key_file(revoke_client(parse_key_file(raw), LOAD_CLIENT)).encode())
        deadline = time.monotonic() + 30  # the gateway re-reads its key file when it changes
        while load.report().flows["external"].failures < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    final = load.stop()
    print(f"load: clean {clean.summary()}; final {final.summary()}")
    assert clean.failures == 0, clean.reasons()
    assert set(clean.flows) == set(FLOWS)
    # in 8 s: a request each 50 ms at most, a create each second
    assert all(c.requests >= (3 if k == "external-create" else 5)
               for k, c in clean.flows.items()), clean.summary()  # fmt: skip
    external = final.flows["external"]
    assert external.failures >= 3, final.summary()
    unknown_key = 'HTTP 401 (expected 200): {"error": "Unauthorized", "reason": "unknown API key"}'
    assert set(external.reasons) == {unknown_key}, external.reasons
    create = final.flows["external-create"]  # one a second: it may or may not have failed yet
    assert set(create.reasons) <= {unknown_key.replace("200", "201")}, create.reasons
    others = {k: v.failures for k, v in final.flows.items() if not k.startswith("external")}
    assert others == dict.fromkeys(others, 0), final.reasons()
    # stopped means stopped: nothing is counted afterwards
    after = load.report().requests
    time.sleep(1)
    assert load.report().requests == after
