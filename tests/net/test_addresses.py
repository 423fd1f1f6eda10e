"""The address classifier: explicit tables for every special range, and properties that must hold for all
addresses (an IPv4 address embedded in IPv6 is judged as itself; nothing non-public is ever allowed)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.net.addresses import METADATA, AddressPolicy, classify

CASES = [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.0.1", "private"),
    ("fc00::1", "private"), ("fdff::1", "private"),
    ("100.64.0.1", "cgnat"), ("100.127.255.255", "cgnat"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.1.1.1", "multicast"), ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("192.88.99.1", "reserved"),
    ("198.18.0.1", "benchmarking"), ("198.19.255.1", "benchmarking"), ("2001:2::1", "benchmarking"),
    ("192.0.2.1", "documentation"), ("198.51.100.1", "documentation"), ("203.0.113.1", "documentation"),
    ("2001:db8::1", "documentation"), ("3fff::1", "documentation"),
    ("169.254.169.254", "metadata"), ("100.100.100.200", "metadata"), ("168.63.129.16", "metadata"),
    ("192.0.0.192", "metadata"), ("fd00:ec2::254", "metadata"),
    ("::ffff:127.0.0.1", "loopback"), ("::127.0.0.1", "loopback"), ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2002:a9fe:a9fe::1", "metadata"), ("2002:0a00:0001::1", "private"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnel"),
    ("100::1", "discard"), ("8.8.8.8", "public"), ("1.1.1.1", "public"), ("2606:4700::1111", "public"),
    ("64:ff9b::808:808", "public"), ("4000::1", "reserved"),
]  # fmt: skip


@pytest.mark.parametrize(("address", "expected"), CASES)
def test_every_special_range_has_its_name(address: str, expected: str) -> None:
    assert classify(ipaddress.ip_address(address)).name == expected


v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@given(v4)
def test_embedded_ipv4_is_judged_as_itself(address: ipaddress.IPv4Address) -> None:
    plain = classify(address).name
    for embedded in (
        ipaddress.IPv6Address(f"::ffff:{address}"),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address)),
        ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80) | 1),
    ):
        assert classify(embedded).name == plain


@given(st.one_of(v4, st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)))
def test_an_address_is_allowed_only_if_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    verdict = AddressPolicy().judge(address)
    assert verdict.allowed == classify(address).public
    if verdict.allowed:
        assert not (address.is_private or address.is_loopback or address.is_multicast or address.is_link_local)
        assert address not in METADATA


def test_allowed_ranges_never_open_metadata_unless_named_exactly() -> None:
    wide = AddressPolicy.parse(["169.254.0.0/16", "127.0.0.0/8"])
    assert wide.judge(ipaddress.ip_address("127.0.0.5")).allowed
    assert not wide.judge(ipaddress.ip_address("169.254.169.254")).allowed
    exact = AddressPolicy.parse(["169.254.169.254/32"])
    assert exact.judge(ipaddress.ip_address("169.254.169.254")).allowed


def test_host_addresses_are_refused_and_bad_ranges_named() -> None:
    policy = AddressPolicy.parse([], [ipaddress.ip_address("8.8.4.4")])
    assert policy.judge(ipaddress.ip_address("8.8.4.4")).kind.name == "host"
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8' is not a network"):
        AddressPolicy.parse(["10.0.0.1/8"])
