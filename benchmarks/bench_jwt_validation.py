"""Local JWT-SVID validations per second: spire_fabric.identity vs py-spiffe.

Both validate the same ES256 token (signature, expiry, audience) against the same key.
Baseline: py-spiffe's ``JwtSvid.parse_and_validate``. Target ratio >= 2.0x (issue 16),
with strict parsing (docs/untrusted-input.md). Nothing is memoized across calls but the
parsed header and subject ID; OpenSSL's ECDSA verify is most of the time per token.

    .venv/bin/python benchmarks/bench_jwt_validation.py [seconds-per-round]
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
import time
from collections.abc import Callable

import spiffe
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from spire_fabric.identity import JwtBundle, TrustDomain, parse_and_validate_jwt_svid

AUDIENCE = "spiffe://td-a.test/service-a"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_es256(key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    header = _b64(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": "spiffe://td-b.test/service-b", "aud": [AUDIENCE], "exp": now + 3600,
              "iat": now}  # fmt: skip
    payload = _b64(json.dumps(claims).encode())
    der = key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            fn()
        count += 50
    return count / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    key = ec.generate_private_key(ec.SECP256R1())
    token = mint_es256(key, "kid-1")
    ours_bundle = JwtBundle(TrustDomain("td-b.test"), {"kid-1": key.public_key()})
    theirs_bundle = spiffe.JwtBundle(spiffe.TrustDomain("td-b.test"), {"kid-1": key.public_key()})

    def ours() -> object:
        return parse_and_validate_jwt_svid(token, ours_bundle, [AUDIENCE])

    def theirs() -> object:
        return spiffe.JwtSvid.parse_and_validate(token, theirs_bundle, {AUDIENCE})

    assert str(ours().spiffe_id) == str(theirs().spiffe_id)  # type: ignore[attr-defined]
    rounds: list[tuple[float, float]] = []
    for _ in range(3):  # alternate so drift hits both sides alike
        rounds.append((rate(ours, seconds), rate(theirs, seconds)))
    ours_rate = statistics.median(r[0] for r in rounds)
    theirs_rate = statistics.median(r[1] for r in rounds)
    print(f"spire_fabric.identity parse_and_validate_jwt_svid: {ours_rate:10.0f} validations/s")
    print(f"py-spiffe JwtSvid.parse_and_validate (baseline):   {theirs_rate:10.0f} validations/s")
    print(f"ratio: {ours_rate / theirs_rate:.2f}x (target >= 2.00x)")


if __name__ == "__main__":
    main()
