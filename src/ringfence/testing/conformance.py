"""The sandbox conformance suite: what every `SandboxBackend` guarantees, as checks any backend's tests run.

Owns: `CHECKS`, async functions each taking a `Harness` (a backend under test, the limits to give it, a scratch
directory) and asserting one guarantee from inside the sandbox: the environment is rebuilt from the explicit list
(nothing of the host's, in any process), not root, a read-only system, a writable workspace and a private /tmp, no
network in mode `none`, the proxies bridged in mode `proxy` with each sandbox reaching only its own (B6),
per-command timeouts and early close, memory and workspace limits measured from inside, file access that never
follows the agent's symlinks out of the workspace, destroy that ends everything and is idempotent, reconcile of
what a previous process left. A backend is done when every check passes on it unchanged (trio's and httpcore's
conformance suites are the model). Backend-specific checks (bwrap flags, seccomp, runsc flags) stay beside their
backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ringfence.sandbox.base import Sandbox, SandboxBackend
from ringfence.sandbox.spec import Exit, Limits, ProxyRoutes, SandboxError, SandboxSpec

HOST_SECRET = "RINGFENCE_CONFORMANCE_HOST_SECRET"  # noqa: S105 (a variable's name, planted on the host)


@dataclass
class Harness:
    make: Callable[[], SandboxBackend]  # a backend over `root` each time (reconcile needs a second one)
    limits: Limits  # what this backend is given (a backend that cannot enforce a limit is given none of it)
    scratch: Path  # for the checks' own files (sockets)
    root: Path  # where the backend keeps its sandboxes

    def spec(self, **changes: object) -> SandboxSpec:
        return replace(SandboxSpec(limits=self.limits), **changes)  # type: ignore[arg-type]


async def _sandbox(h: Harness, **changes: object) -> tuple[SandboxBackend, Sandbox]:
    backend = h.make()
    return backend, await backend.create(h.spec(**changes))


async def environment_is_rebuilt(h: Harness) -> None:
    os.environ[HOST_SECRET] = "host-value-7731"
    try:
        _, box = await _sandbox(h, env={"RF_GIVEN": "given"})
        try:
            shown = await box.run(["sh", "-c", "env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"])
        finally:
            await box.destroy()
    finally:
        del os.environ[HOST_SECRET]
    text = shown.stdout.decode()
    assert "RF_GIVEN=given" in text and "host-value-7731" not in text and HOST_SECRET not in text


async def runs_unprivileged_on_a_read_only_system(h: Harness) -> None:
    _, box = await _sandbox(h)
    try:
        uid = (await box.run(["id", "-u"])).stdout.strip()
        usr = await box.run(["sh", "-c", "touch /usr/rf-x || echo refused"])
        shadow = await box.run(["sh", "-c", "cat /etc/shadow || echo refused"])
    finally:
        await box.destroy()
    assert uid not in (b"0", b"")
    assert b"refused" in usr.stdout and b"refused" in shadow.stdout


async def workspace_is_writable_and_tmp_private(h: Harness) -> None:
    backend = h.make()
    one, two = await backend.create(h.spec()), await backend.create(h.spec())
    try:
        wrote = await one.run(["sh", "-c", "echo mine > /tmp/rf-private && mkdir -p sub && echo w > sub/f && pwd"])
        other = await two.run(["sh", "-c", "cat /tmp/rf-private || echo absent"])
        here = await one.run(["pwd"], cwd="sub")
        await one.write_file("given/file.txt", b"from the host")
        back = await one.run(["cat", "given/file.txt"])
        read = await one.read_file("sub/f")
    finally:
        await one.destroy()
        await two.destroy()
    assert wrote.exit.code == 0 and wrote.stdout.strip() == b"/workspace"
    assert b"absent" in other.stdout
    assert here.stdout.strip() == b"/workspace/sub"
    assert back.stdout == b"from the host" and read == b"w\n"


async def no_network_in_mode_none(h: Harness) -> None:
    _, box = await _sandbox(h)
    probe = (
        "import socket\nfor target in (('1.1.1.1', 80), ('127.0.0.1', 3128)):\n"
        "    try:\n        socket.create_connection(target, timeout=2); print('reached', target)\n"
        "    except OSError as exc:\n        print('refused', target)\n"
    )
    try:
        said = await box.run(["python3", "-c", probe], timeout=30)
    finally:
        await box.destroy()
    assert b"reached" not in said.stdout and said.stdout.count(b"refused") == 2, said


async def proxies_reach_only_their_own_session(h: Harness) -> None:
    """Both bridged ports (the egress proxy's 3128, the gateway's 8080) of each sandbox reach that session's own
    sockets and no other's: the socket is the session's identity (B6)."""
    paths: dict[tuple[str, int], Path] = {}
    servers = []
    for name in ("a", "b"):
        for port in (3128, 8080):
            path = h.scratch / f"{name}-{port}.sock"

            async def answer(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, said: str = f"{name}:{port}"
            ) -> None:
                await reader.read(10)
                writer.write(f"session-{said}".encode())
                await writer.drain()
                writer.close()

            servers.append(await asyncio.start_unix_server(answer, str(path)))
            paths[(name, port)] = path
    backend = h.make()
    boxes = {
        name: await backend.create(
            h.spec(network="proxy", proxies=ProxyRoutes(paths[(name, 3128)], paths[(name, 8080)]))
        )
        for name in ("a", "b")
    }
    ask = (
        "import socket\nfor port in (3128, 8080):\n    s = socket.create_connection(('127.0.0.1', port), timeout=5)\n"
        "    s.sendall(b'x')\n    print(s.recv(30).decode())\n"
    )
    try:
        answers = {
            name: (await box.run(["python3", "-c", ask], timeout=30)).stdout.split() for name, box in boxes.items()
        }
    finally:
        for box in boxes.values():
            await box.destroy()
        for server in servers:
            server.close()
    assert answers == {
        "a": [b"session-a:3128", b"session-a:8080"],
        "b": [b"session-b:3128", b"session-b:8080"],
    }, answers


async def a_command_times_out(h: Harness) -> None:
    _, box = await _sandbox(h)
    try:
        start = time.monotonic()
        done = await box.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
        took = time.monotonic() - start
        after = await box.run(["echo", "still usable"])
    finally:
        await box.destroy()
    assert done.exit.timed_out and took < 10
    assert after.stdout == b"still usable\n"


async def closing_early_ends_the_command(h: Harness) -> None:
    _, box = await _sandbox(h)
    try:
        events = box.exec(["sh", "-c", "echo first; sleep 30"])
        first = await anext(events)
        start = time.monotonic()
        await events.aclose()
        took = time.monotonic() - start
        after = await box.run(["echo", "next"])
    finally:
        await box.destroy()
    assert getattr(first, "data", b"") == b"first\n" and took < 10
    assert after.stdout == b"next\n"


async def memory_limit_holds(h: Harness) -> None:
    limit = h.limits.memory_bytes
    assert limit is not None, "every backend enforces a memory limit"
    _, box = await _sandbox(h)
    grow = f"x = bytearray({limit * 2}); x[::4096] = b'1' * len(x[::4096]); print('allocated')"
    try:
        done = await box.run(["python3", "-c", grow], timeout=60)
    finally:
        await box.destroy()
    assert b"allocated" not in done.stdout and done.exit.code != 0


async def workspace_size_holds(h: Harness) -> None:
    size = h.limits.workspace_bytes
    assert size is not None
    _, box = await _sandbox(h)
    try:
        done = await box.run(["sh", "-c", f"head -c {size + 2**20} /dev/zero > big; echo code=$?"], timeout=120)
    finally:
        await box.destroy()
    assert b"code=0" not in done.stdout


async def file_access_never_follows_the_agents_symlinks(h: Harness) -> None:
    _, box = await _sandbox(h)
    try:
        await box.run(["sh", "-c", "ln -s /etc/passwd link && ln -s / root && mkdir d && ln -s /etc d/up"])
        refused = []
        for path in ("link", "root/etc/passwd", "d/up/passwd"):
            with contextlib.suppress(SandboxError, OSError):
                await box.read_file(path)
                refused.append(f"read {path}")
            with contextlib.suppress(SandboxError, OSError):
                await box.write_file(path, b"x")
                refused.append(f"wrote {path}")
        for bad in ("../x", "/etc/passwd", ""):
            with contextlib.suppress(SandboxError, OSError, ValueError):
                await box.read_file(bad)
                refused.append(f"read {bad!r}")
    finally:
        await box.destroy()
    assert refused == [], refused


async def destroy_ends_everything_and_is_idempotent(h: Harness) -> None:
    _backend, box = await _sandbox(h)
    events = box.exec(["sh", "-c", "sleep 60 & sleep 60 & echo started; wait"])
    assert getattr(await anext(events), "data", b"") == b"started\n"
    await box.destroy()
    with contextlib.suppress(StopAsyncIteration, SandboxError):
        async for event in events:
            if isinstance(event, Exit):
                break
    await box.destroy()
    try:
        await box.run(["true"])
    except SandboxError:
        pass
    else:
        raise AssertionError("a destroyed sandbox still ran a command")
    assert not (h.root / box.id).exists()  # its directory (and workspace) is gone


async def reconcile_removes_what_a_previous_process_left(h: Harness) -> None:
    _backend, box = await _sandbox(h)
    await box.run(["true"])
    fresh = h.make()  # the next server, over the same root
    removed = await fresh.reconcile(keep=set())
    assert box.id in removed
    await box.destroy()  # idempotent after reconcile


CHECKS: dict[str, Callable[[Harness], Awaitable[None]]] = {
    check.__name__: check
    for check in (
        environment_is_rebuilt,
        runs_unprivileged_on_a_read_only_system,
        workspace_is_writable_and_tmp_private,
        no_network_in_mode_none,
        proxies_reach_only_their_own_session,
        a_command_times_out,
        closing_early_ends_the_command,
        memory_limit_holds,
        workspace_size_holds,
        file_access_never_follows_the_agents_symlinks,
        destroy_ends_everything_and_is_idempotent,
        reconcile_removes_what_a_previous_process_left,
    )
}
