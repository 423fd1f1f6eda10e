"""Random valid histories for property tests: candidate events are drawn at random and kept only when the policy
accepts them, so every history is one the server could have recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import strategies as st

from ringfence.policy import Account, Event, EventType, PolicyError, replay
from tests.conftest import T0
from tests.policy.helpers import RULES

PLANS = sorted(RULES.plans)
SESSIONS = [f"s{i}" for i in range(6)]


@dataclass(frozen=True)
class History:
    accounts: tuple[Account, ...]
    events: tuple[Event, ...]
    at: datetime

    def then(self, *extra: Event) -> History:
        return History(self.accounts, self.events + extra, self.at)


@st.composite
def accounts_st(draw: st.DrawFn) -> tuple[Account, ...]:
    count = draw(st.integers(1, 3))
    chosen = []
    for i in range(count):
        plan = draw(st.sampled_from(PLANS))
        zdr = RULES.plans[plan].can_have_zdr and draw(st.booleans())
        chosen.append(Account(f"a{i}", plan, zdr))
    return tuple(chosen)


_KINDS = [
    EventType.CONSENT,
    EventType.CONSENT,
    EventType.DPP,
    EventType.DPP,
    EventType.ZDR,
    EventType.ACTIVITY,
    EventType.ACTIVITY,
    EventType.ACTIVITY,
    EventType.ACTIVITY,
    EventType.DELETE,
    EventType.FEEDBACK,
    EventType.RATING,
]


@st.composite
def histories(draw: st.DrawFn, max_events: int = 25) -> History:
    accounts = draw(accounts_st())
    events: list[Event] = []
    now = T0
    # Per-history regimes, so some histories keep their switches on and stay short, and others churn.
    off_weight = draw(st.sampled_from([0, 0, 1, 3]))
    gaps = [0, 0, 1, 24] if draw(st.booleans()) else [0, 1, 24, 24 * 3, 24 * 7, 24 * 40]
    for seq in range(1, draw(st.integers(0, max_events)) + 1):
        now += timedelta(hours=draw(st.sampled_from(gaps)))
        account = draw(st.sampled_from(accounts))
        kind = draw(st.sampled_from(_KINDS))
        session = (
            draw(st.sampled_from(SESSIONS))
            if kind in (EventType.ACTIVITY, EventType.DELETE, EventType.FEEDBACK, EventType.RATING)
            else None
        )
        if kind in (EventType.CONSENT, EventType.DPP, EventType.ZDR):
            value: bool | int | str | None = draw(st.integers(0, 9)) >= off_weight
        elif kind is EventType.RATING:
            value = draw(st.sampled_from([1, 2, 3, "dismiss"]))
        else:
            value = None
        zdr_key = kind is EventType.ACTIVITY and draw(st.integers(0, 5)) == 0
        candidate = Event(seq, now, account.id, kind, session, value, zdr_key)
        try:
            replay(RULES, accounts, [*events, candidate])
        except PolicyError:
            continue
        events.append(candidate)
    at = now + timedelta(hours=draw(st.sampled_from([0, 0, 1, 24, 24 * 10, 24 * 29, 24 * 31, 24 * 400])))
    return History(accounts, tuple(events), at)


def next_seq(history: History) -> int:
    return max((e.seq for e in history.events), default=0) + 1
