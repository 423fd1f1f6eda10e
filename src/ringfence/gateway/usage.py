"""What a model call used, read from the provider's own answer as it streams past (SECURITY-CASES M3).

Owns: `UsageMeter`, fed the answer's bytes as the gateway relays them (never holding the answer: a server-sent
event stream is read line by line with a bounded line; a JSON answer is kept up to a bound and parsed at its end),
and `requested_model`, the model a request names. The token counts are the provider's: Anthropic's Messages API
(`message_start` and `message_delta` events, or `usage` of a whole answer), OpenAI's Responses API
(`response.completed`) and Chat Completions (`usage` with `prompt_tokens` and `completion_tokens`). Sans-I/O;
nothing here records content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_LINE = 1 << 20  # an event line longer than this is skipped (its usage, if any, is not counted)
MAX_JSON = 4 << 20  # a whole JSON answer kept for its usage, at most
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,100})"')


def requested_model(head: bytes) -> str | None:
    """The `model` a request body names, from its first bytes (the field comes first in every SDK's bodies)."""
    found = _MODEL.search(head)
    return found[1].decode("utf-8", "replace") if found else None


def _counts(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    given = usage.get("input_tokens", usage.get("prompt_tokens"))
    made = usage.get("output_tokens", usage.get("completion_tokens"))
    return (given if isinstance(given, int) else None), (made if isinstance(made, int) else None)


class UsageMeter:
    """One answer's usage: `begin` with the answer's content type, `feed` its body as it passes, then `finish`."""

    def __init__(self) -> None:
        self.streaming = False
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self._buffer = bytearray()
        self._skipping = False  # inside an over-long event line, or past MAX_JSON of a whole answer

    def begin(self, content_type: str) -> None:
        self.streaming = content_type.split(";")[0].strip().lower() == "text/event-stream"

    def feed(self, data: bytes) -> None:
        if not self.streaming:
            if self._skipping or len(self._buffer) + len(data) > MAX_JSON:
                self._buffer.clear()  # too long to parse: no usage from it
                self._skipping = True
            else:
                self._buffer.extend(data)
            return
        self._buffer.extend(data)
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            self._event_line(line)
        if len(self._buffer) > MAX_LINE:
            self._buffer.clear()
            self._skipping = True

    def finish(self) -> None:
        if not self.streaming and self._buffer:
            self._take(self._parse(bytes(self._buffer)))
        self._buffer.clear()

    def _event_line(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            self._take(self._parse(line[5:].strip()))

    @staticmethod
    def _parse(text: bytes) -> Any:
        try:
            return json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None

    def _take(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        for holder in (event, event.get("message"), event.get("response")):
            if isinstance(holder, dict) and "usage" in holder:
                given, made = _counts(holder["usage"])
                if given is not None:
                    self.input_tokens = given
                if made is not None:  # Anthropic's message_delta counts are cumulative: the last one is the total
                    self.output_tokens = made

    @property
    def total(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)


BYTES_PER_TOKEN = 4  # an answer that reports no usage is counted by its size, at about this many bytes a token
MAX_IN_FLIGHT = 4  # model calls a session with a budget may have running at once


@dataclass
class TokenBudget:
    """A session's model token budget. Calls are admitted while the tokens used are below the limit, and at most
    MAX_IN_FLIGHT at once: usage is known only when an answer ends, so calls made together could otherwise all
    start before any was counted; the overshoot is bounded by those few calls. An answer that reports no usage
    (a Chat Completions stream whose client did not ask for it) is charged by its size, never as free."""

    limit: int
    used: int = 0
    in_flight: int = 0

    def admit(self) -> str | None:
        """Why a new call is refused now (None: admitted, and counted in flight until `done`)."""
        if self.used >= self.limit:
            return f"this session's model token budget of {self.limit} is spent ({self.used} used)"
        if self.in_flight >= MAX_IN_FLIGHT:
            return f"at most {MAX_IN_FLIGHT} model calls run at once in a session with a token budget"
        self.in_flight += 1
        return None

    def done(self, tokens: int) -> None:
        self.in_flight -= 1
        self.used += tokens


def estimated_tokens(byte_count: int) -> int:
    return -(-byte_count // BYTES_PER_TOKEN)
