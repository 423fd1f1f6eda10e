"""Conformance checks of the kernel surface (S-BOX B5 and B8): the system calls every backend refuses with EPERM,
the same table in every backend (ringfence.sandbox.seccomp_filter): mounts and namespaces, tracing other
processes, keyrings, BPF, perf, userfaultfd, module and kexec loading, io_uring (a second system-call path no filter
sees into), AF_VSOCK (on a VM host, a route around every network namespace) and every socket family but IPv4, IPv6
and netlink's routing family, personality tricks, NUMA calls, vmsplice, old calls. Ordinary programs still work:
TCP, UDP and IPv6 sockets, a routing netlink socket (getaddrinfo), a pipeline. The numbers are x86_64's, asked of
the kernel directly so no library can paper over an answer; on another machine the check has nothing to ask."""

from __future__ import annotations

import json
import os

from ringfence.testing.conformance.harness import Harness, sandbox

SOCKET = 41
REFUSED_CALLS = {
    "mount": (165, 0, 0, 0, 0, 0),
    "ptrace": (101, 0, 1, 0, 0),
    "unshare": (272, 0x00020000),
    "setns": (308, 0, 0),
    "keyctl": (250, 0, 0),
    "add_key": (248, 0, 0, 0, 0, 0),
    "bpf": (321, 0, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 0),
    "kexec_load": (246, 0, 0, 0, 0),
    "init_module": (175, 0, 0, 0),
    "clone_newuser": (56, 0x10000000 | 17, 0, 0, 0, 0),
    "process_vm_readv": (310, 1, 0, 0, 0, 0, 0),
    "io_uring_setup": (425, 8, 0),
    "io_uring_enter": (426, 0, 0, 0, 0, 0, 0),
    "io_uring_register": (427, 0, 0, 0, 0),
    "socket AF_VSOCK": (SOCKET, 40, 1, 0),
    "socket AF_PACKET": (SOCKET, 17, 3, 0),
    "socket AF_NETLINK audit": (SOCKET, 16, 3, 9),
    "socket AF_NETLINK kobject": (SOCKET, 16, 2, 15),
    "socket AF_NETLINK generic": (SOCKET, 16, 3, 16),
    "socket AF_ALG": (SOCKET, 38, 5, 0),
    "socket AF_BLUETOOTH": (SOCKET, 31, 1, 0),
    "socket AF_UNIX": (SOCKET, 1, 1, 0),
    "socket AF_UNSPEC": (SOCKET, 0, 1, 0),
    "socket AF_KEY": (SOCKET, 15, 3, 2),
    "socket family 200": (SOCKET, 200, 1, 0),
    "personality ADDR_NO_RANDOMIZE": (135, 0x0040000),
    "personality READ_IMPLIES_EXEC": (135, 0x0400000),
    "personality MMAP_PAGE_ZERO": (135, 0x0100000),
    "mbind": (237, 0, 0, 0, 0, 0, 0),
    "move_pages": (279, 0, 0, 0, 0, 0, 0),
    "migrate_pages": (256, 0, 0, 0, 0),
    "set_mempolicy": (238, 0, 0, 0),
    "get_mempolicy": (239, 0, 0, 0, 0, 0),
    "vmsplice": (278, 0, 0, 0, 0),
    "uselib": (134, 0),
    "ustat": (136, 0, 0),
    "sysfs": (139, 1, 0),
    "name_to_handle_at": (303, 0, 0, 0, 0, 0),
}
ALLOWED_CALLS = {
    "socket AF_INET stream": (SOCKET, 2, 1, 0),
    "socket AF_INET datagram": (SOCKET, 2, 2, 0),
    "socket AF_INET6 stream": (SOCKET, 10, 1, 0),
    "socket AF_NETLINK route": (SOCKET, 16, 3, 0),
}
# Makes each call of the JSON list in argv[1] and prints, as JSON, "ok" or "errno N" for each.
_ASK = (
    "import ctypes, json, sys\nlibc = ctypes.CDLL(None, use_errno=True)\nsaid = []\n"
    "for args in json.loads(sys.argv[1]):\n    ctypes.set_errno(0)\n    result = libc.syscall(*args)\n"
    "    said.append('ok' if result >= 0 else f'errno {ctypes.get_errno()}')\nprint(json.dumps(said))\n"
)


async def the_filter_refuses_the_kernel_surface(h: Harness) -> None:
    if os.uname().machine != "x86_64":
        return  # the numbers above are x86_64's
    calls = [*REFUSED_CALLS.values(), *ALLOWED_CALLS.values()]
    _, box = await sandbox(h)
    try:
        asked = await box.run(["python3", "-c", _ASK, json.dumps(calls)], timeout=60)
        lookup = await box.run(["python3", "-c", "import socket; print(socket.getaddrinfo('127.0.0.1', 80)[0][4])"])
        ordinary = await box.run(["sh", "-c", "echo fine | tr a-z A-Z"])
    finally:
        await box.destroy()
    answers = dict(zip([*REFUSED_CALLS, *ALLOWED_CALLS], json.loads(asked.stdout), strict=True))
    wrong = {name: answers[name] for name in REFUSED_CALLS if answers[name] != "errno 1"}  # EPERM, every one
    assert wrong == {}, wrong
    assert {name: answers[name] for name in ALLOWED_CALLS} == dict.fromkeys(ALLOWED_CALLS, "ok"), answers
    assert b"127.0.0.1" in lookup.stdout and ordinary.stdout == b"FINE\n"
