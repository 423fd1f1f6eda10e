"""POLICY.md's invariants T1-T5 and R1 as properties over random histories.

Each check recomputes what it needs from the raw events (last activity, the switch value then, later switches
to off), so it does not trust the engine's own bookkeeping.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.policy import Event, EventType, PolicyError, evaluate
from tests.policy.helpers import RULES
from tests.policy.histories import History, histories, next_seq

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SWITCH = {"consent": EventType.CONSENT, "dpp": EventType.DPP}


def eligible(history: History) -> set[str]:
    result = evaluate(RULES, history.accounts, history.events, history.at)
    return {sid for sid, d in result.sessions.items() if d.eligible}


def facts(history: History, session: str) -> tuple[str, Event, bool, bool]:
    """(account, last activity, switch on at it, switched off since) from the raw events."""
    ordered = sorted(history.events, key=lambda e: e.seq)
    last = [e for e in ordered if e.type is EventType.ACTIVITY and e.session == session][-1]
    plans = {a.id: a.plan for a in history.accounts}
    kind = SWITCH.get(RULES.plans[plans[last.account]].training)
    switches = [e for e in ordered if e.account == last.account and e.type is kind]
    on = [e.value for e in switches if e.seq < last.seq][-1:] == [True]
    off_since = any(e.value is False and e.seq > last.seq for e in switches)
    return last.account, last, on, off_since


@SETTINGS
@given(histories())
def test_t1_t2_t4_eligible_only_when_on_at_last_activity_and_never_off_since(history: History) -> None:
    plans = {a.id: a.plan for a in history.accounts}
    for sid in eligible(history):
        account, _, on_at_activity, off_since = facts(history, sid)
        assert on_at_activity, "T1"
        assert not off_since, "T2"
        plan = RULES.plans[plans[account]]
        assert plan.is_consumer or plan.can_join_dpp, "T4"


@SETTINGS
@given(histories(), st.data())
def test_t3_turning_the_setting_on_adds_no_idle_session(history: History, data: st.DataObject) -> None:
    account = data.draw(st.sampled_from(history.accounts))
    training = RULES.plans[account.plan].training
    if training not in SWITCH:
        return
    before = eligible(history)
    after = eligible(history.then(Event(next_seq(history), history.at, account.id, SWITCH[training], value=True)))
    assert after <= before


@SETTINGS
@given(histories(), st.data())
def test_t5_opt_outs_and_deletions_never_enlarge_an_export(history: History, data: st.DataObject) -> None:
    before = eligible(history)
    extra: list[Event] = []
    seq = next_seq(history)
    for _ in range(data.draw(st.integers(1, 4))):
        account = data.draw(st.sampled_from(history.accounts))
        training = RULES.plans[account.plan].training
        if data.draw(st.booleans()) and training in SWITCH:
            candidate = Event(seq, history.at, account.id, SWITCH[training], value=False)
        else:
            sid = data.draw(st.sampled_from(["s0", "s1", "s2", "s3", "s4", "s5"]))
            candidate = Event(seq, history.at, account.id, EventType.DELETE, sid)
        try:
            evaluate(RULES, history.accounts, [*history.events, *extra, candidate], history.at)
        except PolicyError:
            continue
        extra.append(candidate)
        seq += 1
    assert eligible(history.then(*extra)) <= before


@SETTINGS
@given(histories())
def test_t4_plans_without_dpp_are_never_exported(history: History) -> None:
    plans = {a.id: RULES.plans[a.plan] for a in history.accounts}
    result = evaluate(RULES, history.accounts, history.events, history.at)
    for decision in result.sessions.values():
        plan = plans[decision.account]
        if plan.training == "never":
            assert not decision.eligible
        if plan.training == "dpp" and not facts(history, decision.session)[2]:
            assert not decision.eligible


@SETTINGS
@given(histories())
def test_r1_every_session_has_exactly_one_rule_and_a_real_deadline(history: History) -> None:
    result = evaluate(RULES, history.accounts, history.events, history.at)
    for decision in result.sessions.values():
        if decision.state == "deleted":
            assert decision.retention_rule == "deleted" and decision.delete_after is None
            continue
        assert decision.retention_rule in RULES.retention
        assert decision.delete_after is not None
        assert decision.delete_after - decision.last_activity >= timedelta(days=1)
        assert (decision.state == "expired") == (history.at >= decision.delete_after)
        if decision.eligible:
            assert decision.state == "active" and not decision.zdr


@SETTINGS
@given(histories())
def test_same_history_same_decisions(history: History) -> None:
    shuffled = tuple(reversed(history.events))
    assert evaluate(RULES, history.accounts, history.events, history.at) == evaluate(
        RULES, history.accounts, shuffled, history.at
    )
