"""A taken port is reported with the pid and command that hold it."""

from __future__ import annotations

import os
import socket

from spire_fabric.runtime.local.ports import port_in_use


def test_free_port_is_reported_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port_in_use("127.0.0.1", port) is None


def test_taken_port_names_its_owner() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        taken = port_in_use("127.0.0.1", port)
    assert taken is not None
    assert taken.owner_pid == os.getpid()
    assert f"port {port}" in taken.describe() and f"pid {os.getpid()}" in taken.describe()
    assert "python" in (taken.owner_command or "")


def test_listening_port_is_seen_and_a_closed_one_is_not() -> None:
    from spire_fabric.runtime.local.ports import is_listening

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert is_listening(port)
    assert not is_listening(port)
