"""Conformance checks of processes and limits (S-BOX B2, B3, B4, B5), measured from inside: the process limit, what
a command leaves behind ends with it (and a timed-out command ends alone), output streams while a command runs,
/tmp is bounded by the memory limit, host secrets are out of reach, and no privilege is gained, nested user
namespaces included."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from ringfence.sandbox.base import Sandbox
from ringfence.sandbox.spec import Exit, Output
from ringfence.testing.conformance.harness import Harness, sandbox

# Its uid and capabilities (/proc/self/status) and its no_new_privs flag (asked of prctl: not every kernel shows it).
_STATUS = (
    "import ctypes\nfor line in open('/proc/self/status'):\n"
    "    if line.startswith(('Uid', 'CapEff', 'CapPrm')):\n        print(line, end='')\n"
    "print('NoNewPrivs:', ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))\n"
)

# Prints whatever it can read of each path given: a file's bytes, a directory's names.
_READ_ALL = (
    "import os, sys\nfor p in sys.argv[1:]:\n    try:\n        print(open(p).read())\n    except OSError:\n"
    "        try:\n            print(os.listdir(p))\n        except OSError:\n            pass\n"
)


async def a_process_limit_holds(h: Harness) -> None:
    limit = h.limits.pids
    assert limit is not None, "every backend enforces a process limit"
    _, box = await sandbox(h)
    # small processes, started as fast as they come: the process limit must refuse one before memory runs out
    # (a gVisor process costs its host more memory than a namespaced one, some 0.6 MiB for a `sleep`)
    bomb = (
        "import os\nmade = 0\ntry:\n    while made < 4 * LIMIT:\n"
        "        os.posix_spawn('/bin/sleep', ['sleep', '60'], {})\n        made += 1\n"
        "except OSError as exc:\n    print('refused', made, exc.errno)\nelse:\n    print('unbounded', made)\n"
    ).replace("LIMIT", str(limit))
    try:
        said = await box.run(["python3", "-c", bomb], timeout=120)
        after = await box.run(["echo", "still works"])
    finally:
        await box.destroy()
    words = said.stdout.split()
    assert words[:1] == [b"refused"] and int(words[1]) < limit and words[2] == b"11", said  # EAGAIN, under the limit
    assert after.stdout == b"still works\n"


def _beating(name: str) -> str:
    """A shell daemon, detached into its own session, that appends to the workspace file NAME every 0.1 s: whether
    it still runs shows in the file, whatever a command can see of another's processes."""
    return f"(setsid sh -c 'while :; do echo . >> {name}; sleep 0.1; done' > /dev/null 2>&1 &)"


async def _still_beating(box: Sandbox, *names: str) -> dict[str, bool]:
    before = {name: len(await box.read_file(name)) for name in names}
    await asyncio.sleep(0.8)
    return {name: len(await box.read_file(name)) > before[name] for name in names}


async def leftovers_end_with_their_command(h: Harness) -> None:
    """What a command leaves running (a daemon detached into its own session; a background job holding the
    command's output) ends with the command: the command returns once its own process does, and nothing of it
    runs after."""
    _, box = await sandbox(h)
    try:
        start = time.monotonic()
        done = await box.run(["sh", "-c", f"{_beating('left')}; sleep 3002 & echo started; sleep 0.3"], timeout=60)
        took = time.monotonic() - start
        beating = await _still_beating(box, "left")
    finally:
        await box.destroy()
    assert done.stdout == b"started\n" and done.exit == Exit(0) and took < 30, (done, took)
    assert beating == {"left": False}


async def killing_what_started_it_keeps_nothing_alive(h: Harness) -> None:
    """A command that kills the process that started it (its parent: the backend's, whatever it is) to escape the
    end of its leftovers keeps none: its daemon ends with it, and the sandbox goes on."""
    _, box = await sandbox(h)
    try:
        await box.run(["sh", "-c", f"{_beating('kept')}; kill -9 $PPID; sleep 0.3; echo done"], timeout=60)
        beating = await _still_beating(box, "kept")
        after = await box.run(["echo", "still works"])
    finally:
        await box.destroy()
    assert beating == {"kept": False}
    assert after.stdout == b"still works\n", after


