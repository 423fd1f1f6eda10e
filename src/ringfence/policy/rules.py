"""The policy rules, loaded from the versioned data file shipped in the package.

Owns: reading `data/policy.toml` (or another file an operator names) into frozen values, validating it so that a
bad file is refused at load time, and the file's content hash that is stamped into every decision. Knows nothing
of accounts or events; ringfence.policy.evaluate applies these rules.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ringfence.policy.calendar import Duration, parse_duration

Training = Literal["consent", "dpp", "never"]
_TRAINING: tuple[Training, ...] = ("consent", "dpp", "never")


class RulesError(ValueError):
    """The policy file is unusable; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One named retention rule: how long content is kept, and a sentence describing it."""

    name: str
    duration: Duration
    describe: str


@dataclass(frozen=True, slots=True)
class PlanRule:
    """What a plan means for training and retention."""

    name: str
    account_class: str
    training: Training
    can_join_dpp: bool
    can_have_zdr: bool
    retention: str  # for consent-class plans: the rule used when the setting was off at last activity
    retention_on: str | None
    retention_opt_out: str | None
    deny_nonessential_by_default: bool

    @property
    def is_consumer(self) -> bool:
        return self.training == "consent"


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """The whole policy: version, content hash, plans, retention rules and the reason sentences."""

    version: str
    sha256: str
    plans: Mapping[str, PlanRule]
    retention: Mapping[str, RetentionRule]
    reasons: Mapping[str, str]

    @property
    def stamp(self) -> str:
        """The short identifier stamped into records: version plus the first 16 hex digits of the hash."""
        return f"{self.version}+{self.sha256[:16]}"

    def plan(self, name: str) -> PlanRule:
        try:
            return self.plans[name]
        except KeyError:
            known = ", ".join(sorted(self.plans))
            raise KeyError(f"unknown plan {name!r} (known plans: {known})") from None


_REQUIRED_REASONS = (
    "eligible-consent",
    "eligible-dpp",
    "deleted",
    "zdr",
    "expired",
    "consent-off-at-activity",
    "consent-turned-off",
    "dpp-off-at-activity",
    "dpp-turned-off",
    "plan-never",
)
_REQUIRED_RETENTION = ("zdr", "feedback")


def load_rules(path: Path | None = None) -> PolicyRules:
    """Load and validate the policy file (the packaged one when `path` is None)."""
    if path is None:
        raw = resources.files("ringfence.policy").joinpath("data/policy.toml").read_bytes()
    else:
        raw = Path(path).read_bytes()
    return parse_rules(raw)


def parse_rules(raw: bytes) -> PolicyRules:
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"policy file is not valid TOML: {exc}") from None
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError("policy file: 'version' must be a non-empty string")
    retention = _parse_retention(_table(doc, "retention"))
    classes = _table(doc, "classes")
    plans = {name: _parse_plan(name, entry, classes, retention) for name, entry in _table(doc, "plans").items()}
    reasons = _table(doc, "reasons")
    for code in _REQUIRED_REASONS:
        if not isinstance(reasons.get(code), str):
            raise RulesError(f"policy file: reasons.{code} is missing")
    for rule in _REQUIRED_RETENTION:
        if rule not in retention:
            raise RulesError(f"policy file: retention.{rule} is missing")
    return PolicyRules(
        version=version,
        sha256=hashlib.sha256(raw).hexdigest(),
        plans=MappingProxyType(plans),
        retention=MappingProxyType(retention),
        reasons=MappingProxyType({k: str(v) for k, v in reasons.items()}),
    )


def _table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict) or not value:
        raise RulesError(f"policy file: table [{key}] is missing or empty")
    return value


def _parse_retention(table: Mapping[str, Any]) -> dict[str, RetentionRule]:
    rules = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise RulesError(f"policy file: retention.{name} must be a table")
        try:
            duration = parse_duration(str(entry.get("duration", "")))
        except ValueError as exc:
            raise RulesError(f"policy file: retention.{name}: {exc}") from None
        rules[name] = RetentionRule(name, duration, str(entry.get("describe", name)))
    return rules


def _parse_plan(name: str, entry: Any, classes: Mapping[str, Any], retention: Mapping[str, RetentionRule]) -> PlanRule:
    where = f"policy file: plans.{name}"
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
        raise RulesError(f"{where}: needs a 'class'")
    cls = classes.get(entry["class"])
    if not isinstance(cls, dict):
        raise RulesError(f"{where}: unknown class {entry['class']!r}")
    training = cls.get("training")
    if training not in _TRAINING:
        raise RulesError(f"{where}: class {entry['class']!r} has training {training!r}, expected one of {_TRAINING}")
    if training == "consent":
        names = (cls.get("retention_off"), cls.get("retention_on"), cls.get("retention_opt_out"))
    else:
        names = (cls.get("retention"), None, None)
    for rule in names[: 3 if training == "consent" else 1]:
        if rule not in retention:
            raise RulesError(f"{where}: retention rule {rule!r} is not defined under [retention]")
    return PlanRule(
        name=name,
        account_class=entry["class"],
        training=training,
        can_join_dpp=training == "dpp",
        can_have_zdr=bool(entry.get("zdr", False)),
        retention=str(names[0]),
        retention_on=names[1],
        retention_opt_out=names[2],
        deny_nonessential_by_default=bool(cls.get("deny_nonessential_by_default", False)),
    )
