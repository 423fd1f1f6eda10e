"""One agent turn in a session's sandbox, and the agent's state between turns and sandboxes (issue 15).

Owns: running the agent's argv in the clone and turning its output into what the caller streams (typed events
through the preset's parser, or the raw output of a template) and what the session keeps (the readable
transcript and the typed events as JSON lines, bounded; never the agent's raw JSON lines); and the agent's state
directory (`AGENT_HOME`, outside the repository) as an archive: read out of the sandbox after a turn, bounded by what
the store keeps of one item, and put back into a new sandbox at resume. The archive is made and unpacked inside the
sandbox by its own `tar`, never on the host.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from ringfence.agents.events import AgentEvent, as_dict, transcript
from ringfence.agents.presets import AGENT_HOME, Agent
from ringfence.sandbox.base import Sandbox
from ringfence.sandbox.spec import Exit, Output
from ringfence.sessions.capture import REPO
from ringfence.store.content import MAX_CONTENT_BYTES

MAX_KEPT = 4 * 2**20  # what one turn keeps of its output, and of its events (the stream itself is not cut)
_HOME = AGENT_HOME.removeprefix("/workspace/")
_ARCHIVE = ".ringfence-agent-state.tgz"


@dataclass
class TurnRecord:
    """What a turn leaves to keep: its exit, the readable transcript, the typed events as JSON lines."""

    exit: Exit | None = None
    raw: bytearray = field(default_factory=bytearray)  # a template's output, or a preset's stderr
    events: list[AgentEvent] = field(default_factory=list)
    events_size: int = 0
    typed: bool = False

    def add(self, event: AgentEvent) -> None:
        size = len(json.dumps(as_dict(event)))
        if self.events_size + size <= MAX_KEPT:
            self.events.append(event)
            self.events_size += size

    def output(self) -> str:
        said = self.raw.decode("utf-8", "replace")
        if not self.typed:
            return said
        return transcript(self.events) + (f"\n[stderr]\n{said}" if said.strip() else "")

    def events_text(self) -> str:
        return "\n".join(json.dumps(as_dict(event)) for event in self.events)


async def run_turn(
    sandbox: Sandbox, agent: Agent, argv: list[str], record: TurnRecord
) -> AsyncGenerator[Output | Exit | AgentEvent, None]:
    """Runs the agent in the clone; yields typed events (a preset with a parser) or output chunks, then the Exit.
    Fills `record` as it goes."""
    parser = agent.parser() if agent.parser is not None else None
    record.typed = parser is not None
    async with contextlib.aclosing(sandbox.exec(argv, cwd=REPO)) as stream:
        async for event in stream:
            if isinstance(event, Exit):
                for typed in parser.close() if parser is not None else []:
                    record.add(typed)
                    yield typed
                record.exit = event
            elif parser is not None and event.stream == "stdout":
                for typed in parser.feed(event.data):
                    record.add(typed)
                    yield typed
                continue
            elif len(record.raw) < MAX_KEPT:
                record.raw.extend(event.data[: MAX_KEPT - len(record.raw)])
            yield event


async def save_state(sandbox: Sandbox) -> bytes | None:
    """The agent's state directory as a gzip'd tar, read as it streams; None when there is none, or when it is
    larger than the store keeps of one item (then it is not kept, and the next sandbox starts a new conversation)."""
    command = ["tar", "-C", "/workspace", "--use-compress-program=gzip -1", "-cf", "-", _HOME]
    kept, code = bytearray(), -1
    async with contextlib.aclosing(sandbox.exec(command, timeout=300)) as events:
        async for event in events:
            if isinstance(event, Exit):
                code = event.code
            elif event.stream == "stdout":
                kept.extend(event.data)
                if len(kept) > MAX_CONTENT_BYTES:
                    return None
    return bytes(kept) if code == 0 and kept else None


async def restore_state(sandbox: Sandbox, archive: bytes) -> bool:
    """Put a kept state back (in a new sandbox, before its first turn); whether it unpacked."""
    await sandbox.write_file(_ARCHIVE, archive)
    done = await sandbox.run(
        ["sh", "-c", 'tar -C /workspace -xzf "$1"; code=$?; rm -f "$1"; exit $code', "restore", _ARCHIVE],
        timeout=300,
    )
    return done.exit.code == 0
