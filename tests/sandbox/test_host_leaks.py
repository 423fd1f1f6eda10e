"""S-BOX B7 (and B2, G1): no process a sandbox can see carries anything of the host's environment or names a host
path it does not need. The probe reads every /proc/*/environ and /proc/*/cmdline it can, whole, in every sandbox
configuration the backend offers: network none and proxy (bridged), a fresh size-limited workspace, a plain
directory workspace, and an operator's workspace."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ringfence.sandbox import BubblewrapBackend, Limits, SandboxSpec
from tests.sandbox.conftest import run
from tests.sandbox.test_bridge import identity_servers
from tests.sandbox.test_escapes import probe

PLANTED_NAME = "RF_PLANTED_HOST_SECRET"
PLANTED_VALUE = "planted-host-value-4242"


def leaks(scan: dict[str, str], host_paths: list[str]) -> list[str]:
    """Every /proc entry of the scan that shows the planted variable or a host path."""
    found = []
    for entry, text in scan.items():
        if PLANTED_NAME in text or PLANTED_VALUE in text:
            found.append(f"{entry} carries the host's planted variable")
        found += [f"{entry} names host path {path}" for path in host_paths if path in text]
    return found


def assert_no_host_leaks(scan: Any, host_paths: list[str], *, mounts_named: bool = False) -> None:
    """`mounts_named`: the workspace is a bind of a host directory, whose path the kernel shows in mountinfo (the
    root field of a bind mount; no option of bwrap hides it). A workspace of its own (the default: a disk image)
    shows none."""
    assert isinstance(scan, dict) and scan, scan
    if mounts_named:
        scan = {entry: text for entry, text in scan.items() if entry != "self/mountinfo"}
    readable = [entry for entry, text in scan.items() if not text.startswith("refused")]
    assert any(entry.endswith("/environ") for entry in readable), "the probe read no environment at all"
    assert leaks(scan, host_paths) == []


CONFIGS = ["none", "proxy", "plain-workspace", "operator-workspace"]


@pytest.mark.parametrize("config", CONFIGS)
def test_b7_no_process_inside_carries_the_hosts_environment_or_paths(
    config: str, sandbox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PLANTED_NAME, PLANTED_VALUE)
    backend = BubblewrapBackend(sandbox_root)
    base = Path(tempfile.mkdtemp(prefix="rf-leak-"))
    base.chmod(0o711)
    operator = base / "operator-workspace"
    operator.mkdir()
    os.chown(operator, 1000, 1000)

    async def go() -> tuple[Any, list[str]]:
        async with identity_servers(base, "s") as routes:
            spec = SandboxSpec()
            workspace = None
            if config == "proxy":
                spec = SandboxSpec(network="proxy", proxies=routes["s"])
            elif config == "plain-workspace":
                spec = SandboxSpec(limits=Limits(workspace_bytes=None))
            elif config == "operator-workspace":
                workspace = operator
            sandbox = await backend.create(spec, workspace=workspace)
            try:
                [scan] = await probe(sandbox, ("proc_scan",))
            finally:
                await sandbox.destroy()
        return scan, [str(sandbox_root), str(base), sandbox.id]

    try:
        scan, host_paths = run(go())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert_no_host_leaks(scan, host_paths, mounts_named=config in ("plain-workspace", "operator-workspace"))
