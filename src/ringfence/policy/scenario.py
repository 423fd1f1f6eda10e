"""The scenario format of `ringfence policy explain` (POLICY.md): JSON in, the policy's decisions as JSON out.

Owns: strict parsing of a scenario document into accounts, events and a time, with errors that name the offending
entry, and rendering an Explanation into the documented output shape. The decisions themselves come from
ringfence.policy.evaluate, the same function the server uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ringfence.policy.calendar import format_time, parse_time
from ringfence.policy.evaluate import evaluate
from ringfence.policy.model import Account, Event, EventType, Explanation, PolicyError
from ringfence.policy.rules import PolicyRules

_ACCOUNT_KEYS = {"id", "plan", "zdr"}
_EVENT_KEYS = {"seq", "at", "account", "type", "session", "value", "zdr_key"}
_NEEDS_SESSION = {EventType.ACTIVITY, EventType.DELETE, EventType.FEEDBACK, EventType.RATING}


class ScenarioError(PolicyError):
    """The scenario document is malformed; the message names where."""


@dataclass(frozen=True, slots=True)
class Scenario:
    accounts: tuple[Account, ...]
    events: tuple[Event, ...]
    at: datetime


def parse_scenario(text: str | bytes) -> Scenario:
    """Parse a scenario; the first problem found is raised as ScenarioError (or PolicyError with its seq)."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"the scenario is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ScenarioError("the scenario must be a JSON object with 'accounts', 'events' and 'at'")
    unknown = set(doc) - {"accounts", "events", "at"}
    if unknown:
        raise ScenarioError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    for key in ("accounts", "events", "at"):
        if key not in doc:
            raise ScenarioError(f"the scenario needs {key!r}")
    if not isinstance(doc["accounts"], list) or not isinstance(doc["events"], list):
        raise ScenarioError("'accounts' and 'events' must be lists")
    at = _time(doc["at"], "at")
    accounts = tuple(_account(i, entry) for i, entry in enumerate(doc["accounts"]))
    events = tuple(_event(i, entry) for i, entry in enumerate(doc["events"]))
    return Scenario(accounts, events, at)


def _time(value: Any, where: str, seq: int | None = None) -> datetime:
    try:
        return parse_time(value)
    except ValueError as exc:
        if seq is not None:
            raise ScenarioError(f"'at': {exc}", seq=seq) from None
        raise ScenarioError(f"{where}: {exc}") from None


def _account(index: int, entry: Any) -> Account:
    where = f"accounts[{index}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where} must be an object with 'id' and 'plan'")
    unknown = set(entry) - _ACCOUNT_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    ident, plan, zdr = entry.get("id"), entry.get("plan"), entry.get("zdr", False)
    if not isinstance(ident, str) or not ident:
        raise ScenarioError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(plan, str):
        raise ScenarioError(f"{where} ({ident!r}): 'plan' must be a string")
    if not isinstance(zdr, bool):
        raise ScenarioError(f"{where} ({ident!r}): 'zdr' must be true or false")
    return Account(ident, plan, zdr)


def _event(index: int, entry: Any) -> Event:
    if not isinstance(entry, dict):
        raise ScenarioError(f"events[{index}] must be an object")
    seq = entry.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ScenarioError(f"events[{index}]: 'seq' must be an integer")
    unknown = set(entry) - _EVENT_KEYS
    if unknown:
        raise ScenarioError(f"unknown key(s) {', '.join(sorted(unknown))}", seq=seq)
    try:
        kind = EventType(str(entry.get("type")))
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise ScenarioError(f"unknown event type {entry.get('type')!r} (known: {known})", seq=seq) from None
    account, session = entry.get("account"), entry.get("session")
    if not isinstance(account, str) or not account:
        raise ScenarioError("'account' must be a non-empty string", seq=seq)
    if kind in _NEEDS_SESSION and (not isinstance(session, str) or not session):
        raise ScenarioError(f"a {kind} event needs a 'session' string", seq=seq)
    if kind not in _NEEDS_SESSION and session is not None:
        raise ScenarioError(f"a {kind} event takes no 'session'", seq=seq)
    zdr_key = entry.get("zdr_key", False)
    if not isinstance(zdr_key, bool) or (zdr_key and kind is not EventType.ACTIVITY):
        raise ScenarioError("'zdr_key' is a true/false mark on activity events only", seq=seq)
    value = entry.get("value")
    if value is not None and not isinstance(value, bool | int | str):
        raise ScenarioError(f"'value' {value!r} is not a boolean, number or string", seq=seq)
    return Event(seq, _time(entry.get("at"), "at", seq), account, kind, session, value, zdr_key)


def explain(rules: PolicyRules, text: str | bytes) -> dict[str, Any]:
    """Parse, evaluate and render a scenario: exactly what `ringfence policy explain` prints."""
    scenario = parse_scenario(text)
    return render(evaluate(rules, scenario.accounts, scenario.events, scenario.at))


def render(explanation: Explanation) -> dict[str, Any]:
    """The documented output shape, with sessions and feedback in a stable (sorted) order."""
    sessions: dict[str, Mapping[str, Any]] = {}
    for sid in sorted(explanation.sessions):
        d = explanation.sessions[sid]
        sessions[sid] = {
            "state": d.state,
            "eligible": d.eligible,
            "reason": d.reason,
            "retention_rule": d.retention_rule,
            "delete_after": None if d.delete_after is None else format_time(d.delete_after),
        }
    feedback = {
        sid: None if f.delete_after is None else format_time(f.delete_after)
        for sid, f in sorted(explanation.feedback.items())
    }
    return {
        "policy_version": explanation.policy_version,
        "policy_sha256": explanation.policy_sha256,
        "at": format_time(explanation.at),
        "sessions": sessions,
        "feedback": feedback,
    }
