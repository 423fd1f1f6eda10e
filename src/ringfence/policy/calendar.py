"""Calendar durations and the one timestamp format of the policy.

Owns: parsing "30d" / "5y" durations, adding them to aware UTC datetimes exactly as POLICY.md says
("30 days" is 30 x 24 hours; "5 years" keeps month, day and time, 29 February becoming 28 February), and the
ISO-8601 UTC text form used in scenarios, decisions and audit records. Knows nothing of plans or sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d{1,4})([dy])$")


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar duration: whole days (24 hours each) or whole calendar years."""

    days: int = 0
    years: int = 0

    def after(self, start: datetime) -> datetime:
        """The instant this duration after `start`."""
        moved = start
        if self.years:
            year = start.year + self.years
            day = start.day
            if start.month == 2 and day == 29 and not _is_leap(year):
                day = 28
            moved = start.replace(year=year, day=day)
        return moved + timedelta(days=self.days)

    def __str__(self) -> str:
        parts = ([f"{self.years}y"] if self.years else []) + ([f"{self.days}d"] if self.days else [])
        return "".join(parts) or "0d"


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def parse_duration(text: str) -> Duration:
    """Parse "<n>d" or "<n>y"; anything else (zero included) is refused."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: expected a positive '<n>d' (days) or '<n>y' (years)")
    count = int(match.group(1))
    return Duration(days=count) if match.group(2) == "d" else Duration(years=count)


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time with an explicit offset ("Z" or "+00:00") into an aware UTC datetime."""
    if not isinstance(text, str):
        raise ValueError(f"invalid time {text!r}: expected an ISO-8601 string such as 2026-01-31T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: expected ISO-8601 such as 2026-01-31T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"invalid time {text!r}: a time zone is required (add 'Z' for UTC)")
    return parsed.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """The canonical text form: UTC, seconds (microseconds only when present), trailing Z."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"
