"""Choosing a sandbox backend by name (the setting `sandbox_backend`, `sandbox exec --backend`).

Owns: the names (`bubblewrap`, the light default; `gvisor`, an application kernel between the agent and the host)
and `open_backend`, which builds one or fails with the reason: an unknown name, a missing or failing runtime. It
never falls back to another backend.
"""

from __future__ import annotations

from pathlib import Path

from ringfence.sandbox.base import SandboxBackend
from ringfence.sandbox.spec import SandboxError

BACKENDS = ("bubblewrap", "gvisor")


def open_backend(name: str, root: Path, *, rootfs: Path = Path("/")) -> SandboxBackend:
    if name == "bubblewrap":
        from ringfence.sandbox.bubblewrap import BubblewrapBackend

        return BubblewrapBackend(root, rootfs=rootfs)
    if name == "gvisor":
        from ringfence.sandbox.gvisor import GVisorBackend

        return GVisorBackend(root, rootfs=rootfs)
    raise SandboxError(f"sandbox backend {name!r} is not one of: {', '.join(BACKENDS)}")
