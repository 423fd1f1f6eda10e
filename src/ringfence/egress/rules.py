"""Host rules and the per-session egress policy: which destination a session may ask for, decided on the name.

Owns: `HostRule` (an exact host or a `*.` wildcard for its subdomains, optionally limited to ports; normalized
like every target; refused at load when too broad or malformed), the packaged trusted preset and telemetry list,
and `EgressPolicy.decide`, the pure decision for one target. Deny lists win over everything; `report` turns a
name-based denial into an allow that records "would deny". Address safety is not decided here: it applies in
every mode, after this decision (ringfence.net.dial).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Literal

from ringfence.net.hostport import HostError, Target, local_by_definition, parse_host

Mode = Literal["none", "trusted", "custom", "full"]
MODES: tuple[Mode, ...] = ("none", "trusted", "custom", "full")


class RuleError(ValueError):
    """A host rule or policy that cannot be used; the message names the rule."""


def check_mode_allowed(what: str, mode: str, allowed: Collection[str]) -> None:
    """The operator's ceiling on network modes (setting `sandbox_network_modes`): an environment (its agent's and its
    setup script's policies alike) may use only the modes it lists. The one rule, at save and at session start."""
    if mode not in allowed:
        raise RuleError(
            f"{what}: mode {mode!r} is not allowed on this server (the operator allows {', '.join(sorted(allowed))})"
        )


@dataclass(frozen=True, slots=True)
class HostRule:
    """`example.com`, `*.example.com` (subdomains only, not the apex), either with `:443` or `:80,443`."""

    host: str  # normalized; for a wildcard, the suffix after '*.'
    wildcard: bool
    ports: frozenset[int] | None = None
    text: str = ""  # as written, for reasons and the audit

    @classmethod
    def parse(cls, text: str) -> HostRule:
        raw = text.strip()
        if not raw:
            raise RuleError("an empty host rule")
        host_text, ports = raw, None
        if raw.count(":") == 1 or (raw.startswith("[") and "]:" in raw):
            host_text, _, port_text = raw.rpartition(":")
            try:
                ports = frozenset(int(p) for p in port_text.split(","))
            except ValueError:
                raise RuleError(f"host rule {raw!r}: ports {port_text!r} are not numbers") from None
            if not ports or not all(1 <= p <= 65535 for p in ports):
                raise RuleError(f"host rule {raw!r}: ports must be 1-65535")
        wildcard = host_text.startswith("*.")
        body = host_text[2:] if wildcard else host_text
        if "*" in body:
            raise RuleError(f"host rule {raw!r}: '*' is allowed only as a whole leading label ('*.example.com')")
        try:
            # The parser's messages name what they judged: the rule itself, or its name part when there is more.
            host, literal = parse_host(body, "host rule" if body == raw else f"host rule {raw!r}: name")
        except HostError as exc:
            raise RuleError(str(exc)) from None
        if wildcard and (literal is not None or "." not in host):
            raise RuleError(f"host rule {raw!r} is too broad: a wildcard needs a domain of two labels or more")
        return cls(host, wildcard, ports, raw)

    def matches(self, target: Target) -> bool:
        if self.ports is not None and target.port not in self.ports:
            return False
        if self.wildcard:
            return target.literal is None and target.host.endswith("." + self.host)
        return target.host == self.host


def parse_rules(lines: Iterable[str], source: str) -> tuple[HostRule, ...]:
    """Rules from a list (comments '#' and blank lines skipped); the first bad one is refused, named with its
    line."""
    rules = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                rules.append(HostRule.parse(text))
            except RuleError as exc:
                raise RuleError(f"{source} line {number}: {exc}") from None
    return tuple(rules)


@cache
def trusted_preset() -> tuple[HostRule, ...]:
    text = resources.files("ringfence.egress").joinpath("data/trusted-domains.txt").read_text()
    return parse_rules(text.splitlines(), "trusted preset")


