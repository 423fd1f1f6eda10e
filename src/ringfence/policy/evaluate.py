"""The one evaluation function of the policy: replay a history, then decide every session at a time T.

Owns: the rules of POLICY.md applied to values. `evaluate(rules, accounts, events, at)` is used identically by
`ringfence policy explain` and by the server (which replays the ledger it stored), so both always agree.
Time is an argument; nothing here reads a clock, a file or a database.

Order is the events' `seq`; wall-clock `at` only dates an event. Events must not be later than `at`: a decision
at T is made from what was known at T, and a later consent change must never be ignored by an earlier T.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ringfence.policy.calendar import format_time
from ringfence.policy.model import (
    RATINGS,
    Account,
    Event,
    EventType,
    Explanation,
    FeedbackDecision,
    PolicyError,
    Rating,
    SessionDecision,
    SessionState,
)
from ringfence.policy.rules import PlanRule, PolicyRules


@dataclass(slots=True)
class _AccountState:
    account: Account
    plan: PlanRule
    setting_on: bool = False  # consent (consumer) or DPP (commercial); no record means off
    zdr: bool = False
    last_off_seq: int = -1  # seq of the latest change to off, for "has stayed on since"
    last_off_at: datetime | None = None
    sessions: list[_Session] = field(default_factory=list)


@dataclass(slots=True)
class _Session:
    id: str
    account: _AccountState
    zdr: bool
    activity_seq: int
    activity_at: datetime
    setting_on_at_activity: bool
    rule: str
    delete_after: datetime
    deleted_at: datetime | None = None
    feedback_after: datetime | None = None
    rating: Rating | None = None


@dataclass(slots=True)
class Replay:
    """The state of every account and session after a history, ready to be decided at any T."""

    rules: PolicyRules
    accounts: dict[str, _AccountState]
    sessions: dict[str, _Session]
    last_at: datetime | None


def replay(rules: PolicyRules, accounts: Iterable[Account], events: Iterable[Event]) -> Replay:
    """Apply `events` in seq order; refuse the first one the policy does not allow (PolicyError names it)."""
    states: dict[str, _AccountState] = {}
    for account in accounts:
        if account.id in states:
            raise PolicyError("account listed twice", account=account.id)
        try:
            plan = rules.plan(account.plan)
        except KeyError as exc:
            raise PolicyError(str(exc.args[0]), account=account.id) from None
        if account.zdr and not plan.can_have_zdr:
            raise PolicyError(f"zero data retention is not available on plan {plan.name!r}", account=account.id)
        states[account.id] = _AccountState(account, plan, zdr=account.zdr)
    ordered = sorted(events, key=lambda e: e.seq)
    sessions: dict[str, _Session] = {}
    previous: int | None = None
    last_at: datetime | None = None
    for event in ordered:
        if event.seq == previous:
            raise PolicyError("duplicate seq: every event needs its own sequence number", seq=event.seq)
        previous = event.seq
        state = states.get(event.account)
        if state is None:
            raise PolicyError(f"unknown account {event.account!r}", seq=event.seq)
        _apply(rules, state, sessions, event)
        last_at = event.at if last_at is None or event.at > last_at else last_at
    return Replay(rules, states, sessions, last_at)


def _apply(rules: PolicyRules, state: _AccountState, sessions: dict[str, _Session], event: Event) -> None:
    plan = state.plan
    kind = event.type
    if kind is EventType.CONSENT:
        if not plan.is_consumer:
            raise PolicyError(
                f"a consent event is for consumer accounts; plan {plan.name!r} is commercial "
                "(its training is governed by the organization's DPP switch)",
                seq=event.seq,
            )
        _switch(rules, state, _bool(event), event)
    elif kind is EventType.DPP:
        if not plan.can_join_dpp:
            raise PolicyError(f"plan {plan.name!r} cannot join the Development Partner Program", seq=event.seq)
        _switch(rules, state, _bool(event), event)
    elif kind is EventType.ZDR:
        value = _bool(event)
        if not plan.can_have_zdr:
            raise PolicyError(f"zero data retention is not available on plan {plan.name!r}", seq=event.seq)
        state.zdr = value
    elif kind is EventType.ACTIVITY:
        _activity(rules, state, sessions, event)
    else:
        session = _existing(state, sessions, event)
        if kind is EventType.DELETE:
            if session.deleted_at is not None:
                raise PolicyError(f"session {session.id!r} is already deleted", seq=event.seq)
            session.deleted_at = event.at
        elif kind is EventType.FEEDBACK:
            if session.zdr:
                raise PolicyError(
                    f"feedback with a transcript is refused for session {session.id!r}: it runs under zero "
                    "data retention, so no transcript may be kept",
                    seq=event.seq,
                )
            if session.deleted_at is not None:
                raise PolicyError(f"session {session.id!r} was deleted; feedback cannot be kept", seq=event.seq)
            after = rules.retention["feedback"].duration.after(event.at)
            session.feedback_after = after if session.feedback_after is None else max(after, session.feedback_after)
        else:
            if event.value not in RATINGS or isinstance(event.value, bool):
                raise PolicyError(f'a rating is 1, 2, 3 or "dismiss", not {event.value!r}', seq=event.seq)
            if session.deleted_at is not None:
                raise PolicyError(f"session {session.id!r} was deleted; it cannot be rated", seq=event.seq)
            session.rating = event.value


def _bool(event: Event) -> bool:
    if not isinstance(event.value, bool):
        raise PolicyError(f"a {event.type} event needs a value of true or false, not {event.value!r}", seq=event.seq)
    return event.value


def _switch(rules: PolicyRules, state: _AccountState, value: bool, event: Event) -> None:
    state.setting_on = value
    if value:
        return
    state.last_off_seq, state.last_off_at = event.seq, event.at
    shortened = state.plan.retention_opt_out
    if shortened is None:
        return
    limit = rules.retention[shortened].duration.after(event.at)
    for session in state.sessions:
        if session.deleted_at is None and not session.zdr and session.delete_after > limit:
            session.delete_after, session.rule = limit, shortened


def _activity(rules: PolicyRules, state: _AccountState, sessions: dict[str, _Session], event: Event) -> None:
    if event.session is None or not event.session:
        raise PolicyError("an activity event needs a session id", seq=event.seq)
    session = sessions.get(event.session)
    if session is None:
        zdr = state.zdr or event.zdr_key
        if event.zdr_key and not state.plan.can_have_zdr:
            raise PolicyError(
                f"zero data retention API keys are not available on plan {state.plan.name!r}", seq=event.seq
            )
        session = _Session(event.session, state, zdr, event.seq, event.at, False, "", event.at)
        sessions[event.session] = session
        state.sessions.append(session)
    else:
        if session.account is not state:
            raise PolicyError(
                f"session {session.id!r} belongs to account {session.account.account.id!r}", seq=event.seq
            )
        if session.deleted_at is not None:
            raise PolicyError(
                f"session {session.id!r} was deleted; its content is gone, start a new session", seq=event.seq
            )
        if event.at >= session.delete_after:
            raise PolicyError(
                f"session {session.id!r} expired at {format_time(session.delete_after)}; its content is gone, "
                "start a new session",
                seq=event.seq,
            )
    session.activity_seq, session.activity_at = event.seq, event.at
    session.setting_on_at_activity = state.setting_on
    session.rule = _retention_rule(state.plan, session)
    session.delete_after = rules.retention[session.rule].duration.after(event.at)


def _retention_rule(plan: PlanRule, session: _Session) -> str:
    if session.zdr:
        return "zdr"
    if plan.is_consumer and session.setting_on_at_activity:
        assert plan.retention_on is not None
        return plan.retention_on
    return plan.retention


def _existing(state: _AccountState, sessions: dict[str, _Session], event: Event) -> _Session:
    if not event.session:
        raise PolicyError(f"a {event.type} event needs a session id", seq=event.seq)
    session = sessions.get(event.session)
    if session is None:
        raise PolicyError(f"unknown session {event.session!r}", seq=event.seq)
    if session.account is not state:
        raise PolicyError(f"session {session.id!r} belongs to account {session.account.account.id!r}", seq=event.seq)
    return session


def decide(history: Replay, at: datetime) -> Explanation:
    """Every session's state, retention and training eligibility at `at`."""
    if history.last_at is not None and history.last_at > at:
        raise PolicyError(
            f"the history has events up to {format_time(history.last_at)}, later than the decision time "
            f"{format_time(at)}; decisions are made from what is known at that time"
        )
    rules = history.rules
    decisions = {sid: decide_session(rules, s, at) for sid, s in history.sessions.items()}
    feedback = {
        sid: FeedbackDecision(sid, s.account.account.id, None if s.deleted_at else s.feedback_after)
        for sid, s in history.sessions.items()
        if s.feedback_after is not None
    }
    ratings = {sid: s.rating for sid, s in history.sessions.items() if s.rating is not None}
    return Explanation(rules.version, rules.sha256, at, decisions, feedback, ratings)


