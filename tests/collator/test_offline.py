"""The guard that keeps the model load off the network really refuses outbound connections."""

from __future__ import annotations

import socket

import pytest

from .conftest import no_network


def test_no_network_refuses_remote_but_allows_loopback() -> None:
    with no_network(), socket.socket() as remote:
        with pytest.raises(OSError, match="network access attempted"):
            remote.connect(("203.0.113.1", 443))
        with socket.socket() as server, socket.socket() as client:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client.connect(server.getsockname())
    assert socket.socket.connect is not None
