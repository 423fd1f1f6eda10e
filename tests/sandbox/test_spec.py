import pytest

from ringfence.sandbox import Limits, SandboxError, SandboxSpec


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
    ],
)
def test_bad_specs_are_refused_with_the_reason(make, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        make()
