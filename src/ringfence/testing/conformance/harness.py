"""What a conformance check is given: the backend under test (`make` builds one over the same root each time), the
limits to give it, a scratch directory, and where the backend keeps its sandboxes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ringfence.sandbox.base import Sandbox, SandboxBackend
from ringfence.sandbox.spec import Limits, SandboxSpec

HOST_SECRET = "RINGFENCE_CONFORMANCE_HOST_SECRET"  # noqa: S105 (a variable's name, planted on the host)


@dataclass
class Harness:
    make: Callable[[], SandboxBackend]  # a backend over `root` each time (reconcile needs a second one)
    limits: Limits  # what this backend is given (a backend that cannot enforce a limit is given none of it)
    scratch: Path  # for the checks' own files (sockets)
    root: Path  # where the backend keeps its sandboxes

    def spec(self, **changes: object) -> SandboxSpec:
        return replace(SandboxSpec(limits=self.limits), **changes)  # type: ignore[arg-type]


async def sandbox(h: Harness, **changes: object) -> tuple[SandboxBackend, Sandbox]:
    backend = h.make()
    return backend, await backend.create(h.spec(**changes))
