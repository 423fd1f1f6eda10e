"""Real agents in sessions (issue 15), each figure side by side with its baseline in the same run.

- Per-turn overhead: the same CLI (Claude Code, Codex), the same stand-in provider and prompt, in a ringfence
  session (gateway, egress proxy, capture of the change, the agent state sealed into the store) against the CLI
  run directly under plain `bwrap` with equivalent flags (new namespaces but the network, read-only system, the same
  install, a writable clone and HOME) talking to the stand-in straight. Rounds interleaved; continuing turns.
- Resume with a 10 MiB agent state restored (random bytes: the worst case for its compression) against a resume of
  the same session that restores nothing (the built-in agent keeps no state).
- Time to the first streamed assistant text: a Messages API stream through the gateway against the stand-in
  directly, from the same client.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.agents.installed import installed_agents
from tests.gateway.git_host import loopback_dialer

from bench.common import Figure, fresh_store
from ringfence.agents.presets import AGENT_HOME, PRESETS
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway, GitSession, ModelUpstream
from ringfence.gateway.routes import Repository
from ringfence.githost import GitHost, git, make_repository
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend, Exit
from ringfence.sandbox.mounts import system_mounts
from ringfence.sandbox.spec import TOOLS_DIR
from ringfence.sessions.manager import Caller, Environment, RepositoryHost, SessionManager, StoreModels
from ringfence.store import accounts, providers
from ringfence.store.crypto import Secret
from ringfence.testing.providers import StandInProvider

TOKEN = "bench-agents-token-0123"
KIND = {"claude-code": "anthropic", "codex": "openai"}


def _ms(samples: list[float], q: float = 0.5) -> float:
    return sorted(samples)[round(q * (len(samples) - 1))] * 1000


def run(rounds: int = 10) -> list[Figure]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-agents-"))
    base.chmod(0o711)
    try:
        agents = installed_agents(base / "install-check").tools
        with fresh_store() as (store, _):
            figures = asyncio.run(_turns(store, base, agents, rounds))
        with fresh_store() as (store, _):
            figures += asyncio.run(_resume(store, base, agents, rounds))
        figures += asyncio.run(_first_text(rounds * 5))
        return figures
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _manager(store, base: Path, host: GitHost, agents) -> SessionManager:  # type: ignore[no-untyped-def]
    return SessionManager(
        store,
        BubblewrapBackend(base / "sandboxes"),
        base / "run",
        EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({}))),
        Gateway(dialer=loopback_dialer()),
        RepositoryHost(host.url, lambda _r: StaticToken("basic", Secret(TOKEN))),
        lambda: datetime.now(UTC),
        models=StoreModels(store),
        agents=agents,
    )


async def _drain(manager: SessionManager, session_id: str, text: str) -> int:
    code = -1
    async for event in manager.prompt(session_id, text):
        if isinstance(event, Exit):
            code = event.code
    return code


async def _bare_turn(argv: list[str], workdir: Path, install: Path, name: str, env: dict[str, str]) -> int:
    """The CLI under plain bwrap: the same install read-only on the PATH, a writable clone and HOME, the network
    of the host (so it reaches the stand-in directly), uid 1000 in a user namespace of its own (mapped to ours)."""
    options = ["--unshare-all", "--share-net", "--uid", "1000", "--gid", "1000", "--die-with-parent", "--clearenv"]
    options += [*system_mounts(Path("/")), "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    options += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(workdir), "/workspace"]
    options += ["--ro-bind", str(install), f"{TOOLS_DIR}/{name}", "--chdir", "/workspace/repo"]
    path = f"{TOOLS_DIR}/{name}/bin:/usr/local/bin:/usr/bin:/bin"
    for key, value in {"PATH": path, "HOME": "/workspace", "LANG": "C.UTF-8", **env}.items():
        options += ["--setenv", key, value]
    process = await asyncio.create_subprocess_exec(
        "bwrap", *options, "--", *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, said = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"the bare turn failed ({process.returncode}): {said.decode()[-600:]}")
    return 0


async def _turns(store, base: Path, agents, rounds: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    make_repository(base / "host", "demo", "example", commits=20)
    host = GitHost(base / "host", TOKEN)
    now = datetime.now(UTC)
    figures = []
    for name in ("claude-code", "codex"):
        preset = PRESETS[name]
        with StandInProvider(KIND[name]) as stand_in:
            user = accounts.create_user(store, f"bench-{name}", now, actor="bench", plan="pro")
            providers.set_provider(store, user.id, KIND[name], None, stand_in.url, Secret("sk-bench"), now,
                                   actor=user.id)  # fmt: skip
            repo = accounts.connect_repository(store, user.id, f"{host.url}/demo/example.git", now, actor="bench")
            key, _ = accounts.create_api_key(store, user.id, "bench", now, actor="bench")
            manager = _manager(store, base, host, agents)
            bare_dir = base / f"bare-{name}"
            (bare_dir / "repo").parent.mkdir(parents=True)
            git("clone", "-q", "-c", f"http.extraHeader=Authorization: {host.expected()}",
                f"{host.url}/demo/example.git", str(bare_dir / "repo"))  # fmt: skip
            env = {
                "ANTHROPIC_BASE_URL": stand_in.url, "ANTHROPIC_API_KEY": "sk-bench",
                "OPENAI_API_KEY": "sk-bench", **preset.env(telemetry=False),
            }  # fmt: skip
            ours, bare = [], []
            try:
                live = await manager.start(Caller(user.id, key.id), repo.id, Environment(network="none", agent=name))
                await _drain(manager, live.id, "warm up")
                argv = [a.replace("http://127.0.0.1:8080/model/openai", stand_in.url) for a in preset.argv("warm up")]
                argv = [a.replace(f"HOME={AGENT_HOME}", "HOME=/workspace/home") for a in argv]
                await _bare_turn(argv, bare_dir, agents()[name], name, env)
                for round_ in range(rounds):
                    start = time.perf_counter()
                    code = await _drain(manager, live.id, f"turn {round_}")
                    ours.append(time.perf_counter() - start)
                    assert code == 0, code
                    argv = preset.argv(f"turn {round_}", continuing=True)
                    argv = [a.replace("http://127.0.0.1:8080/model/openai", stand_in.url) for a in argv]
                    argv = [a.replace(f"HOME={AGENT_HOME}", "HOME=/workspace/home") for a in argv]
                    start = time.perf_counter()
                    code = await _bare_turn(argv, bare_dir, agents()[name], name, env)
                    bare.append(time.perf_counter() - start)
                    assert code == 0, code
                await manager.end(live.id)
            finally:
                await manager.shutdown()
        added = _ms(ours) - _ms(bare)
        figures.append(Figure(
            f"{name}: per-turn overhead of a session vs the CLI under plain bwrap (p50 added)", added, "ms",
            "<= 150 ms", added <= 150,
            f"session p50 {_ms(ours):.0f} ms (p90 {_ms(ours, 0.9):.0f}), bare bwrap p50 {_ms(bare):.0f} ms "
            f"(p90 {_ms(bare, 0.9):.0f}); {rounds} continuing turns each, interleaved; includes capture and the "
            "state checkpoint",
        ))  # fmt: skip
    return figures


async def _resume(store, base: Path, agents, rounds: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    host = GitHost(base / "host", TOKEN)
    now = datetime.now(UTC)
    with StandInProvider("anthropic") as stand_in:
        user = accounts.create_user(store, "bench-resume", now, actor="bench", plan="pro")
        providers.set_provider(store, user.id, "anthropic", None, stand_in.url, Secret("sk-b"), now, actor=user.id)
        repo = accounts.connect_repository(store, user.id, f"{host.url}/demo/example.git", now, actor="bench")
        key, _ = accounts.create_api_key(store, user.id, "bench", now, actor="bench")
        manager = _manager(store, base, host, agents)
        claude, builtin = Environment(network="none", agent="claude-code"), Environment(network="none")
        restored, fresh = [], []
        try:
            live = await manager.start(Caller(user.id, key.id), repo.id, claude)
            home = AGENT_HOME.removeprefix("/workspace/")
            await live.sandbox.run(["sh", "-c", f"mkdir -p {home} && head -c 10485760 /dev/urandom > {home}/big"])
            await _drain(manager, live.id, "keep my state")  # the checkpoint seals the 10 MiB
            await manager.end(live.id)
            for _ in range(rounds):
                for env, samples in ((claude, restored), (builtin, fresh)):
                    start = time.perf_counter()
                    again = await manager.resume(live.id, user.id, env)
                    samples.append(time.perf_counter() - start)
                    if env is claude:
                        assert again.conversation
                    await manager.end(live.id)
        finally:
            await manager.shutdown()
    added = _ms(restored) - _ms(fresh)
    return [Figure(
        "resume with a 10 MiB agent state restored vs a resume restoring nothing (p50 added)", added, "ms",
        "<= 300 ms", added <= 300,
        f"restored p50 {_ms(restored):.0f} ms (p90 {_ms(restored, 0.9):.0f}), nothing restored p50 "
        f"{_ms(fresh):.0f} ms; random bytes (incompressible); includes unsealing, writing and untarring",
    )]  # fmt: skip


async def _first_text(rounds: int) -> list[Figure]:
    body = b'{"model":"m","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hello there"}]}'
    with StandInProvider("anthropic") as stand_in:
        gateway = Gateway(dialer=loopback_dialer())
        gateway.add_session(
            GitSession(
                "s", Repository.parse("a/b"), "ringfence/s", "http://127.0.0.1:9", StaticToken("basic", Secret("x"))
            ),
            (ModelUpstream("anthropic", stand_in.url, Secret("sk-first")),),
        )
        port = (await gateway.listen_tcp("s", "127.0.0.1", 0))[1]
        direct_port = int(stand_in.url.rsplit(":", 1)[1])

        async def first(port: int, path: str) -> float:
            start = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            writer.write(head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body)
            seen = b""
            while b"text_delta" not in seen:
                chunk = await reader.read(65536)
                if not chunk:
                    raise RuntimeError(f"no text in {seen[:300]!r}")
                seen += chunk
            elapsed = time.perf_counter() - start
            writer.close()
            return elapsed

        through, direct = [], []
        try:
            for _ in range(rounds):
                through.append(await first(port, "/model/anthropic/v1/messages"))
                direct.append(await first(direct_port, "/v1/messages"))
        finally:
            await gateway.close()
    added = _ms(through) - _ms(direct)
    return [Figure(
        "time to the first streamed assistant text: through the gateway vs the stand-in directly (p50 added)",
        added, "ms", "<= 5 ms", added <= 5,
        f"gateway p50 {_ms(through):.2f} ms (p99 {_ms(through, 0.99):.2f}), direct p50 {_ms(direct):.2f} ms; "
        f"{rounds} requests each, a new connection each, interleaved",
    )]  # fmt: skip


if __name__ == "__main__":
    for figure in run(3):
        print(figure)
