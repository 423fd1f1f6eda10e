"""Capture (issue 15): the agent runs in the clone; a turn's kept change is the working tree against the base
commit (tracked changes and untracked files that are not ignored, committed or not), computed without touching
the agent's index; `end` commits what the agent left uncommitted before the push, authored by the session's user
and committed by ringfence, so nothing the agent did is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ringfence.sandbox import BubblewrapBackend
from ringfence.sessions.manager import Environment
from ringfence.store import accounts, content
from ringfence.store.content import MAX_CONTENT_BYTES
from ringfence.store.db import Store
from tests.gateway.git_host import GitHost, git
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.sessions.test_manager import NOW, caller, host, manager_for, turn  # noqa: F401 (fixture)

WORK = (
    "pwd; echo changed >> file0.txt; echo new > untracked.txt; echo '*.log' > .gitignore; "
    "echo noise > debug.log; git add .gitignore; mkdir -p deep/er && echo x > deep/er/nested.txt"
)


def test_uncommitted_work_is_kept_and_pushed_and_the_agents_index_is_untouched(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "Ada Lovelace", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    env = Environment(network="none", agent=("sh", "-c", "{prompt}"))

    async def go() -> tuple[str, str, str, str]:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            live = await manager.start(caller(store, user.id), repo.id, env)
            output, _ = await turn(manager, live.id, WORK)
            staged = await live.sandbox.run(["git", "diff", "--cached", "--name-only"], cwd="repo")
            pushed = (await manager.end(live.id)).commit
            return live.id, output, staged.stdout.decode(), pushed
        finally:
            await manager.shutdown()

    session_id, output, staged, pushed = asyncio.run(go())
    assert output.splitlines()[0] == "/workspace/repo"  # the agent starts in the clone
    assert staged.split() == [".gitignore"]  # the capture left the agent's index as the agent made it
    [change] = [r.text for r in content.read_content(store, session_id) if r.kind == "code_change"]
    for path in ("file0.txt", "untracked.txt", ".gitignore", "deep/er/nested.txt"):
        assert f"b/{path}" in change, path
    assert "debug.log" not in change  # ignored files are not the agent's work
    bare = str(host.root / "acme" / "widgets.git")
    assert git("--git-dir", bare, "rev-parse", f"refs/heads/ringfence/{session_id}").stdout.strip() == pushed
    shown = git("--git-dir", bare, "show", "-s", "--format=%an|%ae|%cn|%s", pushed).stdout.strip()
    assert shown == f"Ada Lovelace|{user.id}@users.ringfence.invalid|ringfence|ringfence: uncommitted work of " \
                    f"session {session_id}"  # fmt: skip
    files = git("--git-dir", bare, "show", "--name-only", "--format=", pushed).stdout.split()
    assert sorted(files) == [".gitignore", "deep/er/nested.txt", "file0.txt", "untracked.txt"]


def test_a_huge_change_is_kept_cut_and_the_turn_still_ends(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A hostile agent writes a 40 MB file and commits nothing: the capture reads at most what the store keeps of
    one item (never the whole diff into the server's memory), says it was cut, and the turn ends normally."""
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    env = Environment(network="none", agent=("sh", "-c", "{prompt}"))

    async def go() -> tuple[str, str]:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            live = await manager.start(caller(store, user.id), repo.id, env)
            write = "head -c 40000000 /dev/zero | tr '\\0' a | fold -w 99 > big.txt; echo wrote"
            output, final = await turn(manager, live.id, write)
            assert final.code == 0
            return live.id, output
        finally:
            await manager.shutdown()

    session_id, output = asyncio.run(go())
    assert "wrote" in output
    [change] = [r.text for r in content.read_content(store, session_id) if r.kind == "code_change"]
    assert len(change.encode()) <= MAX_CONTENT_BYTES and change.rstrip().endswith("the rest was not kept]")
