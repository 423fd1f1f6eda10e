"""Stand-in model providers on loopback, speaking the real wire formats, for the tests and the benchmarks.

A model provider cannot exist on this machine, so these play one: `anthropic` answers the Messages API
(`POST /v1/messages`, JSON or a server-sent event stream with text deltas and streaming `tool_use` blocks),
`openai` answers the Responses API (`POST /v1/responses`, streaming `function_call` items) and Chat Completions.
They are scripted, not clever: when the request offers a shell tool and the newest user text holds a line
`run: COMMAND`, the answer calls that tool with COMMAND; once the tool's result comes back (or without such a
line) the answer is text that says what it saw, including how many user prompts the conversation carried, so a
test sees continuity from the answer alone. Every request is recorded (path, headers, parsed body) for the tests'
checks on keys and placeholders.

Written on the standard library's threading HTTP server: it runs beside async or sync tests and a benchmark
without an event loop of its own, and nothing here needs more than HTTP/1.1 with chunked streaming.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RUN = re.compile(r"^\s*run:\s*(.+?)\s*$", re.MULTILINE)
# The shell tools the stand-in knows how to call, by name: Claude Code's `Bash`; Codex's `exec` (a freeform tool
# whose input is JavaScript calling `tools.exec_command`), and the function shapes of other agents.
SHELL_TOOLS = ("Bash", "exec", "shell", "shell_command", "exec_command")


@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def _texts(content: Any) -> list[str]:
    """The text parts of one message's content (a string, or a list of typed blocks in either API's shape)."""
    if isinstance(content, str):
        return [content]
    found = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            found.append(block["text"])
    return found


def _tool_names(tools: Any) -> tuple[str, ...]:
    """Tool names, namespaces unfolded."""
    names: list[str] = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            names.append(str(tool.get("name") or tool.get("type") or ""))
            names += _tool_names(tool.get("tools"))
    return tuple(names)


@dataclass(frozen=True)
class Turn:
    """What the newest request asks of the model, read from its conversation."""

    prompt: str  # the newest user text
    user_prompts: int  # how many user texts the conversation holds (continuity)
    tool_result: str | None  # the result of the tool the previous answer called, if that is what came back
    tools: tuple[str, ...]  # the names of the tools offered


def read_turn(body: dict[str, Any]) -> Turn:
    """The newest user text, the count of user texts, a pending tool result, in the Messages or Responses shape."""
    tools = _tool_names(body.get("tools"))
    items = body.get("messages")
    if items is None:
        raw = body.get("input")
        items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw or []
    prompts: list[str] = []
    result: str | None = None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "additional_tools":  # Responses: tools offered inside the conversation (Codex)
            tools += _tool_names(item.get("tools"))
            continue
        if kind in ("function_call_output", "custom_tool_call_output"):  # Responses: a tool's result
            result = str(item.get("output"))
            continue
        if kind in ("function_call", "custom_tool_call"):
            result = None
            continue
        if item.get("role") == "assistant":
            result = None
            continue
        if item.get("role") != "user":
            continue
        content = item.get("content")
        blocks = content if isinstance(content, list) else []
        tool_results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if tool_results:  # Messages: a tool's result comes back in a user message
            result = json.dumps(tool_results[-1].get("content"))[:400]
            continue
        text = "\n".join(t for t in _texts(content) if not t.lstrip().startswith(("<system-reminder>", "<env")))
        if text.strip():
            prompts.append(text)
            result = None
    return Turn(prompts[-1] if prompts else "", len(prompts), result, tools)


@dataclass(frozen=True)
class Answer:
    """What the stand-in answers: text, and optionally one call of a shell tool."""

    text: str
    tool: str | None = None
    tool_input: dict[str, Any] | str | None = None  # a string: a freeform (custom) tool's input


def decide(turn: Turn) -> Answer:
    """The script: a shell tool call for `run: COMMAND` when one is offered and no result is back yet; else text."""
    command = _RUN.search(turn.prompt)
    shell = next((name for name in SHELL_TOOLS if name in turn.tools), None)
    if command and shell and turn.tool_result is None:
        line = command.group(1)
        arguments: dict[str, Any]
        if shell == "Bash":
            arguments = {"command": line, "description": "run the requested command"}
        elif shell == "shell":
            arguments = {"command": ["bash", "-lc", line]}
        elif shell == "exec_command":
            arguments = {"cmd": line}
        elif shell == "exec":
            script = f"const done = await tools.exec_command({json.dumps({'cmd': line})});\ntext(done.output);"
            return Answer(f"Running `{line}`.", shell, script)
        else:
            arguments = {"command": line}
        return Answer(f"Running `{line}`.", shell, arguments)
    if turn.tool_result is not None:
        return Answer(f"The command ran. Prompts so far: {turn.user_prompts}.")
    return Answer(f"Hello from the stand-in. Prompts so far: {turn.user_prompts}. You said: {turn.prompt[-200:]}")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]


def anthropic_events(answer: Answer, model: str, input_tokens: int) -> Iterator[bytes]:
    """A Messages API stream: message_start, a text block in word deltas, a tool_use block whose input arrives as
    partial JSON, message_delta with the stop reason and usage, message_stop."""
    output_tokens = max(1, len(answer.text) // 4)
    message: dict[str, Any] = {"id": "msg_standin", "type": "message", "role": "assistant", "model": model}
    message["content"] = []
    message |= {"stop_reason": None, "stop_sequence": None}
    message["usage"] = {"input_tokens": input_tokens, "output_tokens": 1}
    yield _sse("message_start", {"type": "message_start", "message": message})
    yield _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for word in _words(answer.text):
        text_delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
        yield _sse("content_block_delta", text_delta)
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    if answer.tool is not None:
        block = {"type": "tool_use", "id": f"toolu_standin{input_tokens}", "name": answer.tool, "input": {}}
        yield _sse("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block})
        encoded = json.dumps(answer.tool_input)
        for start in range(0, len(encoded), 16):
            partial = {"type": "input_json_delta", "partial_json": encoded[start : start + 16]}
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": partial})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": 1})
    stop = "tool_use" if answer.tool else "end_turn"
    delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
    delta["usage"] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    yield _sse("message_delta", delta)
    yield _sse("message_stop", {"type": "message_stop"})


def anthropic_message(answer: Answer, model: str, input_tokens: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": answer.text}]
    if answer.tool is not None:
        content.append({"type": "tool_use", "id": "toolu_standin", "name": answer.tool, "input": answer.tool_input})
    return {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if answer.tool else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": max(1, len(answer.text) // 4)},
    }


def responses_events(answer: Answer, model: str, input_tokens: int, serial: int) -> Iterator[bytes]:
    """A Responses API stream: response.created, a message item with output_text deltas, a function_call item
    with argument deltas, response.completed with the whole output and usage."""
    output_tokens = max(1, len(answer.text) // 4)
    response: dict[str, Any] = {"id": f"resp_standin{serial}", "object": "response", "model": model}
    response |= {"status": "in_progress", "output": []}
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse(kind, {"type": kind, "sequence_number": next(sequence), **fields})

    yield event("response.created", response=response)
    yield event("response.in_progress", response=response)
    item_id = f"msg_standin{serial}"
    item: dict[str, Any] = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant"}
    yield event("response.output_item.added", output_index=0, item={**item, "content": []})
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=part)
    for word in _words(answer.text):
        yield event("response.output_text.delta", item_id=item_id, output_index=0, content_index=0, delta=word)
    yield event("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=answer.text)
    done_part = {"type": "output_text", "text": answer.text, "annotations": []}
    yield event("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=done_part)
    message = {**item, "status": "completed", "content": [done_part]}
    yield event("response.output_item.done", output_index=0, item=message)
    output: list[dict[str, Any]] = [message]
    if answer.tool is not None:
        # a freeform tool (Codex's `exec`) is a custom_tool_call whose `input` streams; a function's `arguments` do
        freeform = isinstance(answer.tool_input, str)
        kind, field, stream = (
            ("custom_tool_call", "input", "response.custom_tool_call_input")
            if freeform
            else ("function_call", "arguments", "response.function_call_arguments")
        )
        value = answer.tool_input if isinstance(answer.tool_input, str) else json.dumps(answer.tool_input)
        call_id, item_id = f"call_standin{serial}", f"{'ctc' if freeform else 'fc'}_standin{serial}"
        call: dict[str, Any] = {"id": item_id, "type": kind, "status": "in_progress", "call_id": call_id}
        call |= {"name": answer.tool, field: ""}
        yield event("response.output_item.added", output_index=1, item=call)
        for start in range(0, len(value), 16):
            yield event(f"{stream}.delta", item_id=item_id, output_index=1, delta=value[start : start + 16])
        yield event(f"{stream}.done", item_id=item_id, output_index=1, **{field: value})
        call = {**call, "status": "completed", field: value}
        yield event("response.output_item.done", output_index=1, item=call)
        output.append(call)
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    usage |= {"total_tokens": input_tokens + output_tokens, "input_tokens_details": {"cached_tokens": 0}}
    usage["output_tokens_details"] = {"reasoning_tokens": 0}
    yield event("response.completed", response={**response, "status": "completed", "output": output, "usage": usage})


def chat_completion(answer: Answer, model: str, input_tokens: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    usage = {"prompt_tokens": input_tokens, "completion_tokens": max(1, len(answer.text) // 4)}
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    }


class StandInProvider:
    """One stand-in provider (`kind` anthropic or openai) on 127.0.0.1, recording every request in `seen`.
    `url` is its base URL in the shape that provider's SDK takes: no `/v1` for anthropic, with `/v1` for openai.
    `delay` (seconds) is waited before answering, for the budget and timing tests."""

    def __init__(self, kind: str, *, delay: float = 0.0) -> None:
        if kind not in ("anthropic", "openai"):
            raise ValueError(f"stand-in provider kind {kind!r} is not one of: anthropic, openai")
        self.kind, self.delay = kind, delay
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                provider._record(self, None)
                self._json(404, {"error": {"type": "not_found_error", "message": f"no route {self.path}"}})

            def do_HEAD(self) -> None:
                provider._record(self, None)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _body(self) -> bytes:
                if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = bytearray()
                while True:  # a body relayed as it streams comes chunked
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(body)
                    body += self.rfile.read(size)
                    self.rfile.readline()

            def do_POST(self) -> None:
                raw = self._body()
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                serial = provider._record(self, body if isinstance(body, dict) else None)
                if not isinstance(body, dict):
                    self._json(400, {"error": {"type": "invalid_request_error", "message": "body is not JSON"}})
                    return
                if provider.delay:
                    time.sleep(provider.delay)
                provider._answer(self, body, len(raw) // 4 + 1, serial)

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def _record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> int:
        with self._lock:
            self.seen.append(Seen(handler.command, handler.path, dict(handler.headers.items()), body))
            return len(self.seen)

    def model_requests(self) -> list[Seen]:
        """The requests that asked the model for an answer (not the agents' other calls)."""
        ends = ("/v1/messages", "/v1/responses", "/v1/chat/completions")
        return [s for s in self.seen if s.method == "POST" and s.path.split("?")[0].endswith(ends)]

    def _answer(self, handler: Any, body: dict[str, Any], input_tokens: int, serial: int) -> None:
        path = handler.path.split("?")[0]
        model = str(body.get("model") or "stand-in")
        answer = decide(read_turn(body))
        if path.endswith("/messages/count_tokens"):
            handler._json(200, {"input_tokens": input_tokens})
        elif path.endswith("/v1/messages") and self.kind == "anthropic":
            if body.get("stream"):
                self._stream(handler, anthropic_events(answer, model, input_tokens))
            else:
                handler._json(200, anthropic_message(answer, model, input_tokens))
        elif path.endswith("/v1/responses") and self.kind == "openai":
            self._stream(handler, responses_events(answer, model, input_tokens, serial))
        elif path.endswith("/v1/chat/completions") and self.kind == "openai":
            handler._json(200, chat_completion(answer, model, input_tokens))
        else:
            handler._json(404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})

    @staticmethod
    def _stream(handler: Any, events: Iterator[bytes]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for chunk in events:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StandInProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
