"""Sessions end to end on this machine: time to a ready session (sandbox, proxies, clone through the gateway)
against a plain `git clone` from the same local host in the same run, and whole lifecycles per minute with where
the time goes."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure, fresh_store
from bench.session_world import session_world
from ringfence.githost import git
from ringfence.sandbox import BubblewrapBackend, Exit
from ringfence.sessions.manager import Environment

TOKEN = "bench-session-token-0123"


def run(rounds: int = 15) -> list[Figure]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-sessions-"))
    base.chmod(0o711)
    try:
        with fresh_store() as (store, _):
            return asyncio.run(_run(store, base, rounds))
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _run(store, base: Path, rounds: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    world = session_world(store, base, TOKEN)
    host = world.host
    manager = world.manager(store, BubblewrapBackend(base / "sandboxes"), base / "run")
    auth = ["-c", f"http.extraHeader=Authorization: {host.expected()}"]
    ready, plain, lifecycle = [], [], []
    names = ("sandbox + proxies", "clone + branch", "agent turn", "capture", "push + teardown")
    split: dict[str, list[float]] = {name: [] for name in names}
    env = Environment(network="none")
    try:
        for i in range(rounds):
            shutil.rmtree(base / "plain", ignore_errors=True)
            start = time.perf_counter()
            git(*auth, "clone", "-q", f"{host.url}/demo/example.git", str(base / "plain"))
            plain.append(time.perf_counter() - start)
            marks: dict[str, float] = {}

            def mark(step: str, _detail: str, marks: dict[str, float] = marks) -> None:
                marks.setdefault(step, time.perf_counter())

            t0 = time.perf_counter()
            live = await manager.start(world.caller, world.repository_id, env, progress=mark)
            t1 = time.perf_counter()
            ready.append(t1 - t0)
            async for event in manager.prompt(live.id, f"round {i}"):
                if isinstance(event, Exit):
                    exited = time.perf_counter()  # the agent is done; what follows is the diff and the store
            t2 = time.perf_counter()
            await manager.end(live.id)
            t3 = time.perf_counter()
            lifecycle.append(t3 - t0)
            parts = (marks["clone"] - t0, t1 - marks["clone"], exited - t1, t2 - exited, t3 - t2)
            for name, value in zip(split, parts, strict=True):
                split[name].append(value)
    finally:
        await manager.shutdown()
        host.close()
    extra_ms = (statistics.median(ready) - statistics.median(plain)) * 1000
    per_minute = 60 / statistics.median(lifecycle)
    parts = ", ".join(f"{name} {statistics.median(v) * 1000:.0f} ms" for name, v in split.items())
    return [
        Figure(
            f"time to a ready session vs a plain git clone of the same repository ({rounds} rounds, p50)",
            extra_ms,
            "ms more",
            "<= 300 ms",
            extra_ms <= 300,
            f"ready {statistics.median(ready) * 1000:.0f} ms (sandbox, both proxies, clone through the gateway, "
            f"branch); plain clone {statistics.median(plain) * 1000:.0f} ms",
        ),
        Figure(
            "whole session lifecycles per minute (start, one built-in agent turn, end), sequential",
            per_minute,
            "sessions/min",
            "report",
            True,
            f"median {statistics.median(lifecycle) * 1000:.0f} ms each: {parts}",
        ),
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for figure in run(5):
        print(figure)
