"""What is particular to the gVisor backend: its refusals (no runsc, an unknown backend) name the reason and never
fall back to another backend; the process limit is kept by gVisor's own cgroups, which the agent can neither leave
nor change, and the init that set them keeps no capability; a sandbox runs on gVisor's own kernel; a server killed
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
from ringfence.sandbox.spec import Exit, Limits, SandboxError, SandboxSpec


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


def _left_running(root: Path) -> list[int]:
    """The sandbox's runsc processes, but the `runsc delete` that clears its state in the background."""
    left = []
    for pid in _runsc_processes(root):
        try:
            if b"delete" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            pass  # gone since it was listed
    return left


def test_refusals_name_the_reason(root: Path) -> None:
    with pytest.raises(SandboxError, match=r"runsc\) is not installed"):
        GVisorBackend(root, runsc="/nonexistent/runsc")
    with pytest.raises(SandboxError, match="'firecracker' is not one of: bubblewrap, gvisor"):
        open_backend("firecracker", root)


def test_the_agent_cannot_lift_the_process_limit_and_the_init_keeps_no_capability(root: Path) -> None:
    groups = "/run/ringfence/cg"
    attempts = {
        "raise": f"echo 100000 > {groups}/pids/box/pids.max",
        "leave": f"echo $$ > {groups}/pids/cgroup.procs",
        "new group": f"mkdir {groups}/pids/mine",
        "remount": "mount -t cgroup -o pids again /tmp",
        "nested raise": f"unshare --user --map-root-user sh -c 'echo 100000 > {groups}/pids/box/pids.max'",
        "nested leave": f"unshare --user --map-root-user sh -c 'echo $$ > {groups}/pids/cgroup.procs'",
        # ringfence's own files are linked into every sandbox's read-only root, one inode for all of them
        "replace the launcher": "echo x > /run/ringfence/launch",
        "open the launcher": "chmod 777 /run/ringfence/launch",
        "empty the filter": ": > /run/ringfence/seccomp.bpf",
        "preload another library": "echo /workspace/mine.so > /etc/ld.so.preload",
        "replace the init": "rm -f /run/ringfence/init",
    }

    def shared() -> dict[str, bytes]:  # what every sandbox of the backend links in, as the host has it
        return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "sbx_" not in str(p)}

    async def go() -> tuple[dict[str, int], bytes, bytes, bool, bytes]:
        box = await GVisorBackend(root).create(SandboxSpec(limits=Limits(pids=32, workspace_bytes=None)))
        before = shared()
        try:
            codes = {name: (await box.run(["sh", "-c", attempt])).exit.code for name, attempt in attempts.items()}
            init = (await box.run(["sh", "-c", "grep -E '^(Uid|Cap)' /proc/1/status"])).stdout
            watcher = "grep -l memory-watcher /proc/[0-9]*/status | xargs grep -E '^Cap(Inh|Prm|Eff|Bnd)'"
            watching = (await box.run(["sh", "-c", watcher])).stdout
            codes["signal the memory watcher"] = (await box.run(["sh", "-c", "pkill -9 memory-watch"])).exit.code
            limit = (await box.run(["cat", f"{groups}/pids/box/pids.max", "/proc/self/cgroup"])).stdout
            return codes, init, limit, shared() == before, watching
        finally:
            await box.destroy()

    codes, init, limit, unchanged, watching = asyncio.run(go())
    assert all(code != 0 for code in codes.values()), codes
    assert unchanged
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd"):  # the guest's root, with nothing left of its setup's
        assert f"{cap}:\t0000000000000000".encode() in init, init
    for cap in ("CapPrm", "CapEff", "CapBnd"):  # the memory watcher keeps CAP_KILL alone
        assert f"{cap}:\t0000000000000020".encode() in watching, watching
    assert b"CapInh:\t0000000000000000" in watching
    assert limit.split()[0] == b"32" and b"pids:/box" in limit


