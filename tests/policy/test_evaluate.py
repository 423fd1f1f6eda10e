"""Example tables: every plan x setting x DPP x ZDR, and the edge cases POLICY.md singles out.

Expected values are written out by hand from POLICY.md, not computed by the code under test.
"""

from __future__ import annotations

import pytest

from ringfence.policy import PolicyError
from tests.policy.helpers import day, ev, run

CONSUMER = ("free", "pro", "max")
FIRST_PARTY = ("team", "enterprise", "api")
NEVER = ("bedrock", "vertex", "foundry", "gov")
FIVE_YEARS = "2031-01-02T00:00:00Z"  # activity on day 1 (2026-01-02) plus 5 calendar years
THIRTY_DAYS = day(31)


@pytest.mark.parametrize("plan", CONSUMER)
@pytest.mark.parametrize(
    ("setting", "eligible", "rule", "delete_after", "code"),
    [
        (True, True, "consumer-training-on", FIVE_YEARS, "Eligible: the training setting was on"),
        (False, False, "consumer-training-off", THIRTY_DAYS, "was off at the session's last activity"),
        (None, False, "consumer-training-off", THIRTY_DAYS, "was off at the session's last activity"),
    ],
)
def test_consumer_plans(
    plan: str, setting: bool | None, eligible: bool, rule: str, delete_after: str, code: str
) -> None:
    events = [] if setting is None else [ev(1, 0, "u", "consent", value=setting)]
    result = run([{"id": "u", "plan": plan}], [*events, ev(2, 1, "u", "activity", "s")], at=10)
    decision = result["sessions"]["s"]
    assert (decision["eligible"], decision["retention_rule"], decision["delete_after"]) == (
        eligible,
        rule,
        delete_after,
    )
    assert code in decision["reason"]
    assert decision["state"] == "active"


@pytest.mark.parametrize("plan", CONSUMER)
def test_consumer_plans_cannot_have_zdr(plan: str) -> None:
    with pytest.raises(PolicyError, match="zero data retention is not available"):
        run([{"id": "u", "plan": plan, "zdr": True}], [], at=1)
    with pytest.raises(PolicyError, match="zero data retention is not available"):
        run([{"id": "u", "plan": plan}], [ev(1, 0, "u", "zdr", value=True)], at=1)


@pytest.mark.parametrize("plan", FIRST_PARTY)
@pytest.mark.parametrize("dpp", [True, False, None])
@pytest.mark.parametrize("zdr", [True, False])
def test_first_party_commercial_plans(plan: str, dpp: bool | None, zdr: bool) -> None:
    events = [] if dpp is None else [ev(1, 0, "o", "dpp", value=dpp)]
    account = {"id": "o", "plan": plan, "zdr": zdr}
    if zdr and plan == "team":
        with pytest.raises(PolicyError, match="zero data retention is not available on plan 'team'"):
            run([account], events, at=10)
        return
    decision = run([account], [*events, ev(2, 1, "o", "activity", "s")], at=10)["sessions"]["s"]
    assert decision["delete_after"] == THIRTY_DAYS
    if zdr:
        assert (decision["eligible"], decision["retention_rule"]) == (False, "zdr")
        assert "zero data retention" in decision["reason"]
    elif dpp:
        assert (decision["eligible"], decision["retention_rule"]) == (True, "commercial")
        assert "Development Partner Program" in decision["reason"]
    else:
        assert (decision["eligible"], decision["retention_rule"]) == (False, "commercial")
        assert "was not in the Development Partner Program" in decision["reason"]


@pytest.mark.parametrize("plan", NEVER)
def test_plans_that_never_train(plan: str) -> None:
    decision = run([{"id": "o", "plan": plan}], [ev(1, 1, "o", "activity", "s")], at=10)["sessions"]["s"]
    assert (decision["eligible"], decision["retention_rule"], decision["delete_after"]) == (
        False,
        "commercial",
        THIRTY_DAYS,
    )
    assert f"plan {plan} are never used for training" in decision["reason"]
    with pytest.raises(PolicyError, match="cannot join the Development Partner Program"):
        run([{"id": "o", "plan": plan}], [ev(1, 0, "o", "dpp", value=True)], at=1)
    with pytest.raises(PolicyError, match="zero data retention is not available"):
        run([{"id": "o", "plan": plan}], [ev(1, 0, "o", "zdr", value=True)], at=1)


U = [{"id": "u", "plan": "pro"}]


def session(events: list[dict], at: float, sid: str = "s", accounts: list[dict] | None = None) -> dict:
    return run(accounts or U, events, at)["sessions"][sid]


def test_consent_and_activity_in_the_same_second_are_ordered_by_seq() -> None:
    same = 1
    on_first = session([ev(1, same, "u", "consent", value=True), ev(2, same, "u", "activity", "s")], at=2)
    activity_first = session([ev(1, same, "u", "activity", "s"), ev(2, same, "u", "consent", value=True)], at=2)
    assert on_first["eligible"] is True
    assert activity_first["eligible"] is False
    off_after = session(
        [
            ev(1, 0, "u", "consent", value=True),
            ev(2, same, "u", "activity", "s"),
            ev(3, same, "u", "consent", value=False),
        ],
        at=2,
    )
    assert off_after["eligible"] is False
    assert "turned off" in off_after["reason"]


def test_opting_out_shortens_stored_sessions_to_30_days_from_the_change() -> None:
    decision = session(
        [ev(1, 0, "u", "consent", value=True), ev(2, 1, "u", "activity", "s"), ev(3, 10, "u", "consent", value=False)],
        at=11,
    )
    assert (decision["retention_rule"], decision["delete_after"]) == ("consumer-opt-out", day(40))


