"""The seccomp filter of every sandbox, generated with libseccomp (never hand-assembled BPF).

Owns: the list of refused system calls and why, and the compiled program handed to bwrap (`--seccomp FD`).
Refused calls fail with EPERM (so programs see an ordinary error, not a crash); system calls of any other
architecture than the native one are killed by libseccomp's default bad-arch action (no x32/i386 detours).
If libseccomp's Python bindings are missing, no sandbox is created (fail closed).
"""

from __future__ import annotations

import contextlib
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
# primitives), time, swap, reboot and accounting (host-wide effects), io_uring (a second path into the kernel whose
# operations no filter sees), NUMA memory placement and vmsplice (Docker's default profile refuses them), and old
# calls no program needs. docs/guide.md has this list as a table; a test holds the two together.
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
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mbind",
    "move_pages",
    "migrate_pages",
    "set_mempolicy",
    "get_mempolicy",
    "vmsplice",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "stime",
)
# Socket families a sandbox may open: IPv4 and IPv6 (its loopback, where the bridged proxies are) and netlink's
# routing family (how getaddrinfo learns which address families exist). Every other family is refused: AF_UNIX
# (nothing on the host is reachable through one), AF_VSOCK (a route to the hypervisor around every namespace),
# AF_PACKET, AF_ALG, AF_KEY, Bluetooth, other netlink families...
ALLOWED_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
NETLINK_ROUTE = 0
FAMILY_LIMIT = 64  # every family number at or above this is refused whole (the kernel knows fewer than 50)
# personality(2) flags that weaken the process: no address randomization, data executable, page zero mapped,
# the legacy layout. Refused when set, except in the query value 0xffffffff (bit 31 set), which changes nothing.
RISKY_PERSONALITY = (0x0040000, 0x0400000, 0x0100000, 0x0200000)
_PERSONALITY_QUERY_BIT = 0x80000000
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
    # A binary tree over system call numbers: each call passes a few comparisons, not one per refused call
    # (the socket family rules made the linear program long).
    with contextlib.suppress(RuntimeError, ValueError, AttributeError):
        rules.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    for name in REFUSED:
        try:
            rules.add_rule(refuse, name)
        except (RuntimeError, ValueError):
            continue  # a call this kernel/architecture does not have cannot be made either
    # New user namespaces through clone; clone3 passes its flags in memory a filter cannot read, so it answers
    # ENOSYS and C libraries fall back to clone, where the flag is checked.
    rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for family in range(FAMILY_LIMIT):
        if family not in ALLOWED_FAMILIES:
            rules.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, family))
    rules.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.GE, FAMILY_LIMIT))
    rules.add_rule(
        refuse, "socket", seccomp.Arg(0, seccomp.EQ, socket.AF_NETLINK), seccomp.Arg(2, seccomp.NE, NETLINK_ROUTE)
    )
    for flag in RISKY_PERSONALITY:
        mask = flag | _PERSONALITY_QUERY_BIT
        rules.add_rule(refuse, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, mask, flag))
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
