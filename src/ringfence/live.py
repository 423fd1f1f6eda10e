"""A session's live output on the wire, shared by the REST API and the web console: server-sent events.

A module of its own because the front ends (`api`, `web`) know nothing of each other and `sessions` knows
nothing of wire formats (ARCHITECTURE.md); both front ends speak this one format.

Owns: the event format (`event: KIND` / `data: JSON`) and `turn_events`, which starts one agent turn (so a refusal
— not running, deleted — is raised before any byte is sent) and then yields, for an agent preset, its typed
events (`text` {text}, `tool_call` {id, name, input, status, result}, `usage` {input_tokens, output_tokens},
`agent_error` {message}, `raw` {line}), for a command template `output` {stream, text} (a preset's stderr comes
as `output` too), and last `exit` {code, timed_out}. A consumer that stops reading closes the generator, which
ends the turn's command.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ringfence.agents.events import as_dict
from ringfence.sandbox import Exit, Output
from ringfence.sessions.manager import SessionManager


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def turn_events(manager: SessionManager, session_id: str, text: str) -> AsyncIterator[bytes]:
    """Awaits the turn's first event, then returns the whole turn as server-sent events."""
    stream = manager.prompt(session_id, text)
    first = await anext(stream)

    async def events() -> AsyncIterator[bytes]:
        event: Any = first
        try:
            while True:
                if isinstance(event, Exit):
                    yield sse("exit", {"code": event.code, "timed_out": event.timed_out})
                elif isinstance(event, Output):
                    yield sse("output", {"stream": event.stream, "text": event.data.decode("utf-8", "replace")})
                else:
                    yield sse(event.kind, as_dict(event))
                try:
                    event = await anext(stream)
                except StopAsyncIteration:
                    return
        finally:
            await stream.aclose()

    return events()