def test_opting_out_never_lengthens_a_shorter_deadline() -> None:
    decision = session([ev(1, 1, "u", "activity", "s"), ev(2, 20, "u", "consent", value=False)], at=21)
    assert (decision["retention_rule"], decision["delete_after"]) == ("consumer-training-off", day(31))


def test_opting_in_does_not_revive_or_lengthen_idle_sessions() -> None:
    events = [ev(1, 1, "u", "activity", "s"), ev(2, 5, "u", "consent", value=True)]
    idle = session(events, at=6)
    assert (idle["eligible"], idle["delete_after"]) == (False, day(31))
    resumed = session([*events, ev(3, 7, "u", "activity", "s")], at=8)
    assert (resumed["eligible"], resumed["retention_rule"], resumed["delete_after"]) == (
        True,
        "consumer-training-on",
        "2031-01-08T00:00:00Z",
    )


def test_off_then_on_again_keeps_sessions_out_until_new_activity() -> None:
    events = [
        ev(1, 0, "u", "consent", value=True),
        ev(2, 1, "u", "activity", "s"),
        ev(3, 2, "u", "consent", value=False),
        ev(4, 3, "u", "consent", value=True),
    ]
    assert session(events, at=4)["eligible"] is False
    assert session([*events, ev(5, 5, "u", "activity", "s")], at=6)["eligible"] is True


def test_dpp_left_and_rejoined_keeps_sessions_out_until_new_activity() -> None:
    org = [{"id": "o", "plan": "team"}]
    events = [
        ev(1, 0, "o", "dpp", value=True),
        ev(2, 1, "o", "activity", "s"),
        ev(3, 2, "o", "dpp", value=False),
        ev(4, 3, "o", "dpp", value=True),
    ]
    assert "left the Development Partner Program" in session(events, at=4, accounts=org)["reason"]
    assert session([*events, ev(5, 5, "o", "activity", "s")], at=6, accounts=org)["eligible"] is True


def test_deletion_after_an_export_removes_it_from_later_ones() -> None:
    events = [ev(1, 0, "u", "consent", value=True), ev(2, 1, "u", "activity", "s")]
    assert session(events, at=2)["eligible"] is True
    after = session([*events, ev(3, 3, "u", "delete", "s")], at=4)
    assert (after["state"], after["eligible"], after["delete_after"]) == ("deleted", False, None)


def test_feedback_is_kept_5_years_from_submission_independently_of_the_session() -> None:
    result = run(U, [ev(1, 1, "u", "activity", "s"), ev(2, 5, "u", "feedback", "s")], at=40)
    assert result["feedback"] == {"s": "2031-01-06T00:00:00Z"}
    assert result["sessions"]["s"]["state"] == "expired"  # the session's own 30 days passed
    deleted = run(
        U, [ev(1, 1, "u", "activity", "s"), ev(2, 5, "u", "feedback", "s"), ev(3, 6, "u", "delete", "s")], at=7
    )
    assert deleted["feedback"] == {"s": None}


def test_ratings_change_nothing_about_training_or_retention() -> None:
    base = [ev(1, 0, "u", "consent", value=True), ev(2, 1, "u", "activity", "s")]
    for value in (1, 2, 3, "dismiss"):
        rated = run(U, [*base, ev(3, 2, "u", "rating", "s", value=value)], at=3)
        assert rated["sessions"] == run(U, base, at=3)["sessions"]
        assert rated["feedback"] == {}


def test_expiry_is_at_the_deadline() -> None:
    events = [ev(1, 1, "u", "activity", "s")]
    assert session(events, at=30.999)["state"] == "active"
    expired = session(events, at=31)
    assert (expired["state"], expired["eligible"]) == ("expired", False)


def test_new_activity_recomputes_retention() -> None:
    decision = session([ev(1, 1, "u", "activity", "s"), ev(2, 20, "u", "activity", "s")], at=21)
    assert decision["delete_after"] == day(50)


def test_zdr_is_fixed_at_session_start() -> None:
    org = [{"id": "o", "plan": "enterprise"}]
    events = [
        ev(1, 0, "o", "dpp", value=True),
        ev(2, 1, "o", "activity", "before"),
        ev(3, 2, "o", "zdr", value=True),
        ev(4, 3, "o", "activity", "during"),
        ev(5, 4, "o", "zdr", value=False),
        ev(6, 5, "o", "activity", "during"),
    ]
    result = run(org, events, at=6)["sessions"]
    assert (result["before"]["retention_rule"], result["before"]["eligible"]) == ("commercial", True)
    assert (result["during"]["retention_rule"], result["during"]["eligible"]) == ("zdr", False)
    assert result["during"]["delete_after"] == day(35)  # metadata kept 30 days from the last activity


def test_a_zdr_api_key_makes_a_zdr_session_on_plans_that_allow_it() -> None:
    org = [{"id": "o", "plan": "api"}]
    result = run(
        org,
        [
            ev(1, 0, "o", "dpp", value=True),
            ev(2, 1, "o", "activity", "k", zdr_key=True),
            ev(3, 1, "o", "activity", "n"),
        ],
        at=2,
    )["sessions"]
    assert result["k"]["retention_rule"] == "zdr" and result["k"]["eligible"] is False
    assert result["n"]["retention_rule"] == "commercial" and result["n"]["eligible"] is True
