"""The init of a gVisor sandbox, run INSIDE it (stdlib only): `python3 gvisor_init.py STATE_DIR MOST [PORT=SOCKET ...]`.

gVisor has its own network stack, so the bubblewrap bridge (the host making a listener inside the sandbox's network
namespace) cannot work. Instead this relay listens on 127.0.0.1:PORT inside and carries each connection to the
session's Unix socket bound into the sandbox (runsc --host-uds=open lets it connect to those, the only host sockets
it can see), at most MOST connections per route at once (a flood of connects would cost the host's proxies file
descriptors: the ones past the bound are closed at once). It writes STATE_DIR/ready once it listens.
"""

from __future__ import annotations

import asyncio
import os
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def _route(path: str, most: int):  # type: ignore[no-untyped-def]
    held = 0

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal held
        if held >= most:
            client_writer.close()
            return
        held += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
            client_writer.close()
            up_writer.close()
        finally:
            held -= 1

    return serve


async def main(state: str, most: int, routes: list[str]) -> None:
    for route in routes:
        port, path = route.split("=", 1)
        await asyncio.start_server(_route(path, most), "127.0.0.1", int(port))
    with open(os.path.join(state, "ready"), "w") as handle:
        handle.write("ready\n")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
