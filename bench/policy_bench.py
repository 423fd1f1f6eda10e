"""Policy decisions per second, in process: replay + decide over many accounts' histories."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from bench.common import Figure
from ringfence.policy import Account, Event, EventType, evaluate, load_rules


def _history(rng: random.Random, index: int, sessions: int) -> tuple[Account, list[Event]]:
    plan = rng.choice(["free", "pro", "max", "team", "enterprise", "api", "bedrock", "gov"])
    account = Account(f"a{index}", plan)
    rules_kind = {
        "free": EventType.CONSENT,
        "pro": EventType.CONSENT,
        "max": EventType.CONSENT,
        "team": EventType.DPP,
        "enterprise": EventType.DPP,
        "api": EventType.DPP,
    }.get(plan)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events, seq = [], 0
    for s in range(sessions):
        seq += 1
        at += timedelta(hours=rng.randint(1, 48))
        if rules_kind is not None and rng.random() < 0.3:
            events.append(Event(seq, at, account.id, rules_kind, value=rng.random() < 0.7))
            seq += 1
        events.append(Event(seq, at, account.id, EventType.ACTIVITY, f"a{index}s{s}"))
    return account, events


def run(accounts: int, sessions_per_account: int) -> list[Figure]:
    rules = load_rules()
    rng = random.Random(11)
    histories = [_history(rng, i, sessions_per_account) for i in range(accounts)]
    at = datetime(2027, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    decisions = 0
    for account, events in histories:
        decisions += len(evaluate(rules, [account], events, at).sessions)
    rate = decisions / (time.perf_counter() - start)
    start = time.perf_counter()
    rendered = 0
    for account, events in histories:
        rendered += sum(len(d.reason) > 0 for d in evaluate(rules, [account], events, at).sessions.values())
    with_reasons = rendered / (time.perf_counter() - start)
    return [
        Figure(
            f"policy decisions ({accounts:,} accounts x {sessions_per_account} sessions, replay included)",
            rate,
            "decisions/s",
            ">= 100,000",
            rate >= 100_000,
            f"{with_reasons:,.0f}/s when every reason sentence is also rendered ({with_reasons / rate:.2f}x)",
        )
    ]
