"""Hand-rolled JWS signing, so tests can forge exactly the tokens they need."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(header: dict[str, Any], payload: dict[str, Any], key: Any = None) -> str:
    """Encode and sign with ``header['alg']``; ``key`` is a private key or HMAC bytes."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    data = signing_input.encode()
    alg = header["alg"]
    if alg == "none":
        signature = b""
    elif alg.startswith("HS"):
        signature = hmac.new(key, data, hashlib.sha256).digest()
    elif alg.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif alg.startswith("PS"):
        signature = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    elif alg == "ES256":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise ValueError(alg)
    return f"{signing_input}.{b64url(signature)}"


def sign_es256_parts(header_part: str, payload_part: str, key: ec.EllipticCurvePrivateKey) -> str:
    """Sign already-encoded parts, so tests can sign exactly the text they mean to send."""
    signing_input = f"{header_part}.{payload_part}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
