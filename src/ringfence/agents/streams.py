"""Parsers of the agents' structured output streams into typed events (ringfence.agents.events).

Owns: `Lines` (bytes in, whole lines out, a bounded buffer: a line longer than `MAX_LINE` is cut and reported, never
held whole), `ClaudeStream` (Claude Code's `--output-format stream-json --verbose --include-partial-messages`),
and `CodexStream` (`codex exec --json`). Each takes the agent's stdout as it arrives, `feed(bytes)` returns the
events it completed, `close()` the rest. Never raises on what the agent prints: a line that is not JSON, is cut,
or has an unknown type becomes a `Raw` event; events that carry nothing for a reader (status pings, the init
record, message boundaries) are dropped. Sans-I/O.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ringfence.agents.events import (
    RAW_CHARS,
    RESULT_CHARS,
    AgentError,
    AgentEvent,
    Raw,
    Text,
    ToolCall,
    ToolStatus,
    Usage,
    cut,
    summary,
)

MAX_LINE = 8 * 2**20  # a longer line (a tool result holding a huge file) is cut, not buffered whole


class StreamParser(Protocol):
    def feed(self, data: bytes) -> list[AgentEvent]: ...

    def close(self) -> list[AgentEvent]: ...


class Lines:
    """Splits a byte stream into lines of text, holding at most `limit` bytes of an unfinished line."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._skipping = False  # inside a line that was cut: dropped up to its end

    def feed(self, data: bytes) -> list[str | None]:
        """Whole lines (decoded, without the newline); None stands for a line that was cut."""
        lines: list[str | None] = []
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            if self._skipping:
                self._skipping = False
            else:
                self._buffer += data[start:end]
                lines.append(self._buffer.decode("utf-8", "replace"))
            self._buffer.clear()
            start = end + 1
        if not self._skipping:
            self._buffer += data[start:]
            if len(self._buffer) > self.limit:
                self._buffer.clear()
                self._skipping = True
                lines.append(None)
        return lines

    def close(self) -> list[str | None]:
        rest = self._buffer.decode("utf-8", "replace")
        self._buffer.clear()
        return [rest] if rest.strip() else []


class _JsonLines:
    """What both parsers share: lines to JSON objects, anything else to `Raw`."""

    def __init__(self) -> None:
        self._lines = Lines()

    def feed(self, data: bytes) -> list[AgentEvent]:
        return self._each(self._lines.feed(data))

    def close(self) -> list[AgentEvent]:
        return self._each(self._lines.close())

    def _each(self, lines: list[str | None]) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        for line in lines:
            if line is None:
                events.append(Raw(f"[a line longer than {MAX_LINE} bytes was cut]"))
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                events.append(Raw(cut(line, RAW_CHARS)))
                continue
            if not isinstance(record, dict):
                events.append(Raw(cut(line, RAW_CHARS)))
                continue
            try:
                events += self.record(record, line)
            except (AttributeError, KeyError, TypeError, ValueError):  # a known type in an unexpected shape
                events.append(Raw(cut(line, RAW_CHARS)))
        return events

    def record(self, record: dict[str, Any], line: str) -> list[AgentEvent]:
        raise NotImplementedError


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class ClaudeStream(_JsonLines):
    """Claude Code's stream-json. With partial messages, text comes from `stream_event` text deltas (and the whole
    `assistant` text blocks that repeat it are skipped); without, from the `assistant` messages. Tool calls come
    from `tool_use` blocks and their results from the `tool_result` blocks of the next `user` message; the final
    `result` record gives usage, and an error when the turn failed."""

    _QUIET = frozenset({"system", "rate_limit_event", "keep_alive", "control_request", "control_response"})

    def __init__(self) -> None:
        super().__init__()
        self._streamed_text = False
        self._tools: dict[str, ToolCall] = {}

    def record(self, record: dict[str, Any], line: str) -> list[AgentEvent]:
        kind = record.get("type")
        if kind == "stream_event":
            event = record.get("event") or {}
            delta = event.get("delta") or {} if isinstance(event, dict) else {}
            if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                self._streamed_text = True
                return [Text(delta["text"])]
            return []
        if kind == "assistant":
            return self._assistant(record)
        if kind == "user":
            return self._results(record)
        if kind == "result":
            return self._result(record)
        if kind in self._QUIET:
            return []
        return [Raw(cut(line, RAW_CHARS))]

    def _assistant(self, record: dict[str, Any]) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        message = record.get("message") or {}
        for block in _dicts(message.get("content")):
            if block.get("type") == "text" and not self._streamed_text and isinstance(block.get("text"), str):
                events.append(Text(block["text"]))
            elif block.get("type") == "tool_use":
                call = ToolCall(str(block.get("id", "")), str(block.get("name", "tool")), summary(block.get("input")))
                self._tools[call.id] = call
                events.append(call)
        if record.get("error") and not events:
            events.append(AgentError(str(record["error"])))
        return events

    def _results(self, record: dict[str, Any]) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        message = record.get("message") or {}
        for block in _dicts(message.get("content")):
            if block.get("type") != "tool_result":
                continue
            call_id = str(block.get("tool_use_id", ""))
            started = self._tools.pop(call_id, ToolCall(call_id, "tool", ""))
            status: ToolStatus = "error" if block.get("is_error") else "ok"
            result = summary(block.get("content"), RESULT_CHARS)
            events.append(ToolCall(call_id, started.name, started.input, status, result))
        return events

    def _result(self, record: dict[str, Any]) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        usage = record.get("usage")
        if isinstance(usage, dict):
            events.append(Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)))
        if record.get("is_error") or record.get("subtype") not in (None, "success"):
            said = record.get("result") or record.get("errors") or record.get("subtype") or "the turn failed"
            events.append(AgentError(cut(said if isinstance(said, str) else json.dumps(said), RESULT_CHARS)))
        return events