def test_a_sandbox_runs_on_gvisors_own_kernel(root: Path) -> None:
    async def go() -> tuple[bytes, str]:
        backend = GVisorBackend(root)
        box = await backend.create(SandboxSpec(limits=Limits(pids=None, workspace_bytes=None)))
        try:
            release = (await box.run(["uname", "-r"])).stdout
            _, listed = await backend.runsc("ps", box.id)  # gVisor's kernel lists the processes it runs
            return release, listed
        finally:
            await box.destroy()

    release, listed = asyncio.run(go())
    assert release.strip() and os.uname().release.encode() not in release
    assert listed.splitlines()[1].split()[-1] == "init"  # the sandbox's init (native/init.c), as gVisor knows it


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
    assert _left_running(root) == []
    assert not (root / sandbox_id).exists()


def test_the_bridge_changes_nothing_of_the_hosts_sockets(root: Path) -> None:
    """A hostile host user with the sandbox's inside uid (1000 here) must not gain a session's proxy socket: the
    bridge may not chown or chmod it. The sandbox still reaches it through 127.0.0.1:3128, and its own processes
    cannot bypass the relay by connecting to the bound socket themselves."""
    from ringfence.sandbox.spec import ProxyRoutes

    shared = root.parent / "shared"
    shared.mkdir(mode=0o755)
    path = shared / "egress.sock"

    async def go() -> tuple[bytes, bytes]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.write(b"proxy")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(answer, str(path))
        path.chmod(0o600)
        box = await GVisorBackend(root).create(
            SandboxSpec(network="proxy", proxies=ProxyRoutes(path), limits=Limits(pids=None, workspace_bytes=None))
        )
        ask = (
            "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n"
            "s.sendall(b'x')\nprint(s.recv(9))"
        )
        direct = (
            "import socket\ntry:\n    s = socket.socket(socket.AF_UNIX)\n"
            "    s.connect('/run/ringfence/3128.sock'); print('bypassed')\nexcept OSError as e: print('refused')"
        )
        try:
            relayed = (await box.run(["python3", "-c", ask], timeout=30)).stdout
            bypass = (await box.run(["python3", "-c", direct], timeout=30)).stdout
        finally:
            await box.destroy()
            server.close()
        return relayed, bypass

    relayed, bypass = asyncio.run(go())
    info = path.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o600)  # untouched
    assert b"proxy" in relayed and b"refused" in bypass


def test_nothing_of_the_sandboxs_environment_reaches_the_code_that_sets_a_commands_limits(root: Path) -> None:
    """The launcher joins the process limit and installs the filter: were the environment given to the sandbox its
    own, LD_AUDIT or LD_PRELOAD naming a library in the repository could act before either (on a dynamic launcher).
    It gets the base environment alone; the command gets everything."""
    given = {"RF_GIVEN": "given", "LD_AUDIT": "/workspace/nothing-here.so"}

    async def go() -> tuple[bytes, bytes]:
        box = await GVisorBackend(root).create(SandboxSpec(env=given, limits=Limits(workspace_bytes=None)))
        try:  # gVisor shows any process's environment to any uid: the launcher's, root's, too
            launcher = (await box.run(["sh", "-c", "tr '\\0' '\\n' < /proc/$PPID/environ"])).stdout
            command = (await box.run(["env"])).stdout
        finally:
            await box.destroy()
        return launcher, command

    launcher, command = asyncio.run(go())
    assert b"PATH=" in launcher and b"RF_GIVEN" not in launcher and b"LD_AUDIT" not in launcher, launcher
    assert b"RF_GIVEN=given" in command and b"LD_AUDIT=/workspace/nothing-here.so" in command


