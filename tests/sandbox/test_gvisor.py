"""What is particular to the gVisor backend: its refusals (no runsc, a process limit it cannot enforce, root needed)
name the reason and never fall back to another backend; a sandbox runs on gVisor's own kernel; a server killed
mid-sandbox leaves a container that the next start's reconcile removes, with every runsc process of it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.sandbox.backends import open_backend
from ringfence.sandbox.gvisor import GVisorBackend
from ringfence.sandbox.spec import Limits, SandboxError, SandboxSpec


@pytest.fixture
def root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="rf-gvisor-"))
    base.chmod(0o711)
    yield base / "sandboxes"


def _runsc_processes(root: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"runsc" in cmdline.split(b"\0")[0] and str(root).encode() in cmdline:
                found.append(int(entry))
    return found


def test_refusals_name_the_reason(root: Path) -> None:
    with pytest.raises(SandboxError, match=r"runsc\) is not installed"):
        GVisorBackend(root, runsc="/nonexistent/runsc")
    with pytest.raises(SandboxError, match="'firecracker' is not one of: bubblewrap, gvisor"):
        open_backend("firecracker", root)
    backend = GVisorBackend(root)
    with pytest.raises(SandboxError, match="cannot enforce a process limit"):
        asyncio.run(backend.create(SandboxSpec(limits=Limits(pids=64, workspace_bytes=None))))
    assert not list(root.glob("sbx_*"))  # refused before anything was made


def test_a_sandbox_runs_on_gvisors_own_kernel(root: Path) -> None:
    async def go() -> bytes:
        backend = GVisorBackend(root)
        box = await backend.create(SandboxSpec(limits=Limits(pids=None, workspace_bytes=None)))
        try:
            return (await box.run(["sh", "-c", "uname -r; dmesg | head -1"])).stdout
        finally:
            await box.destroy()

    said = asyncio.run(go())
    assert os.uname().release.encode() not in said and b"gVisor" in said


def test_a_killed_server_leaves_nothing_reconcile_does_not_remove(root: Path) -> None:
    program = textwrap.dedent(f"""
        import asyncio, sys, time
        from pathlib import Path
        from ringfence.sandbox.gvisor import GVisorBackend
        from ringfence.sandbox.spec import Limits, SandboxSpec
        async def main():
            spec = SandboxSpec(limits=Limits(pids=None, workspace_bytes=None))
            box = await GVisorBackend(Path({str(root)!r})).create(spec)
            events = box.exec(["sleep", "600"])
            print(box.id, flush=True)
            async for _ in events:
                pass
        asyncio.run(main())
    """)
    server = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    sandbox_id = server.stdout.readline().strip()
    assert sandbox_id.startswith("sbx_") and _runsc_processes(root)
    server.send_signal(signal.SIGKILL)
    server.wait()
    server.stdout.close()
    removed = asyncio.run(GVisorBackend(root).reconcile(keep=set()))
    assert sandbox_id in removed
    assert _runsc_processes(root) == [] or all(
        b"delete" in Path(f"/proc/{p}/cmdline").read_bytes() for p in _runsc_processes(root)
    )
    assert not (root / sandbox_id).exists()
