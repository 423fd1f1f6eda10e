"""A session as a conversation for the console: prompts, the assistant's messages, tool calls, errors, usage.

Owns: turning what a session kept (prompts, typed events, transcripts; ringfence.store.content) into one entry a
turn, each a list of items the template shows: `text` (consecutive assistant text joined into one message),
`tool` (a call with its input and, once back, its status and result: shown collapsed), `error`, `usage`, and
`output` (a command template's plain output, which has no typed events). Pure: no I/O, no HTML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ringfence.agents.events import AgentError, AgentEvent, Raw, Text, ToolCall, Usage, from_dict
from ringfence.store.content import ContentRecord


@dataclass
class Turn:
    number: int
    prompt: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)


def _events(text: str) -> list[AgentEvent]:
    found = []
    for line in text.splitlines():
        try:
            found.append(from_dict(json.loads(line)))
        except ValueError:
            continue  # a line the store kept but this version does not know: left out of the view
    return found


def items_of(events: Sequence[AgentEvent]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    tools: dict[str, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, Text):
            if items and items[-1]["kind"] == "text":
                items[-1]["text"] += event.text
            else:
                items.append({"kind": "text", "text": event.text})
        elif isinstance(event, ToolCall):
            known = tools.get(event.id)
            if known is None or not event.id:
                known = {"kind": "tool", "name": event.name, "input": event.input, "status": event.status, "result": ""}
                tools[event.id] = known
                items.append(known)
            known.update(status=event.status, result=event.result or known["result"])
        elif isinstance(event, AgentError):
            items.append({"kind": "error", "text": event.message})
        elif isinstance(event, Usage):
            items.append({"kind": "usage", "input": event.input_tokens, "output": event.output_tokens})
        elif isinstance(event, Raw):
            continue
    for item in items:
        if item["kind"] == "text":
            item["text"] = item["text"].strip()
    return [item for item in items if item["kind"] != "text" or item["text"]]


def conversation(kept: Sequence[ContentRecord]) -> list[Turn]:
    turns: dict[int, Turn] = {}
    has_events = {record.turn for record in kept if record.kind == "events"}
    for record in kept:
        turn = turns.setdefault(record.turn, Turn(record.turn))
        if record.kind == "prompt":
            turn.prompt = record.text
        elif record.kind == "events":
            turn.items += items_of(_events(record.text))
        elif record.kind == "output" and record.turn not in has_events and record.text.strip():
            turn.items.append({"kind": "output", "text": record.text})
    return [turns[n] for n in sorted(turns)]
