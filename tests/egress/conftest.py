"""Fixtures shared by the egress tests: real upstream servers on loopback, and an open proxy (mode full, no
allowed ranges, names from a table the test controls)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ringfence.egress.proxy import ProxyLimits
from ringfence.egress.rules import EgressPolicy
from ringfence.net.resolve import StaticResolver
from tests.egress.harness import ProxyHarness, RawUpstream, http_upstream


@pytest.fixture
def upstream() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.close()


@pytest.fixture
def web() -> Iterator[Any]:
    server = http_upstream()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def open_proxy() -> Iterator[ProxyHarness]:
    """Mode full, no allowed ranges, names from a table: what production looks like from loopback."""
    proxy = ProxyHarness(
        {"s1": (EgressPolicy.build("full"), ProxyLimits())},
        resolver=StaticResolver(
            {
                "localhost": ["127.0.0.1", "::1"],
                "metadata.google.internal": ["169.254.169.254"],
                "inside.example": ["10.1.2.3"],
                "mixed-private.example": ["198.51.100.7", "10.0.0.1"],
            }
        ),
    )
    yield proxy
    proxy.close()
