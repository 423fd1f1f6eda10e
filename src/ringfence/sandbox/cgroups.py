"""Resource limits of a sandbox through cgroups (v2 where its controllers are delegated, else v1).

Owns: detecting what this host can enforce (memory, pids, CPU share), one group per sandbox and controller,
moving a sandbox's first processes in before its payload starts (bubblewrap waits on --block-fd meanwhile; children
are born in their parent's group), and removing the groups at destroy (a v1 memory group can answer EBUSY for a few
milliseconds after its last process exits, so removal retries). What cannot be enforced is reported, never hidden.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ringfence.sandbox.spec import Limits, SandboxError

GROUP = "ringfence"


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Which limits this host enforces, and where."""

    version: str  # "v2", "v1" or "none"
    memory: Path | None
    pids: Path | None
    cpu: Path | None

    def describe(self) -> dict[str, str]:
        def state(path: Path | None) -> str:
            return f"enforced (cgroup {self.version}: {path})" if path else "NOT enforced on this host"

        return {"memory": state(self.memory), "pids": state(self.pids), "cpu share": state(self.cpu)}

    @property
    def complete(self) -> bool:
        return None not in (self.memory, self.pids, self.cpu)


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def detect(base: Path = Path("/sys/fs/cgroup")) -> CgroupSupport:
    unified = base / "unified" if (base / "unified" / "cgroup.controllers").exists() else base
    controllers = set()
    with contextlib.suppress(OSError):
        controllers = set((unified / "cgroup.controllers").read_text().split())
    if {"memory", "pids"} <= controllers and _writable_dir(unified):
        root = unified / GROUP
        return CgroupSupport("v2", root, root, root if "cpu" in controllers else None)
    found = {name: base / name / GROUP for name in ("memory", "pids", "cpu") if _writable_dir(base / name)}
    if found:
        return CgroupSupport("v1", found.get("memory"), found.get("pids"), found.get("cpu"))
    return CgroupSupport("none", None, None, None)


class SandboxCgroup:
    """The groups of one sandbox."""

    def __init__(self, support: CgroupSupport, sandbox_id: str, limits: Limits) -> None:
        self._dirs: list[Path] = []
        try:
            for root, settings in self._plan(support, limits):
                group = root / sandbox_id
                group.mkdir(parents=True, exist_ok=True)
                self._dirs.append(group)
                for name, value in settings.items():
                    (group / name).write_text(value)
        except OSError as exc:
            self.remove()
            raise SandboxError(f"cannot set the sandbox's limits in its cgroup: {exc}") from None

    @staticmethod
    def _plan(support: CgroupSupport, limits: Limits) -> list[tuple[Path, dict[str, str]]]:
        plan: dict[Path, dict[str, str]] = {}
        v2 = support.version == "v2"
        if support.memory and limits.memory_bytes:
            memory = plan.setdefault(support.memory, {})
            if v2:
                memory.update({"memory.max": str(limits.memory_bytes), "memory.swap.max": "0"})
            else:
                memory["memory.limit_in_bytes"] = str(limits.memory_bytes)
                if (support.memory.parent / "memory.memsw.limit_in_bytes").exists():
                    memory["memory.memsw.limit_in_bytes"] = str(limits.memory_bytes)
        if support.pids and limits.pids:
            plan.setdefault(support.pids, {})["pids.max"] = str(limits.pids)
        if support.cpu:
            # Its own group is what keeps the share: the scheduler divides CPU between groups, not processes.
            # v1 shares: 1024 is the default, the same point as v2's weight 100.
            share = str(limits.cpu_weight) if v2 else str(max(2, limits.cpu_weight * 1024 // 100))
            plan.setdefault(support.cpu, {})["cpu.weight" if v2 else "cpu.shares"] = share
        return list(plan.items())

    def add(self, pid: int) -> None:
        for group in self._dirs:
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                continue  # it already exited; it cannot escape a limit by having died
            except OSError as exc:
                raise SandboxError(f"cannot move process {pid} into {group}: {exc}") from None

    def processes(self) -> list[int] | None:
        """Every process in the sandbox's pids group (they cannot leave it), or None without a pids group."""
        for group in self._dirs:
            if (group / "pids.max").exists():
                text = (group / "cgroup.procs").read_text()
                return [int(pid) for pid in text.split()]
        return None

    def remove(self) -> None:
        for group in reversed(self._dirs):
            for attempt in range(200):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 199:
                        raise SandboxError(f"cannot remove cgroup {group}: {exc}") from None
                    time.sleep(0.005)
        self._dirs = []
