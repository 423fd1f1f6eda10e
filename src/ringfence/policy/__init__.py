"""The data-usage policy as code: versioned rules (data/policy.toml) and one pure evaluation function.

Owns: deciding, for a history of accounts, settings and sessions replayed in seq order, what may run, what is
kept and until when, and what may be exported for training at a time T. Knows nothing of I/O, databases or clocks:
time is always an argument.
"""

from ringfence.policy.calendar import Duration, format_time, parse_duration, parse_time
from ringfence.policy.evaluate import Replay, decide, evaluate, replay
from ringfence.policy.model import (
    Account,
    Event,
    EventType,
    Explanation,
    FeedbackDecision,
    PolicyError,
    SessionDecision,
)
from ringfence.policy.rules import PlanRule, PolicyRules, RetentionRule, RulesError, load_rules
from ringfence.policy.scenario import Scenario, ScenarioError, explain, parse_scenario, render

__all__ = [
    "Account",
    "Duration",
    "Event",
    "EventType",
    "Explanation",
    "FeedbackDecision",
    "PlanRule",
    "PolicyError",
    "PolicyRules",
    "Replay",
    "RetentionRule",
    "RulesError",
    "Scenario",
    "ScenarioError",
    "SessionDecision",
    "decide",
    "evaluate",
    "explain",
    "format_time",
    "load_rules",
    "parse_duration",
    "parse_scenario",
    "parse_time",
    "render",
    "replay",
]
