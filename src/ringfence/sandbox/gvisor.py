"""The gVisor backend: one sandbox = one runsc container with its own application kernel; commands are `runsc exec`.

Owns: the OCI bundle of a sandbox (a read-only root of mount points, the same read-only system directories and
files as bubblewrap's, the workspace read-write, a private /tmp, the tools read-only, the session's two Unix sockets
and the init's state directory), starting it (`runsc run --detach`), running each command in it with an explicit
process spec (argv, environment, directory, uid 1000: nothing of the host's environment), output, per-command
timeouts and early close (the command and its descendants are killed inside, by their guest pids), file access,
destroy, and reconcile.

How the guarantees hold here:
- memory, CPU and host threads: runsc's own cgroups (OCI `linux.resources`), with KERNEL_ROOM on top of the memory
  limit for gVisor's own kernel; gVisor has no OOM killer of its own in Debian's release (20221219), so the init's
  memory watcher kills the largest of the agent's processes once the guest uses the limit (native/init.c), and a
  sandbox that still reaches the host's limit is ended whole, and its next command says so;
- processes: gVisor ignores RLIMIT_NPROC, and a host pids cgroup would count the Sentry's threads, so the limit is
  kept by gVisor's own cgroups, inside: the init mounts its pids hierarchy and makes the sandbox's group with the
  limit, as the guest's root, then drops every capability for good; every command joins that group before it runs
  (native/launch.c, built on the host by ringfence.sandbox.native), and cannot leave it or raise the limit;
- a command's processes: the launcher tracks them in a group of their own and kills what is left when the command
  ends (gVisor keeps no pid namespace per command); the init reaps them (it ignores SIGCHLD);
- compatibility: gVisor 20221219 refuses AT_NO_AUTOMOUNT, which coreutils pass on every stat (`ls` failed on every
  file), so every dynamically linked program preloads native/compat.c, which drops the flag (/etc/ld.so.preload);
- network: `--network=none` gives the guest loopback only; in proxy mode the init (native/init.c)
  relays 127.0.0.1:3128 and :8080 to the session's sockets;
- server death: containers are detached; `reconcile` at the next start deletes what a dead server left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ringfence.sandbox import diskimage, native, running, seccomp_filter, workspace
from ringfence.sandbox.mounts import BASE_ENV, INSIDE_UID, INSIDE_WORKSPACE, SYSTEM_DIRS, SYSTEM_FILES, USR_LINKS
from ringfence.sandbox.procs import alive, live, me
from ringfence.sandbox.spec import (
    BRIDGE_CONNECTIONS,
    TOOLS_DIR,
    Completed,
    Exit,
    Output,
    SandboxError,
    SandboxSpec,
    check_command,
)
from ringfence.store.ids import new_id

_LAUNCHER_GRACE = 3.0  # seconds a launcher has to sweep its command's leftovers once the command was killed
_RUN = "/run/ringfence"
_INIT = f"{_RUN}/init"
_LAUNCH = f"{_RUN}/launch"
_COMPAT = f"{_RUN}/compat.so"
_PRELOAD = "/etc/ld.so.preload"
_FILTER = f"{_RUN}/seccomp.bpf"
_CGROUPS = f"{_RUN}/cg"
PIDS_LIMIT_FILE = f"{_CGROUPS}/pids/box/pids.max"  # the sandbox's process limit, as its commands can read it
_CGROUP_POINTS = (f"{_CGROUPS}/pids", f"{_CGROUPS}/jobs")
# what the init needs to set the limits up (native/init.c), and drops before anything else runs
_SETUP_CAPS = ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_SETPCAP", "CAP_KILL"]  # KILL: for the memory watcher
# what a command's launcher needs (native/launch.c): to sweep the agent's leftovers, and to become the agent; it runs
# as the guest's root so that the agent's uid can neither kill it nor write a cgroup file
_LAUNCH_CAPS = ["CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
OWNER_FILE = "owner"
# host memory a sandbox gets on top of its limit, for gVisor's own kernel (the Sentry's Go heap and page tables) and
# for what the guest's processes grow by between two looks of the init's memory watcher
KERNEL_ROOM = 128 * 2**20


class GVisorSandbox:
    def __init__(self, backend: GVisorBackend, sandbox_id: str, spec: SandboxSpec, *, image: bool) -> None:
        self._backend, self._id, self._spec, self._image = backend, sandbox_id, spec, image
        self._dir = backend.root / sandbox_id
        self._workspace = self._dir / "workspace"
        self._workspace_fd: int | None = os.open(self._workspace, os.O_RDONLY | os.O_DIRECTORY)
        self._procs: set[asyncio.subprocess.Process] = set()
        self._serial = 0

    @property
    def id(self) -> str:
        return self._id

    def _fd(self) -> int:
        if self._workspace_fd is None:
            raise SandboxError(f"sandbox {self._id} was destroyed")
        return self._workspace_fd

    def _process(self, argv: Sequence[str], cwd: str) -> dict[str, Any]:
        """The launcher's process: the base environment alone, so nothing a caller or tenant puts in the sandbox's
        environment (LD_AUDIT, LD_PRELOAD...) acts on the code that sets the command's limits; the command's own
        environment is given to it as arguments, for the command alone."""
        launcher = {**BASE_ENV, "PATH": self._spec.path}
        given = [f"{k}={v}" for k, v in {**launcher, **self._spec.full_env}.items()]
        directory = f"{INSIDE_WORKSPACE}/{cwd}" if cwd else INSIDE_WORKSPACE
        limits = [_CGROUPS, _FILTER, str(INSIDE_UID), directory]
        return oci_process(
            [_LAUNCH, *limits, str(len(given)), *given, *argv], env=launcher, uid=0, capabilities=_LAUNCH_CAPS
        )

    async def exec(
        self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = ""
    ) -> AsyncGenerator[Output | Exit, None]:
        check_command(argv, cwd)
        self._fd()
        limit = timeout if timeout is not None else self._spec.limits.timeout_seconds
        self._serial += 1
        spec_file = self._dir / f"exec-{self._serial}.json"
        pid_file = self._dir / f"exec-{self._serial}.pid"
        spec_file.write_text(json.dumps(self._process(argv, cwd)))
        proc = await asyncio.create_subprocess_exec(
            *self._backend.runsc_argv("exec", "--process", str(spec_file), "--internal-pid-file", str(pid_file)),
            self._id,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
        )
        self._procs.add(proc)

        async def end() -> None:
            await self._end_command(proc, pid_file)

        try:
            async with contextlib.aclosing(running.stream(proc, limit, end)) as events:  # closed early: ended now
                async for event in events:
                    if isinstance(event, Exit) and event.code == 128 and not await self._running():
                        yield Output("stderr", b"ringfence: this gVisor sandbox has ended (over its memory limit?)\n")
                        event = Exit(137, event.timed_out)
                    yield event
        finally:
            self._procs.discard(proc)
            for leftover in (spec_file, pid_file):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    async def _end_command(self, proc: asyncio.subprocess.Process, pid_file: Path) -> None:
        """Kill the command inside (every process below its launcher, by guest pid); the launcher then kills what
        the command left elsewhere in its group and exits. Its `runsc exec` on the host goes last, and at once if
        the launcher does not end within a few seconds (killed by the agent, say)."""
        with contextlib.suppress(OSError, ValueError):
            launcher = int(pid_file.read_text().strip())
            for pid in (await self._descendants(launcher))[:-1]:
                await self._backend.runsc("kill", "--pid", str(pid), self._id, "KILL")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), _LAUNCHER_GRACE)
            if proc.returncode is None:
                await self._backend.runsc("kill", "--pid", str(launcher), self._id, "KILL")
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    async def _descendants(self, root: int) -> list[int]:
        """`root` and every process below it, deepest first, from `runsc ps`."""
        code, out = await self._backend.runsc("ps", self._id)  # UID PID PPID C STIME TIME CMD
        if code != 0:
            return [root]
        children: dict[int, list[int]] = {}
        for line in out.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
                children.setdefault(int(fields[2]), []).append(int(fields[1]))
        found, frontier = [root], [root]
        while frontier:
            frontier = [child for parent in frontier for child in children.get(parent, [])]
            found += frontier
        return list(reversed(found))

    async def _running(self) -> bool:
        code, out = await self._backend.runsc("state", self._id)
        with contextlib.suppress(ValueError):
            return code == 0 and json.loads(out).get("status") == "running"
        return False

    async def run(self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = "") -> Completed:
        return await running.collect(self.exec(argv, timeout=timeout, cwd=cwd))

    async def write_file(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(workspace.write, self._fd(), path, data, (INSIDE_UID, INSIDE_UID))

    async def read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(workspace.read, self._fd(), path)

    async def destroy(self) -> None:
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await self._backend.remove(self._id)
        for proc in list(self._procs):
            await proc.wait()
        await workspace.discard(self._workspace_fd, self._image, self._workspace, self._dir)
        self._workspace_fd, self._image = None, False


class GVisorBackend:
    """Sandboxes under `root` (one directory each; runsc's own state in `root/.runsc`). `rootfs` is where the
    read-only system comes from. `platform`: runsc's (None: its default, ptrace)."""

    name = "gvisor"

    def __init__(
        self,
        root: Path,
        *,
        rootfs: Path = Path("/"),
        runsc: str | None = None,
        platform: str | None = None,
    ) -> None:
        found = shutil.which(runsc or "runsc")
        if found is None:
            raise SandboxError("gVisor (runsc) is not installed: make installs Debian's 'runsc' package")
        if os.geteuid() != 0:
            raise SandboxError("the gVisor backend runs runsc as root (its rootless mode has no network or cgroups)")
        self.runsc_path, self.root, self.rootfs, self.platform = found, root, rootfs, platform
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        self.state = self.root / ".runsc"
        self.state.mkdir(mode=0o700, exist_ok=True)
        self.workspace_limit_problem = diskimage.available()
        # bubblewrap's filter, the same for every sandbox, for the launcher to install (and no sandbox without it)
        self._filter = self._replace("seccomp.bpf", seccomp_filter.program())
        self._preload = self._replace("ld.so.preload", f"{_COMPAT}\n".encode())
        self._native = native.build(self.root / "native")

    def _replace(self, name: str, data: bytes) -> Path:
        """`root/name` holding `data`, replaced whole: a sandbox being made may be binding the one there."""
        fresh = self.root / f".{name}.{os.getpid()}"
        fresh.write_bytes(data)
        fresh.chmod(0o644)
        return fresh.replace(self.root / name)

    def runsc_argv(self, *args: str) -> list[str]:
        flags = [f"--root={self.state}", "--network=none", "--host-uds=open"]
        if self.platform:
            flags.append(f"--platform={self.platform}")
        return [self.runsc_path, *flags, *args]

    async def runsc(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.runsc_argv(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={},
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode("utf-8", "replace")

    def _bundle(self, directory: Path, spec: SandboxSpec) -> dict[str, Any]:
        """The OCI config: a read-only root of empty mount points and /usr links, and every mount named."""
        rootfs = directory / "bundle" / "rootfs"
        points = (*SYSTEM_DIRS, INSIDE_WORKSPACE, "/tmp", "/proc", "/dev", f"{_RUN}/state", *_CGROUP_POINTS)
        for point in points:
            (rootfs / point.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for link, target in USR_LINKS.items():
            if (self.rootfs / target).exists():
                os.symlink(target, rootfs / link.lstrip("/"))
        mounts: list[dict[str, Any]] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
        ]
        for system in SYSTEM_DIRS:
            found = self.rootfs / system.lstrip("/")
            if found.exists():
                mounts.append({"destination": system, "type": "bind", "source": str(found), "options": ["rbind", "ro"]})
        mounts.append({"destination": INSIDE_WORKSPACE, "type": "bind", "source": str(directory / "workspace"),
                       "options": ["rbind", "rw"]})  # fmt: skip
        mounts.append({"destination": f"{_RUN}/state", "type": "bind", "source": str(directory / "state"),
                       "options": ["rbind", "rw"]})  # fmt: skip
        # files are put in the read-only root itself, not bound (a bind is some 5 ms of every start): the system's
        # few files copied, ringfence's own linked from this backend's root (one filesystem, never written again)
        ours = {_INIT: self._native.init, _LAUNCH: self._native.launch, _COMPAT: self._native.compat,
                _FILTER: self._filter, _PRELOAD: self._preload}  # fmt: skip
        copied = {file: self.rootfs / file.lstrip("/") for file in SYSTEM_FILES}
        for inside, source in {**ours, **copied}.items():
            placed = rootfs / inside.lstrip("/")
            placed.parent.mkdir(parents=True, exist_ok=True)
            if inside in ours:
                os.link(source, placed)
            elif source.exists():
                shutil.copy(source, placed)  # with its mode: readable by the agent as on the host
        for name, source in sorted(spec.tools.items()):
            (rootfs / TOOLS_DIR.lstrip("/") / name).mkdir(parents=True, exist_ok=True)
            mounts.append({"destination": f"{TOOLS_DIR}/{name}", "type": "bind", "source": str(source),
                           "options": ["rbind", "ro"]})  # fmt: skip
        routes: list[str] = []
        if spec.proxies is not None:
            for port, path in spec.proxies.by_port().items():
                inside = f"{_RUN}/{port}.sock"
                if os.path.lexists(path):  # absent (its proxy is not there): the relay finds nothing and closes
                    (rootfs / inside.lstrip("/")).touch()
                    mounts.append({"destination": inside, "type": "bind", "source": str(path), "options": ["rbind"]})
                routes.append(f"{port}={inside}")
        limits = spec.limits
        resources: dict[str, Any] = {"cpu": {"shares": max(2, limits.cpu_weight * 1024 // 100)}}
        if limits.memory_bytes:  # the guest's processes get the limit (the init's watcher); gVisor's kernel the room
            host = limits.memory_bytes + KERNEL_ROOM
            resources["memory"] = {"limit": host, "swap": host}
        # the init (native/init.c): the limits set up, every capability dropped, then the relay (or a wait, with no
        # route). It stays the guest's root, without a capability: gVisor checks a bound socket's permissions for
        # the guest uid, and the host's socket is root's (0600). So the relay reaches it, the agent's uid does not
        # (it must go through 127.0.0.1), and nothing of the host's socket is changed.
        memory = str(limits.memory_bytes // 1024) if limits.memory_bytes else "max"
        init = [_INIT, f"{_RUN}/state", _CGROUPS, str(limits.pids or "max"), memory, str(BRIDGE_CONNECTIONS), *routes]
        return {
            "ociVersion": "1.0.2",
            "process": oci_process(init, uid=0, capabilities=_SETUP_CAPS),
            "root": {"path": "rootfs", "readonly": True},
            "hostname": f"rf-{directory.name[-8:]}",
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                "resources": resources,
                "cgroupsPath": f"/ringfence-gvisor/{directory.name}",
            },
        }

    async def create(self, spec: SandboxSpec) -> GVisorSandbox:
        sandbox_id = new_id("sbx")
        directory = self.root / sandbox_id
        mounted = False
        try:
            directory.mkdir(mode=0o711)
            (directory / OWNER_FILE).write_text(me())
            (directory / "workspace").mkdir(mode=0o700)
            (directory / "state").mkdir(mode=0o700)
            size = spec.limits.workspace_bytes
            if size is not None and self.workspace_limit_problem is None:
                await asyncio.to_thread(diskimage.create, directory, size, directory / "workspace", INSIDE_UID)
                mounted = True
            else:
                os.chown(directory / "workspace", INSIDE_UID, INSIDE_UID)
            (directory / "bundle").mkdir()
            config = self._bundle(directory, spec)
            (directory / "bundle" / "config.json").write_text(json.dumps(config))
            with open(directory / "runsc.log", "wb") as said:
                proc = await asyncio.create_subprocess_exec(
                    *self.runsc_argv("run", "--detach", "--bundle", str(directory / "bundle"), sandbox_id),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=said,
                    stderr=said,
                    env={},
                )
                code = await proc.wait()
            if code != 0:
                raise SandboxError(f"runsc could not start the sandbox: {(directory / 'runsc.log').read_text()[-500:]}")
            await self._ready(directory / "state", sandbox_id)
            return GVisorSandbox(self, sandbox_id, spec, image=mounted)
        except BaseException:
            await self.remove(sandbox_id)
            if mounted:
                diskimage.unmount(directory / "workspace")
            shutil.rmtree(directory, ignore_errors=True)
            raise

    async def _ready(self, state: Path, sandbox_id: str, within: float = 20.0) -> None:
        """Until the init says it is ready; what it says when a step of its set-up failed is the error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not (state / "ready").exists():
            with contextlib.suppress(FileNotFoundError):
                said = (state / "failed").read_text(errors="replace").strip()
                raise SandboxError(f"gVisor sandbox {sandbox_id} could not set its limits up: {said}")
            if loop.time() > deadline:
                raise SandboxError(f"gVisor sandbox {sandbox_id} did not start its init within {within:.0f} s")
            await asyncio.sleep(0.003)

    async def remove(self, sandbox_id: str) -> None:
        """End every process of the sandbox now (its kernel and its file proxy, found by their bundle path, are
        killed and waited for), then let `runsc delete` clear runsc's state in the background: it waits about a
        second and a half on a sandbox already dead, which a caller need not (reconcile clears what it leaves)."""
        bundle = f"{self.root / sandbox_id / 'bundle'}".encode()
        await asyncio.to_thread(_kill_bundle, bundle)
        # detached through a shell that exits at once: the delete is init's child, not ours to wait for
        shell = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", '"$@" >/dev/null 2>&1 </dev/null &', "sh",
            *self.runsc_argv("delete", "--force", sandbox_id),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={}, start_new_session=True,
        )  # fmt: skip
        await shell.wait()

    async def reconcile(self, keep: set[str]) -> list[str]:
        """Delete the containers and directories this process does not know (`keep`) whose maker is dead or is us."""
        removed = []
        mine = me()
        code, out = await self.runsc("list", "--format", "json")
        listed = (
            {row.get("id") for row in json.loads(out) or []} if code == 0 and out.strip().startswith("[") else set()
        )
        for entry in sorted(self.root.iterdir()):
            listed.discard(entry.name)  # what has a directory is decided by its directory
            if not entry.name.startswith("sbx_") or entry.name in keep:
                continue
            with contextlib.suppress(OSError):
                made_by = (entry / OWNER_FILE).read_text()
                if made_by != mine and alive(made_by):
                    continue
            await self.remove(entry.name)
            for point in diskimage.mounted_under(entry):
                diskimage.unmount(point)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        for orphan in sorted(name for name in listed if isinstance(name, str) and name not in keep):
            await self.remove(orphan)  # state without a directory (a crash between the two)
            removed.append(orphan)
        return removed


def _kill_bundle(bundle: bytes, within: float = 5.0) -> None:
    """SIGKILL every runsc process of one sandbox (their command lines name its bundle) and wait until they are gone."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                parts = handle.read().split(b"\0")
            if parts and b"runsc" in parts[0] and any(p.endswith(bundle) for p in parts):
                found.append(int(entry))
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    deadline = time.monotonic() + within
    while (found := live(found)) and time.monotonic() < deadline:
        time.sleep(0.002)


def oci_process(
    args: list[str], *, uid: int = INSIDE_UID, capabilities: Sequence[str] = (), env: Mapping[str, str] = BASE_ENV,
    cwd: str = "/",
) -> dict[str, Any]:  # fmt: skip
    """An OCI process spec (the init's, or a command's launcher's): uid 1000 unless told, the base environment unless
    told, no_new_privs, no capability unless told."""
    return {
        "user": {"uid": uid, "gid": uid},
        "args": args,
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": cwd,
        "noNewPrivileges": True,
        "capabilities": {
            k: list(capabilities) if k in ("bounding", "effective", "permitted") else []
            for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
        },
    }