def decide_session(rules: PolicyRules, s: _Session, at: datetime) -> SessionDecision:
    state: SessionState = "active"
    fields: list[tuple[str, datetime | str]] = [("last_activity", s.activity_at), ("at", at)]
    plan = s.account.plan
    delete_after: datetime | None = s.delete_after
    rule = s.rule
    if s.deleted_at is not None:
        state, code, delete_after, rule = "deleted", "deleted", None, "deleted"
        fields.append(("deleted_at", s.deleted_at))
    elif at >= s.delete_after:
        state, code = "expired", "expired"
        fields.append(("delete_after", s.delete_after))
    elif s.zdr:
        code = "zdr"
    elif plan.training == "never":
        code = "plan-never"
    else:
        consent = plan.training == "consent"
        if not s.setting_on_at_activity:
            code = "consent-off-at-activity" if consent else "dpp-off-at-activity"
        elif s.account.last_off_seq > s.activity_seq:
            code = "consent-turned-off" if consent else "dpp-turned-off"
            assert s.account.last_off_at is not None
            fields.append(("changed_at", s.account.last_off_at))
        else:
            code = "eligible-consent" if consent else "eligible-dpp"
    fields.append(("plan", plan.name))
    return SessionDecision(
        session=s.id,
        account=s.account.account.id,
        state=state,
        zdr=s.zdr,
        eligible=code.startswith("eligible"),
        reason_code=code,
        retention_rule=rule,
        delete_after=delete_after,
        last_activity=s.activity_at,
        last_activity_seq=s.activity_seq,
        reason_fields=tuple(fields),
        template=rules.reasons[code],
    )


def evaluate(rules: PolicyRules, accounts: Iterable[Account], events: Iterable[Event], at: datetime) -> Explanation:
    """Replay `events` for `accounts` and decide every session at `at`: the single entry point of the policy."""
    return decide(replay(rules, accounts, events), at)
