"""The tests' git host is the product's local git host (ringfence.githost), requiring a token."""

from ringfence.githost import BACKEND, GitHost, Seen, git, make_repository
from ringfence.net.addresses import AddressPolicy
from ringfence.net.dial import Dialer
from ringfence.net.resolve import CachingResolver, StaticResolver

__all__ = ["BACKEND", "GitHost", "Seen", "git", "make_repository"]


def loopback_dialer() -> Dialer:
    """The gateway's dialer for tests: its upstreams (git hosts, model stand-ins) live on loopback, which the
    operator allows here as `egress_allow_ranges = ["127.0.0.0/8", "::1/128"]`; no name resolves."""
    return Dialer(AddressPolicy.parse(["127.0.0.0/8", "::1/128"]), CachingResolver(StaticResolver({})))
