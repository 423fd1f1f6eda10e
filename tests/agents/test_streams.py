"""The stream parsers on recorded real streams (Claude Code 2.1.337 stream-json with partial messages; Codex 0.171.0
`exec --json`, both against the stand-in provider), and for all inputs: cut anywhere, malformed, of unknown types,
they never raise, and the readable transcript never holds raw JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.agents.events import AgentError, Raw, Text, ToolCall, Usage, as_dict, from_dict, transcript
from ringfence.agents.streams import MAX_LINE, ClaudeStream, CodexStream, Lines

DATA = Path(__file__).parent / "data"
RECORDED = {"claude-code": (ClaudeStream, DATA / "claude-code.jsonl"), "codex": (CodexStream, DATA / "codex.jsonl")}


def parse(parser_type: type, data: bytes, step: int | None = None) -> list:
    parser = parser_type()
    events = []
    if step is None:
        events += parser.feed(data)
    else:
        for start in range(0, len(data), step):
            events += parser.feed(data[start : start + step])
    return events + parser.close()


def test_claude_codes_stream_becomes_text_a_tool_call_and_usage() -> None:
    events = parse(ClaudeStream, RECORDED["claude-code"][1].read_bytes())
    text = "".join(e.text for e in events if isinstance(e, Text))
    assert text == "Running `echo hi > made.txt`.The command ran. Prompts so far: 1."  # deltas, not repeated
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.input, c.status) for c in calls] == [
        ("Bash", "echo hi > made.txt", "running"),
        ("Bash", "echo hi > made.txt", "ok"),
    ]
    assert calls[1].result == "(Bash completed with no output)"
    assert [e for e in events if isinstance(e, Usage)] == [Usage(25107, 15)]
    assert not [e for e in events if isinstance(e, Raw | AgentError)]


def test_codexs_stream_becomes_text_a_tool_call_and_usage() -> None:
    events = parse(CodexStream, RECORDED["codex"][1].read_bytes())
    assert [type(e).__name__ for e in events] == ["Text", "ToolCall", "ToolCall", "Text", "Usage"]
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls[0].name == "shell" and "echo hi > made.txt" in calls[0].input
    assert [c.status for c in calls] == ["running", "ok"]
    assert events[-1] == Usage(30840, 15)


@pytest.mark.parametrize("agent", sorted(RECORDED))
@pytest.mark.parametrize("step", [1, 7, 4096])
def test_a_stream_cut_anywhere_parses_the_same(agent: str, step: int) -> None:
    parser_type, path = RECORDED[agent]
    data = path.read_bytes()
    assert parse(parser_type, data, step) == parse(parser_type, data)


@pytest.mark.parametrize("agent", sorted(RECORDED))
def test_the_transcript_is_readable_and_events_round_trip(agent: str) -> None:
    parser_type, path = RECORDED[agent]
    events = parse(parser_type, path.read_bytes())
    text = transcript(events)
    assert '{"type"' not in text and "▸" in text and "↳ ok" in text
    assert [from_dict(json.loads(json.dumps(as_dict(e)))) for e in events] == events


def test_an_error_result_and_an_error_record_become_agent_errors() -> None:
    claude = b'{"type":"result","subtype":"success","is_error":true,"result":"API Error: 403 not configured"}\n'
    assert parse(ClaudeStream, claude) == [AgentError("API Error: 403 not configured")]
    codex = b'{"type":"turn.failed","error":{"message":"unexpected status 403"}}\n{"type":"error","message":"x"}\n'
    assert parse(CodexStream, codex) == [AgentError("unexpected status 403"), AgentError("x")]


def test_unknown_and_malformed_lines_are_kept_as_raw_and_cut() -> None:
    events = parse(CodexStream, b'not json\n{"type":"brand.new","x":1}\n[1,2]\n{"type":"item.completed","item":5}\n')
    assert [type(e) for e in events] == [Raw, Raw, Raw, Raw]
    long = parse(ClaudeStream, b'{"type":"surprise","pad":"' + b"x" * 10_000 + b'"}\n')
    assert len(long) == 1 and isinstance(long[0], Raw) and len(long[0].line) <= 2000


def test_a_line_longer_than_the_limit_is_cut_not_held() -> None:
    lines = Lines(limit=100)
    assert lines.feed(b"a" * 60) == []
    assert lines.feed(b"b" * 60) == [None]  # cut: reported once, its bytes dropped
    assert lines.feed(b"c" * 1000) == []
    assert lines.feed(b"c\nnext\n") == ["next"]
    assert MAX_LINE >= 2**20


_pieces = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"\n",
            b'{"type":"stream_event","event":{"delta":{"type":"text_delta","text":"hi"}}}\n',
            b'{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t","name":"Bash","input":5}]}}\n',
            b'{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":null}]}}\n',
            b'{"type":"result","usage":{"input_tokens":"x"}}\n',
            b'{"type":"item.completed","item":{"type":"command_execution","exit_code":"?"}}\n',
            b'{"type":"turn.completed","usage":null}\n',
            b'{"type":"assistant","message":null}\n',
            b"\xff\xfe{\n",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_pieces, max_size=30), parser=st.sampled_from([ClaudeStream, CodexStream]))
def test_no_input_crashes_a_parser(pieces: list[bytes], parser: type) -> None:
    events = parse(parser, b"".join(pieces))
    for event in events:
        assert from_dict(as_dict(event)) == event
    transcript(events)