@cache
def trusted_categories() -> tuple[tuple[str, HostRule], ...]:
    """The trusted preset with the category each rule is listed under (its preceding '# ' heading line)."""
    text = resources.files("ringfence.egress").joinpath("data/trusted-domains.txt").read_text()
    category = ""
    found: list[tuple[str, HostRule]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            if heading and len(heading) < 60 and not heading.endswith("."):
                category = heading
            continue
        found.extend((category, rule) for rule in parse_rules([line], "trusted preset"))
    return tuple(found)


@cache
def telemetry_hosts() -> tuple[HostRule, ...]:
    text = resources.files("ringfence.egress").joinpath("data/telemetry-hosts.txt").read_text()
    return parse_rules(text.splitlines(), "telemetry list")


@dataclass(frozen=True, slots=True)
class EgressDecision:
    allowed: bool
    rule: str  # what decided: "deny:<rule>", "telemetry:<rule>", "trusted:<rule>", "allow:<rule>", "mode:<mode>"
    reason: str  # one sentence a human or an agent can act on
    would_deny: bool = False  # report mode: allowed, but the policy would have denied


@dataclass(frozen=True)
class EgressPolicy:
    """One session's destinations. `allow` adds to the preset in `trusted` mode and is the whole list in
    `custom`; `deny` wins in every mode; `deny_telemetry` is the organization's switch."""

    mode: Mode = "trusted"
    allow: tuple[HostRule, ...] = ()
    deny: tuple[HostRule, ...] = ()
    report: bool = False
    deny_telemetry: bool = False
    preset: tuple[HostRule, ...] = field(default_factory=trusted_preset)
    fixed_deny: tuple[HostRule, ...] = ()  # denied even in report mode (the repository host: G10)
    model_hosts: tuple[HostRule, ...] = ()  # the same for model providers' APIs (M2): reached only by the gateway

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RuleError(f"network mode {self.mode!r} is not one of: {', '.join(MODES)}")

    @classmethod
    def build(
        cls,
        mode: str,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        *,
        report: bool = False,
        deny_telemetry: bool = False,
    ) -> EgressPolicy:
        if mode not in MODES:
            raise RuleError(f"network mode {mode!r} is not one of: {', '.join(MODES)}")
        return cls(
            mode,
            parse_rules(allow, "allow list"),
            parse_rules(deny, "deny list"),
            report,
            deny_telemetry,
        )

    def _by_name(self, target: Target) -> EgressDecision:
        for rule in self.deny:
            if rule.matches(target):
                return EgressDecision(False, f"deny:{rule.text}", f"{target} is on the deny list ({rule.text})")
        if self.deny_telemetry:
            for rule in telemetry_hosts():
                if rule.matches(target):
                    return EgressDecision(
                        False,
                        f"telemetry:{rule.text}",
                        f"{target} is telemetry ({rule.text}), which this organization turned off",
                    )
        if self.mode == "none":
            return EgressDecision(False, "mode:none", "this environment's network mode is 'none': no egress at all")
        if self.mode == "full":
            return EgressDecision(True, "mode:full", "network mode 'full' allows any public destination")
        if self.mode == "trusted":
            for rule in self.preset:
                if rule.matches(target):
                    return EgressDecision(True, f"trusted:{rule.text}", f"in the trusted preset ({rule.text})")
        for rule in self.allow:
            if rule.matches(target):
                return EgressDecision(True, f"allow:{rule.text}", f"on the allow list ({rule.text})")
        listed = "the trusted preset or the allow list" if self.mode == "trusted" else "the allow list"
        return EgressDecision(False, f"mode:{self.mode}", f"{target} is not in {listed} of network mode '{self.mode}'")

    def decide(self, target: Target) -> EgressDecision:
        # Refused in every mode, report included, before the host rules (and so before any lookup).
        if target.literal is None and (local := local_by_definition(target.host)) is not None:
            return EgressDecision(False, "name:local", local)
        for rule in self.fixed_deny:
            if rule.matches(target):
                return EgressDecision(
                    False,
                    f"repository-host:{rule.text}",
                    f"{target} is the repository host: this session reaches it only through the credential gateway",
                )
        for rule in self.model_hosts:
            if rule.matches(target):
                return EgressDecision(
                    False,
                    f"model-host:{rule.text}",
                    f"{target} is a model provider's API: call it through the gateway at ANTHROPIC_BASE_URL or "
                    "OPENAI_BASE_URL, which adds the key (a key of the agent's own is never used)",
                )
        decision = self._by_name(target)
        if not decision.allowed and self.report:
            return EgressDecision(True, decision.rule, f"report mode: would deny: {decision.reason}", True)
        return decision


# Model APIs every session reaches through the gateway only, whether or not a provider is configured for them.
DEFAULT_MODEL_HOSTS = ("api.anthropic.com", "api.openai.com")


def session_policy(
    mode: str,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    *,
    repository_host: str | None = None,
    model_hosts: Iterable[str] = (),
    report: bool = False,
    deny_telemetry: bool = False,
) -> EgressPolicy:
    """A session's egress policy: the environment's, plus a deny of the repository host itself, on every port
    (SECURITY-CASES G10). The credential gateway is the session's only route to its repository: an SSH remote, or
    HTTPS straight to the host, is refused here (report mode records it as 'would deny' but it is still denied:
    the deny list is not subject to report mode)."""
    policy = EgressPolicy.build(mode, allow, deny, report=report, deny_telemetry=deny_telemetry)
    models = tuple(HostRule.parse(host) for host in dict.fromkeys((*DEFAULT_MODEL_HOSTS, *model_hosts)))
    if repository_host is None:
        return replace(policy, model_hosts=models)
    host_rule = HostRule.parse(repository_host)
    if host_rule.wildcard or host_rule.ports is not None:
        raise RuleError(f"repository host {repository_host!r} must be a plain host name")
    return replace(policy, deny=(*policy.deny, host_rule), fixed_deny=(host_rule,), model_hosts=models)