class CodexStream(_JsonLines):
    """`codex exec --json`: thread and turn records, and items (agent messages, command executions, file
    changes, tool calls) that start, update and complete; `turn.completed` carries usage."""

    _QUIET = frozenset({"thread.started", "turn.started"})

    def record(self, record: dict[str, Any], line: str) -> list[AgentEvent]:
        kind = record.get("type")
        if kind == "item.updated":  # progress of an item already announced
            return []
        if kind in ("item.started", "item.completed"):
            item = record.get("item")
            if not isinstance(item, dict):
                return [Raw(cut(line, RAW_CHARS))]
            return self._item(item, done=kind == "item.completed")
        if kind == "turn.completed":
            usage = record.get("usage") or {}
            return [Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))]
        if kind == "turn.failed":
            error = record.get("error") or {}
            return [AgentError(str(error.get("message") if isinstance(error, dict) else error))]
        if kind == "error":
            return [AgentError(str(record.get("message", "")))]
        if kind in self._QUIET:
            return []
        return [Raw(cut(line, RAW_CHARS))]

    def _item(self, item: dict[str, Any], *, done: bool) -> list[AgentEvent]:
        kind, item_id = item.get("type"), str(item.get("id", ""))
        if kind == "agent_message":
            return [Text(str(item.get("text", "")) + "\n")] if done else []
        if kind == "error":
            return [AgentError(str(item.get("message", "")))] if done else []
        if kind in ("reasoning", "todo_list"):
            return []
        if kind == "command_execution":
            name, what = "shell", summary(item.get("command", ""))
            result = str(item.get("aggregated_output") or "")
            failed = item.get("status") == "failed" or item.get("exit_code") not in (0, None)
        elif kind == "file_change":
            changes = _dicts(item.get("changes"))
            name = "edit"
            what = summary(", ".join(f"{c.get('kind', '')} {c.get('path', '')}".strip() for c in changes))
            result, failed = "", item.get("status") == "failed"
        elif kind == "mcp_tool_call":
            name = f"{item.get('server', 'mcp')}.{item.get('tool', 'tool')}"
            what, result = summary(item.get("arguments")), summary(item.get("result") or item.get("error") or "")
            failed = item.get("status") == "failed"
        elif kind == "web_search":
            name, what, result, failed = "web_search", summary(item.get("query", "")), "", False
        else:
            return [Raw(cut(json.dumps(item), RAW_CHARS))] if done else []
        if not done:
            return [ToolCall(item_id, name, what)]
        status: ToolStatus = "error" if failed else "ok"
        return [ToolCall(item_id, name, what, status, cut(result, RESULT_CHARS))]
