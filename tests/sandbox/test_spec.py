from pathlib import Path

import pytest

from ringfence.sandbox import Limits, SandboxError, SandboxSpec
from ringfence.sandbox.spec import ProxyRoutes, parse_size


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SandboxSpec(network="full"), "network mode 'full'"),
        (lambda: SandboxSpec(env={"PATH": "/evil"}), "PATH is set by the sandbox itself"),
        (lambda: SandboxSpec(env={"BAD-NAME": "x"}), "not a valid name"),
        (lambda: SandboxSpec(env={"X": "a\x00b"}), "NUL byte"),
        (lambda: Limits(memory_bytes=1024), "below 16 MiB"),
        (lambda: Limits(pids=1), "below 4"),
        (lambda: Limits(timeout_seconds=0), "must be positive"),
        (lambda: Limits(workspace_bytes=2**20), "below 64 MiB"),
        (lambda: Limits(cpu_weight=0), "between 1 and 10000"),
        (lambda: SandboxSpec(network="proxy"), "needs the session's proxy sockets"),
        (lambda: SandboxSpec(proxies=ProxyRoutes(Path("/x.sock"))), "the network mode is 'none'"),
        (lambda: SandboxSpec(env={"HTTPS_PROXY": "http://evil"}), "HTTPS_PROXY is set by the sandbox itself"),
        (lambda: parse_size("12X"), "is not a number of bytes"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(make, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        make()


@pytest.mark.parametrize(
    ("text", "size"), [("512M", 2**29), ("2G", 2**31), ("2GiB", 2**31), ("4096", 4096), ("1t", 2**40)]
)
def test_sizes_read_as_operators_write_them(text: str, size: int) -> None:
    assert parse_size(text) == size
