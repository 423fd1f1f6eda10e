"""`policy explain` input and output, exactly as POLICY.md documents them, and every documented error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ringfence.policy import PolicyError, ScenarioError, explain
from tests.policy.helpers import RULES, ev, run

POLICY_MD_EXAMPLE = {
    "accounts": [{"id": "u1", "plan": "pro"}, {"id": "org1", "plan": "api", "zdr": False}],
    "events": [
        {"seq": 1, "at": "2026-01-01T00:00:00Z", "account": "u1", "type": "consent", "value": True},
        {"seq": 2, "at": "2026-01-02T00:00:00Z", "account": "u1", "type": "activity", "session": "s1"},
        {"seq": 3, "at": "2026-01-03T00:00:00Z", "account": "org1", "type": "dpp", "value": True},
        {"seq": 4, "at": "2026-01-04T00:00:00Z", "account": "org1", "type": "activity", "session": "s2"},
        {"seq": 5, "at": "2026-01-05T00:00:00Z", "account": "u1", "type": "delete", "session": "s1"},
    ],
    "at": "2026-02-01T00:00:00Z",
}


def test_the_policy_md_example() -> None:
    result = explain(RULES, json.dumps(POLICY_MD_EXAMPLE))
    assert result["policy_version"] == RULES.version
    assert result["at"] == "2026-02-01T00:00:00Z"
    assert set(result) >= {"policy_version", "at", "sessions", "feedback"}
    s1, s2 = result["sessions"]["s1"], result["sessions"]["s2"]
    assert s1 == {
        "state": "deleted",
        "eligible": False,
        "reason": s1["reason"],
        "retention_rule": "deleted",
        "delete_after": None,
    }
    assert s2["state"] == "active" and s2["eligible"] is True
    assert s2["retention_rule"] == "commercial"
    assert s2["delete_after"] == "2026-02-03T00:00:00Z"
    for decision in (s1, s2):
        assert decision["reason"].endswith(".") and len(decision["reason"].split()) >= 8


def test_events_are_applied_in_seq_order_not_list_order() -> None:
    shuffled = dict(POLICY_MD_EXAMPLE, events=list(reversed(POLICY_MD_EXAMPLE["events"])))
    assert explain(RULES, json.dumps(shuffled)) == explain(RULES, json.dumps(POLICY_MD_EXAMPLE))


def _scenario(accounts: list[dict[str, Any]], events: list[dict[str, Any]], at: str = "2026-03-01T00:00:00Z") -> str:
    return json.dumps({"accounts": accounts, "events": events, "at": at})


U = [{"id": "u", "plan": "pro"}]
API = [{"id": "o", "plan": "api"}]


@pytest.mark.parametrize(
    ("text", "seq", "message"),
    [
        (_scenario([{"id": "u", "plan": "platinum"}], []), None, "unknown plan 'platinum'"),
        (_scenario(U, [ev(1, 0, "u", "vote")]), 1, "unknown event type 'vote'"),
        *[
            (
                _scenario([{"id": "o", "plan": plan}], [ev(7, 0, "o", "dpp", value=True)]),
                7,
                f"plan '{plan}' cannot join the Development Partner Program",
            )
            for plan in ("bedrock", "vertex", "foundry", "gov", "pro")
        ],
        (_scenario([{"id": "u", "plan": "free", "zdr": True}], []), None, "zero data retention is not available"),
        (
            _scenario([{"id": "o", "plan": "team"}], [ev(2, 0, "o", "zdr", value=True)]),
            2,
            "zero data retention is not available on plan 'team'",
        ),
        (_scenario(API, [ev(3, 0, "o", "consent", value=True)]), 3, "a consent event is for consumer accounts"),
        (_scenario(U, [ev(1, 0, "nobody", "activity", "s")]), 1, "unknown account 'nobody'"),
        (_scenario(U, [ev(4, 0, "u", "delete", "ghost")]), 4, "unknown session 'ghost'"),
        (_scenario(U, [ev(4, 0, "u", "feedback", "ghost")]), 4, "unknown session 'ghost'"),
        (_scenario(U, [ev(4, 0, "u", "rating", "ghost", value=1)]), 4, "unknown session 'ghost'"),
        (_scenario(U, [ev(5, 0, "u", "consent", value=True), ev(5, 1, "u", "activity", "s")]), 5, "duplicate seq"),
        (
            _scenario(
                [{"id": "o", "plan": "enterprise", "zdr": True}],
                [ev(1, 0, "o", "activity", "s"), ev(2, 1, "o", "feedback", "s")],
            ),
            2,
            "feedback with a transcript is refused",
        ),
        (
            _scenario(
                U, [ev(1, 0, "u", "activity", "s"), ev(2, 1, "u", "delete", "s"), ev(3, 2, "u", "activity", "s")]
            ),
            3,
            "was deleted; its content is gone, start a new session",
        ),
        (
            _scenario(U, [ev(1, 0, "u", "activity", "s"), ev(2, 30, "u", "activity", "s")]),
            2,
            "expired at 2026-01-31T00:00:00Z",
        ),
        (
            _scenario(U, [ev(1, 0, "u", "activity", "s"), ev(2, 1, "u", "delete", "s"), ev(3, 2, "u", "delete", "s")]),
            3,
            "already deleted",
        ),
        (_scenario(U, [ev(1, 0, "u", "consent", value="yes")]), 1, "needs a value of true or false"),
        (
            _scenario(U, [ev(1, 0, "u", "activity", "s"), ev(2, 0, "u", "rating", "s", value=5)]),
            2,
            'a rating is 1, 2, 3 or "dismiss"',
        ),
        (_scenario(U, [ev(1, 0, "u", "activity", "s"), ev(2, 0, "u", "rating", "s", value=True)]), 2, "a rating is"),
        (
            _scenario(
                [*U, {"id": "v", "plan": "max"}], [ev(1, 0, "u", "activity", "s"), ev(2, 1, "v", "activity", "s")]
            ),
            2,
            "session 's' belongs to account 'u'",
        ),
        (_scenario(U, [ev(1, 0, "u", "activity", "s", zdr_key=True)]), 1, "zero data retention API keys"),
        (_scenario(U, [ev(1, 0, "u", "activity")]), 1, "needs a 'session'"),
        (_scenario(U, [ev(1, 0, "u", "consent", "s", value=True)]), 1, "takes no 'session'"),
        (
            _scenario(U, [{"seq": 1, "at": "soon", "account": "u", "type": "consent", "value": True}]),
            1,
            "invalid time 'soon'",
        ),
        (_scenario(U, [ev(1, 0, "u", "consent", value=True, colour="red")]), 1, "unknown key(s) colour"),
        (_scenario([*U, {"id": "u", "plan": "pro"}], []), None, "account listed twice"),
    ],
)
def test_each_documented_error_names_the_offending_event(text: str, seq: int | None, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        explain(RULES, text)
    assert message in str(caught.value)
    assert caught.value.seq == seq
    if seq is not None:
        assert str(caught.value).startswith(f"event seq {seq}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"accounts": [], "events": []}', "needs 'at'"),
        ('{"accounts": {}, "events": [], "at": "2026-01-01T00:00:00Z"}', "must be lists"),
        ('{"accounts": [], "events": [], "at": "2026-01-01T00:00:00Z", "extra": 1}', "unknown top-level key"),
        ('{"accounts": [], "events": [], "at": "2026-01-01"}', "at: invalid time"),
        ('{"accounts": [{"plan": "pro"}], "events": [], "at": "2026-01-01T00:00:00Z"}', "accounts[0]: 'id'"),
        ('{"accounts": [], "events": [{"seq": "1"}], "at": "2026-01-01T00:00:00Z"}', "events[0]: 'seq'"),
        ('{"accounts": [], "events": [{"seq": true}], "at": "2026-01-01T00:00:00Z"}', "events[0]: 'seq'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_scenarios_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        explain(RULES, text)


def test_a_decision_time_before_the_last_event_is_refused() -> None:
    with pytest.raises(PolicyError, match="later than the decision time"):
        run(U, [ev(1, 10, "u", "activity", "s")], at=5)


def test_output_is_stable_json() -> None:
    first = json.dumps(explain(RULES, json.dumps(POLICY_MD_EXAMPLE)), sort_keys=False)
    assert first == json.dumps(explain(RULES, json.dumps(POLICY_MD_EXAMPLE)), sort_keys=False)
    assert list(json.loads(first)["sessions"]) == ["s1", "s2"]
