"""Mapping gRPC failures: SPIRE's words kept, and a hint where they alone mislead."""

from __future__ import annotations

import grpc
from fake_rpc_error import FakeRpcError

from spire_fabric.server._errors import SpireApiError, error_from_rpc


def test_a_socket_without_the_server_api_is_named_as_such() -> None:
    words = "unknown service spire.api.server.entry.v1.Entry"
    err = error_from_rpc(FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, words), "entry.ListEntries")
    assert isinstance(err, SpireApiError)
    assert words in str(err)
    assert "does not serve the SPIRE Server API: an agent's socket?" in str(err)


def test_other_unimplemented_answers_keep_only_spires_words() -> None:
    err = error_from_rpc(FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "method X not implemented"),
                         "entry.X")  # fmt: skip
    assert str(err) == "entry.X: UNIMPLEMENTED: method X not implemented"
