"""The bubblewrap backend: one sandbox = one workspace + one dedicated host uid; each command is one bwrap.

Owns: allocating the sandbox's host uid (when ringfence runs as root, every sandbox gets its own unprivileged uid,
so the agent is never root of the host and one sandbox's processes can be found, and killed, by uid), creating and
deleting workspaces, starting bwrap with the plan of ringfence.sandbox.mounts, streaming output, timeouts, and
reconciling leftovers after a restart. Processes end with the sandbox: destroy kills every process of its uid, and
`--die-with-parent` ends them if the server dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from ringfence.sandbox import diskimage, running, seccomp_filter, uids, workspace
from ringfence.sandbox.bridge import Bridge
from ringfence.sandbox.cgroups import SandboxCgroup, detect
from ringfence.sandbox.mounts import MountPlan, options_file
from ringfence.sandbox.procs import alive, kill_listed, kill_uid, me
from ringfence.sandbox.spec import Completed, Exit, Output, SandboxError, SandboxSpec, check_command
from ringfence.store.ids import new_id

OWNER_FILE = "owner"  # "<pid> <start time>" of the ringfence process that made the sandbox
_CHUNK = 64 * 1024
log = logging.getLogger("ringfence.sandbox")


async def _child_pid(info_fd: int) -> int | None:
    """The sandbox child's pid from bwrap's --info-fd JSON (None if bwrap failed before writing it)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(info_fd, False)
    data = b""
    while True:
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(info_fd, readable.set_result, None)
        try:
            await readable
        finally:
            loop.remove_reader(info_fd)
        chunk = os.read(info_fd, 4096)
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])


