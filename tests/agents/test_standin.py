"""The stand-in providers speak each API's streaming wire format: Messages with a streaming `tool_use` block,
Responses with streaming function and freeform (custom) tool calls, and they read a conversation's turns."""

from __future__ import annotations

import json

import httpx

from ringfence.testing.providers import StandInProvider, decide, read_turn


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_messages_streams_text_then_a_tool_use_whose_input_arrives_in_pieces() -> None:
    with StandInProvider("anthropic") as provider:
        body = {"model": "m", "stream": True, "tools": [{"name": "Bash"}],
                "messages": [{"role": "user", "content": "do it\nrun: ls -la"}]}  # fmt: skip
        answer = httpx.post(f"{provider.url}/v1/messages", json=body, headers={"x-api-key": "k"})
    events = _events(answer.text)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    pieces = [e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert len(pieces) > 1 and json.loads("".join(pieces))["command"] == "ls -la"
    assert events[-2]["delta"]["stop_reason"] == "tool_use" and events[-2]["usage"]["output_tokens"] > 0
    assert provider.seen[0].header("x-api-key") == "k"


def test_responses_streams_function_and_freeform_calls_and_completes_with_usage() -> None:
    with StandInProvider("openai") as provider:
        for tools, delta, field in (
            ([{"type": "function", "name": "shell"}], "response.function_call_arguments.delta", "arguments"),
            ([{"type": "custom", "name": "exec"}], "response.custom_tool_call_input.delta", "input"),
        ):
            body = {"model": "m", "stream": True, "tools": tools, "input": "run: echo hi"}
            events = _events(httpx.post(f"{provider.url}/responses", json=body).text)
            assert [e for e in events if e["type"] == delta]
            done = events[-1]
            assert done["type"] == "response.completed" and done["response"]["usage"]["total_tokens"] > 0
            call = done["response"]["output"][-1]
            assert "echo hi" in call[field]


def test_a_conversation_is_read_in_either_shape() -> None:
    messages = {"tools": [{"name": "Bash"}], "messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                     {"type": "text", "text": "second\nrun: true"}]},
    ]}  # fmt: skip
    turn = read_turn(messages)
    assert turn.user_prompts == 2 and turn.prompt.endswith("run: true") and decide(turn).tool == "Bash"
    back = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "done"}]}
    result = {**messages, "messages": [*messages["messages"], {"role": "assistant", "content": "…"}, back]}
    assert read_turn(result).tool_result is not None and decide(read_turn(result)).tool is None
    responses = {"input": [{"type": "additional_tools", "tools": [{"type": "namespace", "tools": [{"name": "exec"}]}]},
                           {"role": "user", "content": [{"type": "input_text", "text": "run: ls"}]}]}  # fmt: skip
    assert decide(read_turn(responses)).tool == "exec"
