"""What an agent did in a turn, as typed events: the one vocabulary of the API's stream, the CLI, the console and
what a session keeps.

Owns: `Text` (assistant text, incremental), `ToolCall` (a tool's name, a summary of its input, then of its result
and its status), `Usage` (tokens the turn used), `AgentError`, and `Raw` (a line of the agent's stream that no
parser understood, kept short), their JSON form (`as_dict` / `from_dict`), and the readable transcript of a list
of them. Sans-I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

SUMMARY_CHARS = 300  # what a tool call's input keeps
RESULT_CHARS = 2000  # what a tool call's result keeps
RAW_CHARS = 2000  # what an unparsed line keeps

ToolStatus = Literal["running", "ok", "error"]


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the assistant's answer, in the order it streamed."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the agent called: sent once when it starts (`running`) and once when its result is back."""

    id: str
    name: str
    input: str  # a one-line summary of what the tool was asked
    status: ToolStatus = "running"
    result: str = ""  # a summary of what it gave back
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the turn used, as the agent reported them at its end."""

    input_tokens: int
    output_tokens: int
    kind: Literal["usage"] = "usage"


@dataclass(frozen=True, slots=True)
class AgentError:
    """The agent said something went wrong (a refused model call, a failed turn)."""

    message: str
    kind: Literal["agent_error"] = "agent_error"


@dataclass(frozen=True, slots=True)
class Raw:
    """A line of the agent's stream no parser understood (malformed, cut, or of an unknown type), kept short."""

    line: str
    kind: Literal["raw"] = "raw"


AgentEvent = Text | ToolCall | Usage | AgentError | Raw
_TYPES: dict[str, type[AgentEvent]] = {"text": Text, "tool_call": ToolCall, "usage": Usage, "agent_error": AgentError}
_TYPES["raw"] = Raw


def as_dict(event: AgentEvent) -> dict[str, Any]:
    return asdict(event)


def from_dict(data: Mapping[str, Any]) -> AgentEvent:
    """An event back from its JSON form (what a session keeps); a ValueError for anything else."""
    kind = data.get("kind")
    cls = _TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown agent event kind {kind!r}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"agent event {kind}: {exc}") from None


def summary(value: Any, limit: int = SUMMARY_CHARS) -> str:
    """A tool input or result on one line: the field that says what it does when there is one, else compact JSON."""
    if isinstance(value, Mapping):
        for key in ("command", "cmd", "file_path", "path", "pattern", "url", "query", "description", "prompt"):
            found = value.get(key)
            if isinstance(found, str) and found:
                return cut(" ".join(found.split()), limit)
            if isinstance(found, list) and found and all(isinstance(part, str) for part in found):
                return cut(" ".join(found), limit)
    if isinstance(value, list):
        texts = [str(v.get("text")) for v in value if isinstance(v, Mapping) and "text" in v]
        if texts:
            return cut(" ".join(" ".join(texts).split()), limit)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return cut(" ".join(text.split()), limit)


def transcript(events: Iterable[AgentEvent]) -> str:
    """What a person reads of a turn: the assistant's text as it was written, each tool call on its own lines
    (what it ran, then how it ended), errors and usage said plainly. Raw lines are left out."""
    out: list[str] = []
    for event in events:
        if isinstance(event, Text):
            out.append(event.text)
        elif isinstance(event, ToolCall):
            if event.status == "running":
                out.append(f"\n▸ {event.name}: {event.input}\n")
            else:
                said = f": {cut(event.result, 400)}" if event.result else ""
                out.append(f"  ↳ {event.status}{said}\n")
        elif isinstance(event, AgentError):
            out.append(f"\n[error] {event.message}\n")
        elif isinstance(event, Usage):
            out.append(f"\n[usage] {event.input_tokens} input tokens, {event.output_tokens} output tokens\n")
    return "".join(out)
