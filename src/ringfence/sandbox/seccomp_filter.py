"""The seccomp filter of every sandbox, generated with libseccomp (never hand-assembled BPF).

Owns: the list of refused system calls and why, and the compiled program handed to bwrap (`--seccomp FD`).
Refused calls fail with EPERM (so programs see an ordinary error, not a crash); system calls of any other
architecture than the native one are killed by libseccomp's default bad-arch action (no x32/i386 detours).
If libseccomp's Python bindings are missing, no sandbox is created (fail closed).
"""

from __future__ import annotations

import errno
import glob
import importlib.machinery
import importlib.util
import os
import socket
import tempfile
from functools import cache
from types import ModuleType

from ringfence.sandbox.spec import SandboxError

# Why each is refused: changing mounts or namespaces (escape the fences), tracing or reading other processes,
# loading code into the kernel, kernel keyrings, performance counters and userfaultfd (common exploit
# primitives), time, swap, reboot and accounting (host-wide effects).
REFUSED = (
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "acct",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "vhangup",
    "nfsservctl",
)
CLONE_NEWUSER = 0x10000000


@cache
def _module() -> ModuleType:
    try:
        import seccomp

        return seccomp  # type: ignore[no-any-return]
    except ImportError:
        pass
    # Debian's python3-seccomp installs the binding outside a virtual environment's path: load that file alone
    # rather than putting all of Debian's dist-packages on the path.
    for path in sorted(glob.glob("/usr/lib/python3/dist-packages/seccomp.cpython-*.so")):
        loader = importlib.machinery.ExtensionFileLoader("seccomp", path)
        spec = importlib.util.spec_from_file_location("seccomp", path, loader=loader)
        if spec is not None:
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            return module
    raise SandboxError(
        "libseccomp's Python bindings are missing (Debian package python3-seccomp): no sandbox is "
        "created without a seccomp filter"
    )


@cache
def program() -> bytes:
    """The compiled BPF program (the same for every sandbox, so built once)."""
    seccomp = _module()
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in REFUSED:
        try:
            rules.add_rule(refuse, name)
        except (RuntimeError, ValueError):
            continue  # a call this kernel/architecture does not have cannot be made either
    # New user namespaces through clone; clone3 passes its flags in memory a filter cannot read, so it answers
    # ENOSYS and C libraries fall back to clone, where the flag is checked.
    rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # No Unix sockets: nothing on the host may be reached through one (the proxy bridge will be the exception).
    rules.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, socket.AF_UNIX))
    with tempfile.TemporaryFile() as handle:
        rules.export_bpf(handle)
        handle.seek(0)
        return handle.read()


def program_fd() -> int:
    """A memfd holding the program, positioned at its start, for bwrap to read (the caller closes it)."""
    fd = os.memfd_create("ringfence-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