async def a_timed_out_command_ends_alone(h: Harness) -> None:
    _, box = await sandbox(h)
    try:
        neighbour = box.exec(["sh", "-c", f"{_beating('mine')}; echo ready; sleep 1002"], timeout=None)
        assert getattr(await anext(neighbour), "data", b"") == b"ready\n"
        late = await box.run(["sh", "-c", f"{_beating('late')}; sleep 0.3; sleep 2002"], timeout=1.5)
        beating = await _still_beating(box, "mine", "late")
        await neighbour.aclose()
    finally:
        await box.destroy()
    assert late.exit.timed_out
    assert beating == {"mine": True, "late": False}  # the neighbour's daemon lives on; the timed-out one's is gone


async def output_streams_while_the_command_runs(h: Harness) -> None:
    _, box = await sandbox(h)
    events: list[tuple[float, Output | Exit]] = []
    try:
        async for event in box.exec(["sh", "-c", "echo one; sleep 1; echo two >&2; exit 4"]):
            events.append((time.monotonic(), event))
    finally:
        await box.destroy()
    (first_at, first), (last_at, last) = events[0], events[-1]
    assert first == Output("stdout", b"one\n") and last == Exit(4)
    assert Output("stderr", b"two\n") in [event for _, event in events]
    assert last_at - first_at >= 0.8  # the first chunk came out while the command still ran


async def tmp_is_bounded_by_the_memory_limit(h: Harness) -> None:
    limit = h.limits.memory_bytes
    assert limit is not None
    _, box = await sandbox(h)
    count = 2 * limit // 2**20
    try:
        fill = await box.run(["sh", "-c", f"dd if=/dev/zero of=/tmp/big bs=1M count={count} 2>&1"], timeout=120)
    finally:
        await box.destroy()
    assert fill.exit.code != 0 and f"{count}+0 records out".encode() not in fill.stdout, fill


async def host_secrets_are_out_of_reach(h: Harness) -> None:
    """B2: a file the host planted in its /tmp, the host's /etc/shadow and /root, another sandbox's workspace by
    its host path, and the backend's own directory are all unreadable from inside."""
    planted = Path("/tmp") / f"rf-conformance-planted-{os.getpid()}"  # noqa: S108 (the host's own /tmp, on purpose)
    planted.write_text("PLANTED-HOST-FILE")
    planted.chmod(0o644)
    backend = h.make()
    mine, other = await backend.create(h.spec()), await backend.create(h.spec())
    try:
        await other.write_file("private.txt", b"OTHER-SESSION-DATA")
        paths = [str(planted), "/etc/shadow", "/root", str(h.root), str(h.root / other.id / "workspace")]
        said = await mine.run(["python3", "-c", _READ_ALL, *paths, *(f"{p}/private.txt" for p in paths)])
    finally:
        await mine.destroy()
        await other.destroy()
        planted.unlink()
    assert b"PLANTED" not in said.stdout and b"OTHER-SESSION" not in said.stdout, said
    assert other.id.encode() not in said.stdout and b"root:" not in said.stdout, said


async def no_privilege_is_gained(h: Harness) -> None:
    """B5: no capability, no_new_privs, no mount, no setuid elevation, and a nested user namespace (where a backend
    allows one) gives no power over the sandbox's system either."""
    _, box = await sandbox(h)
    nested = "unshare --user --map-root-user sh -c 'touch /usr/rf-nested || echo refused-usr; cat /etc/shadow'"
    try:
        status = (await box.run(["python3", "-c", _STATUS])).stdout
        mount = await box.run(["mount", "-t", "tmpfs", "none", "/tmp"])  # noqa: S108 (inside)
        su = await box.run(["su", "-c", "id"])
        inside = await box.run(["sh", "-c", nested])
    finally:
        await box.destroy()
    fields = dict(line.split(b":", 1) for line in status.splitlines())
    assert fields[b"CapEff"].strip() == fields[b"CapPrm"].strip() == b"0000000000000000", status
    assert fields[b"NoNewPrivs"].strip() == b"1" and fields[b"Uid"].split()[0] != b"0", status
    assert mount.exit.code != 0 and su.exit.code != 0
    assert b"root:" not in inside.stdout and (inside.exit.code != 0 or b"refused-usr" in inside.stdout), inside
