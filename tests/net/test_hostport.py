"""Target parsing: one strict reading; numeric spellings become the address they mean (E3); tricks are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.net.hostport import HostError, normalize_name, parse_target


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("Example.COM.:443", "example.com", 443),
        ("[::1]:80", "::1", 80),
        ("[0:0:0:0:0:0:0:1]:80", "::1", 80),
        ("2130706433:80", "127.0.0.1", 80),
        ("0x7f000001:80", "127.0.0.1", 80),
        ("0x7f.1:80", "127.0.0.1", 80),
        ("0177.0.0.1:80", "127.0.0.1", 80),
        ("127.1:80", "127.0.0.1", 80),
        ("0:80", "0.0.0.0", 80),
        ("bücher.example:443", "xn--bcher-kva.example", 443),
    ],
)
def test_targets_read_as_the_address_they_mean(text: str, host: str, port: int) -> None:
    target = parse_target(text)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    "text",
    ["a.example", "a.example:0", "a.example:65536", "a.example:+1", "user@a.example:1", "[a.example]:1",
     "a.example:1@b.example:1", "::1:80", "[fe80::1%eth0]:80", "a\x00b.example:1", "a\r\nb:1", "a b:1",
     "a..example:1", ".a.example:1", "a%2e.example:1", "999.1.1.1:80", "1.2.3.4.5:80", ""],
)  # fmt: skip
def test_tricks_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(HostError):
        parse_target(text)


labels = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")


@given(st.lists(labels, min_size=2, max_size=5), st.booleans(), st.booleans())
def test_normalizing_is_idempotent_and_ignores_case_and_one_trailing_dot(
    parts: list[str], upper: bool, dot: bool
) -> None:
    name = ".".join(parts)
    written = (name.upper() if upper else name) + ("." if dot else "")
    once = normalize_name(written)
    assert once == name and normalize_name(once) == once
