"""The launcher of every command in a gVisor sandbox, run INSIDE it (stdlib only): `python3 -I -S gvisor_launch.py
CGROUPS FILTER N NAME=VALUE... ARGV...`: the command's environment is its N arguments after FILTER, never the
launcher's own (which is the base environment alone: what sets the limits runs untouched by LD_AUDIT and the like).

`runsc exec` starts a process in the sandbox's root cgroups, outside any limit, and a process that a command leaves
behind (a daemon, `cmd &`) is re-parented to the sandbox's init: gVisor (20221219) honours neither RLIMIT_NPROC nor
PR_SET_CHILD_SUBREAPER, and keeps no per-command pid namespace. So each command starts here:
- it joins the sandbox's process-limited group (CGROUPS/pids/box, whose limit only the init, as root, could set)
  before anything of the command runs, so every process of it counts against the limit;
- it joins a group of its own in the tracking hierarchy (CGROUPS/jobs/c<pid>): a command's processes are the members
  of that group, whoever their parent is;
- it installs the seccomp program in FILTER (bubblewrap's, ringfence.sandbox.seccomp_filter, compiled by the host),
  so the same calls are refused in every backend (S-BOX B8): here they would reach gVisor's kernel, not the host's,
  but io_uring, odd socket families and the rest are surface there too (runsc's OCI seccomp does not reach
  `runsc exec`'s processes in this release);
- it starts the command and waits for it; then it kills what is left in its group (the daemons, which would otherwise
  outlive the command and hold its output open) and exits with the command's code (128+N for signal N).
A command that kills this launcher (it runs as the agent's uid) only keeps its own leftovers alive, inside the process
limit, until the sandbox is destroyed. Written by hand: no library starts a process inside a gVisor cgroup.
"""

from __future__ import annotations

import os
import sys

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
SWEEPS = 100  # a fork bomb is bounded by the process limit; each sweep kills every member it saw


def _put(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _members(group: str) -> list[int]:
    # read whole, in one call: gVisor regenerates the file on every read, so a line-by-line reader can splice two
    # different lists into a pid that belongs to another command
    fd = os.open(f"{group}/cgroup.procs", os.O_RDONLY)
    try:
        return [int(pid) for pid in os.read(fd, 1 << 22).split()]
    finally:
        os.close(fd)


def _seccomp(path: str) -> None:
    """Installs the BPF program in `path` on this process (and so on the command it starts); no_new_privs is the
    process spec's already."""
    import ctypes  # here only: its import is some 40 ms of every command's start under gVisor

    with open(path, "rb") as handle:
        program = handle.read()

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    code = ctypes.create_string_buffer(program, len(program))
    fprog = Program(len(program) // 8, ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp")


def main(cgroups: str, program: str, env: dict[str, str], argv: list[str]) -> int:
    me = os.getpid()
    job = f"{cgroups}/jobs/c{me}"
    try:
        _put(f"{cgroups}/pids/box/cgroup.procs", str(me))
        os.mkdir(job)
        _put(f"{job}/cgroup.procs", str(me))
        _seccomp(program)
    except OSError as exc:
        os.write(2, f"ringfence: the command could not be given its sandbox's limits: {exc}\n".encode())
        return 125
    try:
        child = os.posix_spawnp(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"ringfence: {argv[0]}: {exc.strerror}\n".encode())
        code = 127
    else:
        status = os.waitpid(child, 0)[1]
        code = os.waitstatus_to_exitcode(status)
    spared = {me}  # and any process the agent put in the group that is not its to kill (the init's, root's)
    for _ in range(SWEEPS):
        left = [pid for pid in _members(job) if pid not in spared]
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            except PermissionError:
                spared.add(pid)
    _put(f"{cgroups}/jobs/cgroup.procs", str(me))
    try:  # noqa: SIM105 (as above)
        os.rmdir(job)
    except OSError:
        pass  # a member the sweeps could not end: the group goes with the sandbox
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    count = int(sys.argv[3])
    given = dict(pair.split("=", 1) for pair in sys.argv[4 : 4 + count])
    sys.exit(main(sys.argv[1], sys.argv[2], given, sys.argv[4 + count :]))
