"""M3: what a model call used, read from the provider's answer as it streams (ringfence.gateway.usage), and the
gateway's audit record and budget built on it. Shapes are the providers' documented wire formats."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.gateway.usage import MAX_IN_FLIGHT, UsageMeter, requested_model
from tests.egress.harness import read_all, status_of
from tests.gateway.test_git_gateway import GatewayHarness

ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-x",'
    b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Hello"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":15}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
RESPONSES_STREAM = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1",'
    b'"usage":{"input_tokens":31,"output_tokens":9,"total_tokens":40}}}\n\n'
)
CHAT_JSON = b'{"id":"c1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
MESSAGES_JSON = b'{"id":"m1","content":[],"usage":{"input_tokens":3,"output_tokens":4}}'


@pytest.mark.parametrize(
    ("content_type", "answer", "counts"),
    [
        ("text/event-stream", ANTHROPIC_STREAM, (25, 15)),
        ("text/event-stream; charset=utf-8", RESPONSES_STREAM, (31, 9)),
        ("application/json", CHAT_JSON, (12, 7)),
        ("application/json", MESSAGES_JSON, (3, 4)),
        ("application/json", b"not json", (None, None)),
    ],
)
def test_usage_is_read_from_each_providers_answer(content_type: str, answer: bytes, counts: tuple) -> None:
    meter = UsageMeter()
    meter.begin(content_type)
    meter.feed(answer)
    meter.finish()
    assert (meter.input_tokens, meter.output_tokens) == counts


@given(st.sampled_from([ANTHROPIC_STREAM, RESPONSES_STREAM]), st.lists(st.integers(0, 2000), max_size=20))
def test_any_split_of_a_stream_gives_the_same_counts(stream: bytes, cuts: list[int]) -> None:
    whole, pieces = UsageMeter(), UsageMeter()
    whole.begin("text/event-stream")
    pieces.begin("text/event-stream")
    whole.feed(stream)
    last = 0
    for cut in sorted(min(c, len(stream)) for c in cuts):
        pieces.feed(stream[last:cut])
        last = cut
    pieces.feed(stream[last:])
    assert (pieces.input_tokens, pieces.output_tokens) == (whole.input_tokens, whole.output_tokens)


@settings(max_examples=300)
@given(st.sampled_from(["text/event-stream", "application/json"]), st.lists(st.binary(max_size=300), max_size=10))
def test_garbage_never_crashes_the_meter(content_type: str, chunks: list[bytes]) -> None:
    meter = UsageMeter()
    meter.begin(content_type)
    for chunk in chunks:
        meter.feed(chunk)
    meter.finish()
    assert meter.total >= 0


def test_the_requested_model_comes_from_the_body_head() -> None:
    assert requested_model(b'{"model": "claude-sonnet-4-5", "max_tokens": 10}') == "claude-sonnet-4-5"
    assert requested_model(b'{"messages": []}') is None


class StandIn:
    """A provider that answers after `delay` seconds, with usage (the Chat Completions JSON above) or without it
    (a stream whose client did not ask for usage: Chat Completions sends none then)."""

    def __init__(self, delay: float, with_usage: bool) -> None:
        answer = CHAT_JSON if with_usage else b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
        kind = "application/json" if with_usage else "text/event-stream"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[StandIn]:
    stand_in = StandIn(0.0, with_usage=True)
    yield stand_in
    stand_in.close()


def _call(port: int) -> bytes:
    body = json.dumps({"model": "gpt-x", "messages": [{"role": "user", "content": "secret prompt words"}]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /model/llm/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)  # fmt: skip
        return read_all(sock)


def test_each_model_call_is_audited_with_its_usage_and_a_budget_answers_429(provider: StandIn) -> None:
    harness = GatewayHarness("http://127.0.0.1:9", models={"llm": (provider.url, "sk-x")}, token_budget=30)
    try:
        answers = [_call(harness.port) for _ in range(3)]
        deadline = time.monotonic() + 5
        while len([r for r in harness.records if r.get("route") == "model"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        harness.close()
    assert [status_of(a) for a in answers] == [200, 200, 429]  # 19 tokens, 38 tokens: the third is over 30
    assert b"token budget of 30 is spent (38 used)" in answers[2]
    calls = [r for r in harness.records if r.get("route") == "model"]
    first = calls[0]
    assert (first["provider"], first["model"], first["input_tokens"], first["output_tokens"]) == ("llm", "gpt-x", 12, 7)
    assert first["status"] == 200 and first["bytes_down"] == len(CHAT_JSON) and "duration_ms" in first
    assert calls[2]["decision"] == "deny" and calls[2]["rule"] == "model:budget"
    assert "secret prompt words" not in json.dumps(harness.records)  # never content


def test_a_budget_cannot_be_outrun_by_calls_made_at_once() -> None:
    """A hostile agent fires many calls together, before any has reported its usage: with a budget, only a few
    run at once, so the budget is overshot by at most those."""
    provider = StandIn(0.5, with_usage=True)
    harness = GatewayHarness("http://127.0.0.1:9", models={"llm": (provider.url, "sk-x")}, token_budget=30)
    try:
        answers: list[bytes] = []
        threads = [threading.Thread(target=lambda: answers.append(_call(harness.port))) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        harness.close()
        provider.close()
    statuses = sorted(status_of(a) for a in answers)
    assert statuses.count(200) <= MAX_IN_FLIGHT and statuses.count(429) >= 12 - MAX_IN_FLIGHT, statuses


def test_answers_that_report_no_usage_still_count_against_the_budget() -> None:
    """Chat Completions streams carry no usage unless the client asks: such an answer is counted by its size."""
    provider = StandIn(0.0, with_usage=False)
    harness = GatewayHarness("http://127.0.0.1:9", models={"llm": (provider.url, "sk-x")}, token_budget=30)
    try:
        answers = [_call(harness.port) for _ in range(4)]
        deadline = time.monotonic() + 5
        while len([r for r in harness.records if r.get("route") == "model"]) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        harness.close()
        provider.close()
    assert status_of(answers[0]) == 200 and status_of(answers[-1]) == 429, [status_of(a) for a in answers]
    first = next(r for r in harness.records if r.get("route") == "model")
    assert "input_tokens" not in first and first["estimated_tokens"] > 0  # the audit says it was an estimate
