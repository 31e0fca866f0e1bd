"""A gRPC failure as a client call raises it, with the code and details a test chooses.

Why: the error mapping and the Workload API stream's retry decide by ``code()`` and
``details()`` alone; a real server cannot be made to fail with every code on demand.
"""

from __future__ import annotations

import grpc


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details
