"""Small builders for scenarios, so tables read like the policy."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from ringfence.policy import explain, format_time, load_rules
from tests.conftest import T0

RULES = load_rules()


def day(n: float) -> str:
    return format_time(T0 + timedelta(days=n))


def ev(
    seq: int, when: float, account: str, kind: str, session: str | None = None, value: Any = None, **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"seq": seq, "at": day(when), "account": account, "type": kind}
    if session is not None:
        event["session"] = session
    if value is not None:
        event["value"] = value
    event.update(extra)
    return event


def run(accounts: list[dict[str, Any]], events: list[dict[str, Any]], at: float) -> dict[str, Any]:
    return explain(RULES, json.dumps({"accounts": accounts, "events": events, "at": day(at)}))
