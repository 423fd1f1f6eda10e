"""The ClientHello reader against real hellos from Python's TLS stack, split every way, and a bounded fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.egress.tls import NotTls, read_client_hello
from tests.egress.harness import client_hello


@pytest.mark.parametrize("name", ["example.com", "xn--bcher-kva.example", "a" * 60 + ".example"])
def test_real_hellos_give_their_server_name(name: str) -> None:
    hello = client_hello(name)
    assert read_client_hello(hello).sni == name
    for cut in (0, 1, 4, 5, 40, len(hello) - 1):
        assert read_client_hello(hello[:cut]) is None  # needs more bytes, never a wrong answer


def test_a_hello_without_server_name() -> None:
    assert read_client_hello(client_hello(None)).sni is None


def test_a_hello_split_across_records() -> None:
    hello = client_hello("split.example")
    body = hello[5:]
    first, second = body[:50], body[50:]
    records = (
        b"\x16\x03\x01"
        + len(first).to_bytes(2, "big")
        + first
        + b"\x16\x03\x01"
        + len(second).to_bytes(2, "big")
        + second
    )
    assert read_client_hello(records).sni == "split.example"


@pytest.mark.parametrize(
    "data", [b"GET / HTTP/1.1\r\n\r\n", b"\x17\x03\x03\x00\x05hello", b"\x16\x03\x01\x00\x00",
             b"\x16\x02\x00\x00\x04abcd", b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"]
)  # fmt: skip
def test_what_is_not_a_client_hello_is_refused(data: bytes) -> None:
    with pytest.raises(NotTls):
        read_client_hello(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 600))
def test_fuzz_never_crashes_and_never_invents_a_name(noise: bytes, at: int) -> None:
    hello = client_hello("fuzz.example")
    mutated = hello[:at] + noise + hello[at + len(noise) :]
    try:
        result = read_client_hello(mutated)
    except NotTls:
        return
    assert result is None or result.sni is None or isinstance(result.sni, str)