def test_the_agent_can_write_no_cgroup_file_nor_touch_its_launcher_and_the_sweep_holds(root: Path) -> None:
    """Every cgroup file is root's and the launcher is the guest's root: the agent cannot move a process into or out
    of its command's tracking group (the init's, say, to stop the sweep; its daemon, to keep it), make a group, nor
    signal or trace its launcher. The command reports its own code, and its daemon is swept."""
    jobs = "/run/ringfence/cg/jobs"
    mine = f"{jobs}$(sed -n 's/.*cpuacct://p' /proc/self/cgroup)"
    attempts = {
        "put the init in": f"echo 1 > {mine}/cgroup.procs",
        "leave the group": f"echo $$ > {jobs}/cgroup.procs",
        "make a group": f"mkdir {jobs}/mine",
        "signal the launcher": "kill -9 $PPID",
        "read the memory of the launcher": "head -c1 /proc/$PPID/mem",
    }
    tries = "; ".join(f"({attempt}) 2>/dev/null && echo '{name}'" for name, attempt in attempts.items())
    daemon = "(setsid sh -c 'while :; do echo . >> beat; sleep 0.1; done' > /dev/null 2>&1 &)"
    command = f"{tries}; {daemon}; sleep 0.3; exit 7"

    async def go() -> tuple[Exit, bytes, bool, bytes]:
        box = await GVisorBackend(root).create(SandboxSpec(limits=Limits(workspace_bytes=None)))
        try:
            done = await box.run(["sh", "-c", command], timeout=30)
            before = len(await box.read_file("beat"))
            await asyncio.sleep(0.8)
            beating = len(await box.read_file("beat")) > before
            after = (await box.run(["echo", "next"])).stdout
            return done.exit, done.stdout, beating, after
        finally:
            await box.destroy()

    code, succeeded, beating, after = asyncio.run(go())
    assert succeeded == b"", succeeded  # names what the agent managed
    assert code == Exit(7)
    assert not beating  # the daemon was swept
    assert after == b"next\n"


def test_modules_planted_in_the_workspace_do_not_replace_the_launchers(root: Path) -> None:
    """The command's directory is the agent's: Python modules planted there (`os.py`, `ctypes.py`...) change
    nothing of what sets the command's limits (a static program since the launcher stopped being Python; this held
    for the Python one too, with python -I -S), so the command still joins the process limit and gets the filter."""
    hijack = b"import sys\nsys.stderr.write('HIJACKED\\n')\n"

    async def go() -> bytes:
        box = await GVisorBackend(root).create(SandboxSpec(limits=Limits(pids=32, workspace_bytes=None)))
        try:
            for name in ("os.py", "ctypes.py", "posixpath.py", "sys.py", "encodings/__init__.py"):
                await box.write_file(f"planted/{name}", hijack)
            unix = "python3 -I -c 'import socket; socket.socket(socket.AF_UNIX)'"
            probe = f"cat /proc/self/cgroup; {unix} || echo refused"
            done = await box.run(["sh", "-c", probe], cwd="planted")
            return done.stdout + done.stderr
        finally:
            await box.destroy()

    said = asyncio.run(go())
    assert b"HIJACKED" not in said and b"pids:/box" in said and b"refused" in said, said


def test_an_init_that_cannot_set_the_limits_up_is_a_clear_error_at_once(root: Path) -> None:
    """The init writes which step failed; create says it, at once (not after its 20 s wait), and leaves nothing."""

    class Refused(GVisorBackend):
        def _bundle(self, directory: Path, spec: SandboxSpec) -> dict[str, object]:
            config = super()._bundle(directory, spec)
            config["process"]["args"][3] = "lots"  # type: ignore[index]  # the process limit, not a number
            return config

    async def go() -> str:
        backend = Refused(root)
        with pytest.raises(SandboxError) as refused:
            await asyncio.wait_for(backend.create(SandboxSpec(limits=Limits(pids=32, workspace_bytes=None))), 15)
        return str(refused.value)

    said = asyncio.run(go())
    assert "could not set its limits up" in said and "writing lots to" in said and "pids.max" in said, said
    assert [entry.name for entry in root.iterdir() if entry.name.startswith("sbx_")] == []
    assert _left_running(root) == []
