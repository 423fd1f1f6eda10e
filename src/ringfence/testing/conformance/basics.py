"""The first checks of the conformance suite: the environment, privileges, the file system, the network in mode
`none`, timeouts and early close, the memory and workspace limits, file access that never follows the agent's
symlinks, destroy and reconcile."""

from __future__ import annotations

import contextlib
import os
import time

from ringfence.sandbox.spec import Completed, Exit, SandboxError
from ringfence.testing.conformance.harness import HOST_SECRET, Harness, sandbox


async def environment_is_rebuilt(h: Harness) -> None:
    os.environ[HOST_SECRET] = "host-value-7731"
    try:
        _, box = await sandbox(h, env={"RF_GIVEN": "given"})
        try:
            shown = await box.run(["sh", "-c", "env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"])
        finally:
            await box.destroy()
    finally:
        del os.environ[HOST_SECRET]
    text = shown.stdout.decode()
    assert "RF_GIVEN=given" in text and "host-value-7731" not in text and HOST_SECRET not in text


async def runs_unprivileged_on_a_read_only_system(h: Harness) -> None:
    _, box = await sandbox(h)
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
    _, box = await sandbox(h)
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


async def a_command_times_out(h: Harness) -> None:
    _, box = await sandbox(h)
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
    _, box = await sandbox(h)
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


async def _over_the_memory_limit(h: Harness, argv: list[str], timeout: float) -> Completed:
    """`argv` run in a fresh sandbox with a file in its workspace; it must end and leave the sandbox going on: the
    next command runs, and the workspace is still there."""
    _, box = await sandbox(h)
    try:
        await box.write_file("kept.txt", b"kept")
        done = await box.run(argv, timeout=timeout)
        after = await box.run(["cat", "kept.txt"])
    finally:
        await box.destroy()
    assert after.stdout == b"kept" and after.exit.code == 0, after
    return done


async def memory_limit_holds(h: Harness) -> None:
    """A process that grows past the memory limit is killed (SIGKILL, as the kernel's OOM killer does), and the
    sandbox goes on: the next command runs, and the workspace is still there."""
    limit = h.limits.memory_bytes
    assert limit is not None, "every backend enforces a memory limit"
    grow = f"x = bytearray({limit * 2}); x[::4096] = b'1' * len(x[::4096]); print('allocated')"
    done = await _over_the_memory_limit(h, ["python3", "-c", grow], timeout=60)
    assert b"allocated" not in done.stdout and done.exit.code == 137, done


async def a_swarm_over_the_memory_limit_is_cut_down(h: Harness) -> None:
    """Four processes each take 60% of the limit at once (no single one is over it): some are killed, the ones left
    fit, and the sandbox goes on. A watcher that only ends a process over the limit alone would let the swarm through,
    or the host would end the whole sandbox."""
    limit = h.limits.memory_bytes
    assert limit is not None
    grow = (
        f"import time; x = bytearray({limit * 6 // 10}); x[::4096] = b'1' * len(x[::4096]); time.sleep(2); "
        "print('held', flush=True)"
    )
    swarm = f'for i in 1 2 3 4; do python3 -c "{grow}" & done; wait; echo done'
    done = await _over_the_memory_limit(h, ["sh", "-c", swarm], timeout=120)
    assert done.stdout.endswith(b"done\n") and done.stdout.count(b"held") <= 1, done  # 60% twice is over the limit


async def workspace_size_holds(h: Harness) -> None:
    size = h.limits.workspace_bytes
    assert size is not None
    _, box = await sandbox(h)
    try:
        done = await box.run(["sh", "-c", f"head -c {size + 2**20} /dev/zero > big; echo code=$?"], timeout=120)
    finally:
        await box.destroy()
    assert b"code=0" not in done.stdout


async def file_access_never_follows_the_agents_symlinks(h: Harness) -> None:
    _, box = await sandbox(h)
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
    _backend, box = await sandbox(h)
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
    _backend, box = await sandbox(h)
    await box.run(["true"])
    fresh = h.make()  # the next server, over the same root
    removed = await fresh.reconcile(keep=set())
    assert box.id in removed
    await box.destroy()  # idempotent after reconcile
