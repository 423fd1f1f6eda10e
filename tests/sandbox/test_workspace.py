"""Host-side workspace access never follows what the agent put there."""

from __future__ import annotations

import pytest

from ringfence.sandbox import BubblewrapBackend, SandboxError, SandboxSpec
from tests.sandbox.conftest import run


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        ("ln -s /etc/hostname link", ("read", "link"), "Too many levels of symbolic links"),
        ("ln -s /etc dir", ("read", "dir/hostname"), "not a directory"),
        ("ln -s /tmp out", ("write", "out/planted"), "not a directory"),
        ("ln -s /tmp/x target", ("write", "target"), "Too many levels of symbolic links"),
        ("mkfifo pipe", ("read", "pipe"), "not a regular file"),
        ("true", ("read", "../../etc/hostname"), "must be relative"),
        ("true", ("write", "/etc/evil"), "must be relative"),
        ("true", ("read", "missing"), "No such file"),
    ],
)
def test_agent_made_links_and_tricks_are_refused(
    backend: BubblewrapBackend, setup: str, action: tuple, message: str
) -> None:
    async def go() -> None:
        sandbox = await backend.create(SandboxSpec())
        try:
            assert (await sandbox.run(["sh", "-c", setup])).code == 0
            with pytest.raises(SandboxError, match=message):
                if action[0] == "read":
                    await sandbox.read_file(action[1])
                else:
                    await sandbox.write_file(action[1], b"x")
        finally:
            await sandbox.destroy()

    run(go())


def test_files_round_trip_and_belong_to_the_sandbox(backend: BubblewrapBackend) -> None:
    async def go() -> bytes:
        sandbox = await backend.create(SandboxSpec())
        try:
            await sandbox.write_file("a/b/c.txt", b"data")
            done = await sandbox.run(["sh", "-c", "cat a/b/c.txt && echo more >> a/b/c.txt"])
            assert done.code == 0, done.stderr
            return await sandbox.read_file("a/b/c.txt")
        finally:
            await sandbox.destroy()

    assert run(go()) == b"datamore\n"
