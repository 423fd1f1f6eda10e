"""The vocabulary of the policy: accounts, the events of their history, and the decisions made from them.

Owns: small frozen values. An `Event` is one entry of an account's history, ordered by `seq` (never by
wall-clock time). A `SessionDecision` is what the policy says of one session at a time T. Knows no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from ringfence.policy.calendar import format_time

Rating = Literal[1, 2, 3, "dismiss"]
RATINGS: tuple[Rating, ...] = (1, 2, 3, "dismiss")
SessionState = Literal["active", "expired", "deleted"]


class EventType(StrEnum):
    """The kinds of history entries (POLICY.md, scenario format)."""

    CONSENT = "consent"  # consumer training setting, value bool
    DPP = "dpp"  # organization's Development Partner Program switch, value bool
    ZDR = "zdr"  # organization's zero-data-retention switch, value bool
    ACTIVITY = "activity"  # a session started, prompted or resumed
    DELETE = "delete"  # the user deleted a session
    FEEDBACK = "feedback"  # feedback with its transcript on a session
    RATING = "rating"  # a session-quality rating, value 1, 2, 3 or "dismiss"


class PolicyError(ValueError):
    """A history the policy refuses. The message names the offending account or event."""

    def __init__(self, message: str, *, seq: int | None = None, account: str | None = None) -> None:
        self.seq = seq
        self.account = account
        self.detail = message
        where = f"event seq {seq}" if seq is not None else (f"account {account!r}" if account else "")
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True, slots=True)
class Account:
    """A policy account: a consumer user, or an organization on a commercial plan."""

    id: str
    plan: str
    zdr: bool = False  # the organization's ZDR switch before the first event


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an account's history. `zdr_key` marks an activity that started a session with a ZDR API key."""

    seq: int
    at: datetime
    account: str
    type: EventType
    session: str | None = None
    value: bool | int | str | None = None
    zdr_key: bool = False


@dataclass(frozen=True, slots=True)
class SessionDecision:
    """The policy's word on one session at time `at`: kept or not, until when, and trainable or not, with why."""

    session: str
    account: str
    state: SessionState
    zdr: bool
    eligible: bool
    reason_code: str
    retention_rule: str
    delete_after: datetime | None
    last_activity: datetime
    last_activity_seq: int
    reason_fields: tuple[tuple[str, datetime | str], ...] = ()
    template: str = field(default="", compare=False, repr=False)

    @property
    def reason(self) -> str:
        """The sentence a user reads, rendered on demand (most callers need only `eligible` and the code)."""
        return self.template.format_map(
            {k: format_time(v) if isinstance(v, datetime) else v for k, v in self.reason_fields}
        )


@dataclass(frozen=True, slots=True)
class FeedbackDecision:
    """Feedback kept for a session: until when (None once its session was deleted)."""

    session: str
    account: str
    delete_after: datetime | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every decision for a history at one time, stamped with the policy version and hash."""

    policy_version: str
    policy_sha256: str
    at: datetime
    sessions: dict[str, SessionDecision]
    feedback: dict[str, FeedbackDecision]
    ratings: dict[str, Rating]
