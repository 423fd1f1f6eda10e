"""The sandbox conformance suite: what every `SandboxBackend` guarantees, as checks any backend's tests run.

Owns: `CHECKS`, async functions each taking a `Harness` (a backend under test, the limits to give it, a scratch
directory) and asserting one guarantee from inside the sandbox (S-BOX B1 to B8): the environment is rebuilt from the
explicit list (nothing of the host's, in any process), not root and no privilege gained, a read-only system, a
writable workspace and a private /tmp, no host secret in reach, no network in mode `none`, the proxies bridged in
mode `proxy` with each sandbox reaching only its own (B6), bytes intact, bridged connections that end with their
command and with destroy, a bounded flood; per-command timeouts and early close, what a command leaves behind ending
with it, output streamed as it comes; the memory, process and workspace limits measured from inside, /tmp bounded by
memory; the same system calls refused by the filter (B5, B8); file access that never follows the agent's symlinks
out of the workspace; everyday file tools and pipelines that work as on a plain host; destroy that ends everything
and is idempotent, reconcile of what a previous process left. A backend is done when every check passes on it
unchanged (trio's and httpcore's conformance suites are the model). Backend-specific checks (bwrap flags, runsc
flags, host-side cgroups) stay beside their backend. The layers above test against real backends;
`ringfence.testing.fake_backend` is for tests of code that only needs the interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ringfence.testing.conformance import basics, bridge, kernel, processes, tools
from ringfence.testing.conformance.harness import HOST_SECRET, Harness, sandbox

CHECKS: dict[str, Callable[[Harness], Awaitable[None]]] = {
    name: check
    for module in (basics, processes, kernel, bridge, tools)
    for name, check in vars(module).items()
    if callable(check)
    and not name.startswith("_")
    and getattr(check, "__module__", "") == module.__name__  # not what a module imported (the harness's helpers)
}

__all__ = ["CHECKS", "HOST_SECRET", "Harness", "sandbox"]
