"""Streaming one command's process, shared by every backend: its output as it comes, its timeout, its early close.

Owns: `stream` (the two pipes pumped into one bounded queue, the deadline, and the end of a command closed early or
timed out: the backend's `end` kills it, then what the dead command left in its pipes is read out, since asyncio's
wait() waits for the end of a pipe nobody reads) and `collect` (a whole command's output, for short commands).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from ringfence.sandbox.spec import Completed, Exit, Output

CHUNK = 64 * 1024


async def stream(
    proc: asyncio.subprocess.Process, limit: float | None, end: Callable[[], Awaitable[None]]
) -> AsyncGenerator[Output | Exit, None]:
    """Yields `proc`'s output chunks as they come, then its Exit. Past `limit` seconds, or when the consumer closes
    the generator early, `end()` ends the command."""
    queue: asyncio.Queue[Output | None] = asyncio.Queue(maxsize=64)

    async def pump(pipe: asyncio.StreamReader | None, name: str) -> None:
        assert pipe is not None
        while chunk := await pipe.read(CHUNK):
            await queue.put(Output(name, chunk))  # type: ignore[arg-type]
        await queue.put(None)

    pumps = [asyncio.create_task(pump(proc.stdout, "stdout")), asyncio.create_task(pump(proc.stderr, "stderr"))]
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    timed_out, open_streams = False, 2
    try:
        while open_streams:
            remaining = None if deadline is None else max(deadline - loop.time(), 0)
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                timed_out = True
                await end()
                break
            if item is None:
                open_streams -= 1
            else:
                yield item
        code = await proc.wait()
        yield Exit(code, timed_out)
    finally:
        for task in pumps:
            task.cancel()
        if proc.returncode is None:  # closed early (or cancelled): the command ends here
            await end()
            await asyncio.gather(*pumps, return_exceptions=True)  # their reads are done before ours
            for pipe in (proc.stdout, proc.stderr):
                while pipe is not None and await pipe.read(CHUNK):
                    pass
            await proc.wait()


async def collect(events: AsyncIterator[Output | Exit]) -> Completed:
    out, err, final = bytearray(), bytearray(), Exit(-1)
    async for event in events:
        if isinstance(event, Exit):
            final = event
        else:
            (out if event.stream == "stdout" else err).extend(event.data)
    return Completed(bytes(out), bytes(err), final)