def _sealed_file(data: bytes) -> int:
    """An anonymous in-memory file holding `data`, read from its start by whoever inherits the descriptor."""
    fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class BubblewrapSandbox:
    def __init__(
        self,
        backend: BubblewrapBackend,
        sandbox_id: str,
        uid: int | None,
        spec: SandboxSpec,
        *,
        workspace_path: Path,
        dedicated_uid: bool,
        image: bool,
    ) -> None:
        self._backend, self._id, self._uid, self._spec = backend, sandbox_id, uid, spec
        self._dir = backend.root / sandbox_id
        # The workspace is ours (under the sandbox directory, deleted at destroy) or the operator's (`sandbox exec
        # --workspace DIR`: bound in, kept). A dedicated uid is ours alone and may be swept; an operator's is not.
        self._workspace, self._dedicated, self._image = workspace_path, dedicated_uid, image
        self._cgroup = SandboxCgroup(backend.cgroups, sandbox_id, spec.limits)  # first: it cleans up if it fails
        self._workspace_fd: int | None = os.open(workspace_path, os.O_RDONLY | os.O_DIRECTORY)
        self._procs: set[asyncio.subprocess.Process] = set()
        self._bridges: set[Bridge] = set()

    @property
    def id(self) -> str:
        return self._id

    @property
    def _owner(self) -> tuple[int, int] | None:
        return None if self._uid is None else (self._uid, self._uid)

    def _fd(self) -> int:
        if self._workspace_fd is None:
            raise SandboxError(f"sandbox {self._id} was destroyed")
        return self._workspace_fd

    async def exec(
        self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = ""
    ) -> AsyncGenerator[Output | Exit, None]:
        check_command(argv, cwd)
        limit = timeout if timeout is not None else self._spec.limits.timeout_seconds
        self._fd()  # refuses a destroyed sandbox
        filter_fd = seccomp_filter.program_fd()
        info_read, info_write = os.pipe()
        block_read, block_write = os.pipe()
        plan = MountPlan(
            workspace=self._workspace,
            env=self._spec.full_env,
            hostname=f"rf-{self._id[-8:]}",
            root=self._backend.rootfs,
            seccomp_fd=filter_fd,
            info_fd=info_write,
            block_fd=block_read,
            cwd=cwd,
            tools=self._spec.tools,
            path=self._spec.path,
        )
        options_fd = _sealed_file(options_file(plan))
        try:
            # bwrap becomes the sandbox's pid 1 (its init is a fork of it): it gets no environment of ours at all,
            # and its options come through a file, so /proc/1/environ and /proc/1/cmdline inside show nothing of
            # the host (B7). Only the payload's own command line remains, after `--`.
            proc = await asyncio.create_subprocess_exec(
                *self._backend.as_sandbox_user(self._uid),
                self._backend.bwrap,
                "--args",
                str(options_fd),
                "--",
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                close_fds=True,
                pass_fds=(filter_fd, info_write, block_read, options_fd),
                env={},
            )
        finally:
            for fd in (filter_fd, info_write, block_read, options_fd):
                os.close(fd)
        self._procs.add(proc)
        bridge: Bridge | None = None
        try:
            child = await _child_pid(info_read)
            if child is not None:
                # The child is the sandbox (its init and, by fork, the payload); bwrap's outer process is our
                # monitor and runs nothing of the agent's.
                self._cgroup.add(child)
                if self._spec.proxies is not None:
                    bridge = await Bridge.open(child, self._spec.proxies.by_port())
                    self._bridges.add(bridge)
            # Only now does the payload start, inside its limits. A broken pipe means bwrap failed before
            # running anything; its exit code and stderr say why.
            with contextlib.suppress(BrokenPipeError):
                os.write(block_write, b"go")
        except BaseException:
            self._kill(proc)
            if bridge is not None:
                bridge.close()
                self._bridges.discard(bridge)
            raise
        finally:
            os.close(info_read)
            os.close(block_write)

        async def end() -> None:
            self._kill(proc)

        try:
            async with contextlib.aclosing(running.stream(proc, limit, end)) as events:  # closed early: ended now
                async for event in events:
                    yield event
        finally:
            if bridge is not None:
                bridge.close()
                self._bridges.discard(bridge)
            self._procs.discard(proc)

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        """End one command: its bwrap monitor, whose child (pid 1 of the command's own pid namespace) dies with it
        (--die-with-parent), taking every process of that command along. Other commands are untouched."""
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    async def run(self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = "") -> Completed:
        return await running.collect(self.exec(argv, timeout=timeout, cwd=cwd))

    async def write_file(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(workspace.write, self._fd(), path, data, self._owner)

    async def read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(workspace.read, self._fd(), path)

    async def destroy(self) -> None:
        for bridge in list(self._bridges):  # its listeners would keep the dead namespace alive until the stream closes
            bridge.close()
        self._bridges.clear()
        for proc in list(self._procs):
            self._kill(proc)
        if self._uid is not None and self._dedicated:  # and, once, anything of this sandbox's uid still alive
            kill_uid(self._uid, listing=self._cgroup.processes)
        else:  # never sweep an operator's uid: only what is in this sandbox's own groups (pid namespaces did the rest)
            kill_listed(self._cgroup.processes)
        for proc in list(self._procs):
            await proc.wait()
        self._cgroup.remove()
        await workspace.discard(self._workspace_fd, self._image, self._workspace, self._dir)
        self._workspace_fd, self._image = None, False
        self._backend._release(self._id)


class BubblewrapBackend:
    """Sandboxes under `root` (one directory each). `rootfs` is where the read-only system comes from."""

    name = "bubblewrap"

    def __init__(
        self, root: Path, *, rootfs: Path = Path("/"), bwrap: str | None = None, uid_claims: Path = uids.CLAIMS
    ) -> None:
        """`uid_claims`: where sandbox uids are claimed on this host (every ringfence process of the host must use
        the same directory, so that none hands out a uid another holds)."""
        self.uid_claims = uid_claims
        found = bwrap or shutil.which("bwrap")
        if found is None:
            raise SandboxError("bubblewrap (bwrap) is not installed: make installs the 'bubblewrap' package")
        self.bwrap, self.root, self.rootfs = found, root, rootfs
        seccomp_filter.program()  # fail closed now, not at the first command, if libseccomp is missing
        self.cgroups = detect()
        if not self.cgroups.complete:
            missing = ", ".join(k for k, v in self.cgroups.describe().items() if "NOT" in v)
            log.warning("sandbox limits NOT enforced on this host: %s (see `ringfence doctor`)", missing)
        self._as_root = os.geteuid() == 0
        # Why workspaces cannot be size-limited here (None: they are, by a loop-mounted image each).
        self.workspace_limit_problem = diskimage.available()
        if self.workspace_limit_problem is not None:
            log.warning("sandbox workspace size NOT limited on this host: %s", self.workspace_limit_problem)
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            # bwrap runs as the sandbox's own uid and must reach its workspace by path: every ancestor must be
            # searchable by others. The root itself is 0711 (enterable, not listable); workspaces are 0700.
            self.root.chmod(0o711)
            for ancestor in self.root.resolve().parents:
                if not ancestor.stat().st_mode & stat.S_IXOTH:
                    raise SandboxError(
                        f"sandbox directory {self.root} is under {ancestor}, which other users cannot traverse "
                        f"(mode {stat.S_IMODE(ancestor.stat().st_mode):04o}); choose a sandbox directory outside "
                        "it (e.g. /var/lib/ringfence-sandboxes) or chmod o+x it"
                    )
        self._uids: dict[str, uids.UidClaim] = {}
        self._setpriv = shutil.which("setpriv") if self._as_root else None
        if self._as_root and self._setpriv is None:
            raise SandboxError("setpriv (util-linux) is needed to run sandboxes under their own uid")
        # Uids of workspaces left by an earlier server: never handed out until reconcile has cleaned them.
        self._stale: set[int] = set()
        for entry in self.root.iterdir():
            with contextlib.suppress(OSError):
                self._stale.add((entry / "workspace").stat().st_uid)

    def as_sandbox_user(self, uid: int | None) -> list[str]:
        """The prefix that starts bwrap as the sandbox's uid. setpriv, not Popen(user=...): changing ids in the
        child forbids vfork, and a full fork of a large server process costs tens of milliseconds (benchmarks)."""
        if uid is None:
            return []
        assert self._setpriv is not None
        return [self._setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]

    def _allocate_uid(self, sandbox_id: str) -> int | None:
        """A uid claimed on the host (ringfence.sandbox.uids), held until `_release`: no other ringfence process,
        a `sandbox exec` beside the server included, can hand it out meanwhile."""
        if not self._as_root:
            return None  # unprivileged already; the user namespace maps us to uid 1000 inside
        claimed = uids.claim(skip=self._stale, directory=self.uid_claims)
        self._uids[sandbox_id] = claimed
        return claimed.uid

    def _release(self, sandbox_id: str) -> None:
        claimed = self._uids.pop(sandbox_id, None)
        if claimed is not None:
            claimed.release()

    def _operator_uid(self, workspace_path: Path) -> int | None:
        """Who runs in an operator's workspace: its owner (never root), or nobody new when we are not root."""
        info = workspace_path.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise SandboxError(f"workspace {workspace_path} is not a directory")
        if not self._as_root:
            return None
        if info.st_uid == 0:
            raise SandboxError(
                f"workspace {workspace_path} belongs to root, and a sandbox never runs as root of the host: give "
                "the directory to an unprivileged user (chown), or leave --workspace out for a fresh one"
            )
        for ancestor in workspace_path.parents:
            mode = ancestor.stat()
            if not mode.st_mode & stat.S_IXOTH and mode.st_uid != info.st_uid:
                raise SandboxError(
                    f"workspace {workspace_path} is under {ancestor} (mode {stat.S_IMODE(mode.st_mode):04o}), "
                    f"which its owner (uid {info.st_uid}) cannot traverse"
                )
        return info.st_uid

    async def create(self, spec: SandboxSpec, *, workspace: Path | None = None) -> BubblewrapSandbox:
        """A new sandbox with a fresh workspace (deleted at destroy), or bound to the operator's directory
        `workspace` (kept, and its owner's uid runs the commands): a bubblewrap-only option, for `sandbox exec`."""
        sandbox_id = new_id("sbx")
        operator = workspace.resolve() if workspace is not None else None
        uid = self._allocate_uid(sandbox_id) if operator is None else self._operator_uid(operator)
        directory = self.root / sandbox_id
        mounted = False
        try:
            directory.mkdir(mode=0o711)
            (directory / OWNER_FILE).write_text(me())
            (directory / "workspace").mkdir(mode=0o700)
            size = spec.limits.workspace_bytes
            if operator is None and size is not None and self.workspace_limit_problem is None:
                await asyncio.to_thread(diskimage.create, directory, size, directory / "workspace", uid)
                mounted = True
            elif uid is not None and operator is None:
                os.chown(directory / "workspace", uid, uid)
            return BubblewrapSandbox(
                self,
                sandbox_id,
                uid,
                spec,
                workspace_path=operator or directory / "workspace",
                dedicated_uid=operator is None,
                image=mounted,
            )
        except BaseException:
            if mounted:
                diskimage.unmount(directory / "workspace")
            shutil.rmtree(directory, ignore_errors=True)
            self._release(sandbox_id)
            raise

    async def reconcile(self, keep: set[str]) -> list[str]:
        """Destroy what this process does not know (`keep`) and what a dead process left behind; a sandbox of
        another live ringfence process (a `sandbox exec` running beside the server) is left alone."""
        removed = []
        mine = me()
        keep = set(keep)
        for entry in sorted(self.root.iterdir()):
            if not entry.name.startswith("sbx_") or entry.name in keep:
                continue
            with contextlib.suppress(OSError):
                made_by = (entry / OWNER_FILE).read_text()
                if made_by != mine and alive(made_by):
                    keep.add(entry.name)
                    continue
            with contextlib.suppress(FileNotFoundError):
                owner = (entry / "workspace").stat().st_uid
                if self._as_root and uids.in_pool(owner) and not uids.claimed_elsewhere(owner, self.uid_claims):
                    kill_uid(owner)
                self._stale.discard(owner)
            for point in diskimage.mounted_under(entry):
                diskimage.unmount(point)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        for root in {self.cgroups.memory, self.cgroups.pids, self.cgroups.cpu} - {None}:
            assert root is not None
            for group in root.glob("sbx_*") if root.exists() else ():
                if group.name not in keep:
                    with contextlib.suppress(OSError):
                        group.rmdir()
        return removed
