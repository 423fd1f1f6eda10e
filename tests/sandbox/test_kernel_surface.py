"""S-BOX B8: kernel surface and side routes, refused by the filter in the sandbox. io_uring (a second system-call
path that seccomp cannot see into), AF_VSOCK (on a VM host, a route to the hypervisor around every network
namespace), every socket family but IPv4, IPv6 and netlink's routing family, personality tricks that turn off
address randomization or make data executable, NUMA memory calls and vmsplice (Docker's default profile refuses
them). What ordinary programs need still works: TCP and UDP sockets, a routing netlink socket (getaddrinfo),
personality queries."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.seccomp_filter import REFUSED, program
from tests.sandbox.conftest import run
from tests.sandbox.test_escapes import probe

# x86_64 numbers: the probe asks the kernel directly, so no library can paper over an answer.
SOCKET = 41
REFUSED_CALLS = {
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
    "personality query": (135, 0xFFFFFFFF),
    "personality PER_LINUX": (135, 0),
}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="system call numbers are x86_64's")
def test_b8_the_kernel_surface_is_refused_and_ordinary_calls_work(backend: BubblewrapBackend) -> None:
    async def go() -> list[Any]:
        sandbox = await backend.create(SandboxSpec())
        try:
            return await probe(
                sandbox,
                *[("syscall", *args) for args in REFUSED_CALLS.values()],
                *[("syscall", *args) for args in ALLOWED_CALLS.values()],
                ("run", ["python3", "-c", "import socket; print(socket.getaddrinfo('127.0.0.1', 80)[0][4])"]),
            )
        finally:
            await sandbox.destroy()

    *answers, lookup = run(go())
    refused, allowed = answers[: len(REFUSED_CALLS)], answers[len(REFUSED_CALLS) :]
    wrong = [(name, a) for name, a in zip(REFUSED_CALLS, refused, strict=True) if a != "refused: errno 1"]
    assert wrong == []  # EPERM from the filter, for every one
    assert [(n, a) for n, a in zip(ALLOWED_CALLS, allowed, strict=True) if a != "ok"] == []
    assert lookup["code"] == 0 and "127.0.0.1" in lookup["out"]


def test_the_guide_documents_every_refusal() -> None:
    """The guide's table of the filter names every refused call (a refusal added without its line fails here)."""
    from pathlib import Path

    guide = (Path(__file__).parents[2] / "docs" / "guide.md").read_text()
    table = guide.split("<!-- seccomp table -->", 2)[1]
    missing = [name for name in REFUSED if f"`{name}`" not in table]
    assert missing == []
    assert program()  # and the filter compiles on this host
