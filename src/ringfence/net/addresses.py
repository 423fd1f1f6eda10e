"""Address classification: what kind of address an IP is, by explicit rules, and whether a proxy may dial it.

Owns: the table of special ranges (each with the name a denial reason uses), the IPv6 forms that embed an IPv4
address (mapped, compatible, NAT64, 6to4, Teredo), which are judged by the IPv4 address inside them, the cloud
metadata addresses, and `AddressPolicy` (the ranges an operator adds, the host's own interface addresses).
Pure: no sockets, no DNS. The host's interface addresses are read by `ringfence.net.interfaces` and passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services: denied even inside an operator's --allow-range, unless named exactly there.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)

# (network, class name). Order matters only for overlaps: the first match names the class.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), name)
    for net, name in (
        ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 itself reaches the host
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments (192.0.0.192 is a metadata address)
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("fc00::/7", "private"),  # unique local
        ("ff00::/8", "multicast"),
        ("100::/64", "discard"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2001:2::/48", "benchmarking"),
        ("2001:10::/28", "reserved"),  # ORCHID
        ("2001:20::/28", "reserved"),  # ORCHIDv2
        ("64:ff9b:1::/48", "nat64-local"),
    )
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_GLOBAL_V6 = ipaddress.ip_network("2000::/3")


@dataclass(frozen=True, slots=True)
class AddressClass:
    """What an address is: `public`, or the name of the special range (with the embedded IPv4 form, if any)."""

    name: str
    via: str | None = None  # "mapped", "compatible", "nat64", "6to4", "teredo": how an IPv4 address was embedded

    @property
    def public(self) -> bool:
        return self.name == "public"

    def __str__(self) -> str:
        return self.name if self.via is None else f"{self.name} (IPv4 in {self.via} IPv6)"


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the form it uses; None for a plain IPv6 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "nat64"
    if address in _6TO4:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF), "6to4"
    if address in _TEREDO:
        # The client's public IPv4 is the last 32 bits, inverted (RFC 4380).
        return ipaddress.IPv4Address(~int(address) & 0xFFFFFFFF), "teredo"
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # ::1 and :: are themselves, not IPv4
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "compatible"
    return None


def _plain(address: IPAddress) -> str:
    for network, name in _SPECIAL:
        if address.version == network.version and address in network:
            return name
    if address.version == 6 and address not in _GLOBAL_V6:
        return "reserved"  # outside 2000::/3 nothing is globally routed unicast today
    return "public"


@lru_cache(maxsize=65536)
def classify(address: IPAddress) -> AddressClass:
    """The class of `address`; an IPv6 form embedding IPv4 takes the class of the IPv4 inside (a NAT64 of a
    public address is public, of a metadata address is metadata). Teredo is never public: it tunnels to an
    arbitrary relay."""
    if address in METADATA:
        return AddressClass("metadata")
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            ipv4, form = inner
            if form == "teredo":
                return AddressClass("tunnel", form)
            judged = classify(ipv4)
            return AddressClass(judged.name, form)
    return AddressClass(_plain(address))


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    allowed: bool
    address: IPAddress
    kind: AddressClass
    reason: str  # what a denial says; for an allowed address, why it is allowed


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be dialed: public ones, plus the operator's `allow_ranges` (their own networks, local
    test servers). Metadata addresses stay refused inside an allowed range unless the range is exactly that one
    address. The host's own interface addresses are refused like loopback, outside any allowed range."""

    allow_ranges: tuple[IPNetwork, ...] = ()
    host_addresses: frozenset[IPAddress] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, ranges: Iterable[str], host_addresses: Iterable[IPAddress] = ()) -> AddressPolicy:
        parsed: list[IPNetwork] = []
        for text in ranges:
            try:
                parsed.append(ipaddress.ip_network(text.strip(), strict=True))
            except ValueError as exc:
                raise ValueError(f"allowed range {text!r} is not a network in CIDR form: {exc}") from None
        return cls(tuple(parsed), frozenset(host_addresses))

    def _in_allowed(self, address: IPAddress) -> IPNetwork | None:
        for network in self.allow_ranges:
            if address.version == network.version and address in network:
                return network
        return None

    def judge(self, address: IPAddress) -> AddressVerdict:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            return AddressVerdict(False, address, AddressClass("scoped"), "IPv6 address with a zone id")
        kind = classify(address)
        allowed_by = self._in_allowed(address)
        if kind.name == "metadata":
            exact = allowed_by is not None and allowed_by.num_addresses == 1
            if exact:
                return AddressVerdict(True, address, kind, f"metadata address allowed exactly by {allowed_by}")
            return AddressVerdict(False, address, kind, f"{address} is a cloud metadata address")
        if allowed_by is not None:
            return AddressVerdict(True, address, kind, f"in the allowed range {allowed_by}")
        if address in self.host_addresses:
            return AddressVerdict(False, address, AddressClass("host"), f"{address} is an address of this host")
        if not kind.public:
            return AddressVerdict(False, address, kind, f"{address} is a {kind} address")
        return AddressVerdict(True, address, kind, "public address")
