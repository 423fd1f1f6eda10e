"""Host rules and the per-session decision (E9, E10, E20, the telemetry switch), as tables and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.egress.rules import EgressPolicy, HostRule, RuleError, trusted_preset
from ringfence.net.hostport import parse_target


@pytest.mark.parametrize(
    "rule", ["*", "*.com", "ex*ample.com", "*.", "**.example.com", "a.*.example.com", "*.*.com", "x:0", "x:1,99999",
             "*.127.0.0.1", "exa mple.com", ""]
)  # fmt: skip
def test_invalid_rules_are_refused_at_load(rule: str) -> None:
    with pytest.raises(RuleError) as refused:
        HostRule.parse(rule)
    if rule:  # named first, and not twice over
        assert str(refused.value).startswith(f"host rule {rule!r}"), refused.value
        assert f"{rule!r} {rule!r}" not in str(refused.value), refused.value


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("exa mple.com", "host rule 'exa mple.com' holds a forbidden character (' ')"),
        ("*.exa mple.com:443", "host rule '*.exa mple.com:443': name 'exa mple.com' holds a forbidden character (' ')"),
        ("a..b", "host rule 'a..b' has an empty label"),
    ],
)
def test_a_refused_rule_is_named_once_with_the_reason(rule: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        HostRule.parse(rule)


def test_the_shipped_preset_loads_and_has_no_over_broad_rule() -> None:
    rules = trusted_preset()
    assert len(rules) > 150 and all(not r.wildcard or "." in r.host for r in rules)


@pytest.mark.parametrize(
    ("mode", "allow", "deny", "target", "allowed", "rule"),
    [
        ("trusted", [], [], "api.anthropic.com:443", True, "trusted:api.anthropic.com"),
        ("trusted", [], [], "evil.example:443", False, "mode:trusted"),
        ("trusted", ["pypi.internal"], [], "pypi.internal:443", True, "allow:pypi.internal"),
        ("trusted", [], ["github.com"], "github.com:443", False, "deny:github.com"),
        ("custom", ["*.example.com"], ["bad.example.com"], "bad.example.com:443", False, "deny:bad.example.com"),
        ("custom", ["*.example.com"], [], "ok.example.com:443", True, "allow:*.example.com"),
        ("custom", [], [], "api.anthropic.com:443", False, "mode:custom"),
        ("full", [], [], "anything.example:8080", True, "mode:full"),
        ("full", [], ["*.bad.example"], "x.bad.example:8080", False, "deny:*.bad.example"),
        ("none", ["x.example"], [], "x.example:443", False, "mode:none"),
        ("custom", ["bücher.example"], [], "xn--bcher-kva.example:443", True, "allow:bücher.example"),
    ],
)
def test_decisions(mode: str, allow: list[str], deny: list[str], target: str, allowed: bool, rule: str) -> None:
    decision = EgressPolicy.build(mode, allow, deny).decide(parse_target(target))
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_telemetry_switch_and_report_mode() -> None:
    target = parse_target("statsig.anthropic.com:443")
    assert EgressPolicy.build("trusted").decide(target).allowed
    off = EgressPolicy.build("trusted", deny_telemetry=True).decide(target)
    assert not off.allowed and off.rule.startswith("telemetry:")
    report = EgressPolicy.build("custom", report=True).decide(parse_target("x.example:1"))
    assert report.allowed and report.would_deny and report.rule == "mode:custom"


labels = st.from_regex(r"\A[a-z][a-z0-9]{0,6}\Z")


@given(st.lists(labels, min_size=2, max_size=3), st.lists(labels, min_size=1, max_size=4))
def test_a_wildcard_matches_exactly_the_proper_subdomains(domain: list[str], other: list[str]) -> None:
    suffix = ".".join(domain)
    rule = HostRule.parse(f"*.{suffix}")
    candidate = ".".join(other)
    sub = parse_target(f"{candidate}.{suffix}:443")
    assert rule.matches(sub)
    assert not rule.matches(parse_target(f"{suffix}:443"))
    glued = parse_target(f"{candidate}{suffix}:443")  # evilexample.com
    assert not rule.matches(glued)
    assert rule.matches(parse_target(f"{candidate}.{suffix}.:443".upper()))
    anywhere = parse_target(f"{suffix}.{candidate}:443")  # the suffix at the front is not a subdomain of it
    assert rule.matches(anywhere) == anywhere.host.endswith("." + suffix)


@pytest.mark.parametrize("report", [False, True])
@pytest.mark.parametrize("target", ["github.com:22", "github.com:443", "GITHUB.COM.:443", "github.com:9418"])
def test_g10_the_repository_host_is_reachable_only_through_the_gateway(target: str, report: bool) -> None:
    from ringfence.egress.rules import session_policy

    policy = session_policy("trusted", repository_host="github.com", report=report)
    decision = policy.decide(parse_target(target))
    assert not decision.allowed and decision.rule == "repository-host:github.com"
    assert policy.decide(parse_target("docs.claude.com:443")).allowed  # the rest of the preset is untouched


@pytest.mark.parametrize("mode", ["trusted", "custom", "full"])
@pytest.mark.parametrize("report", [False, True])
@pytest.mark.parametrize("target", ["api.anthropic.com:443", "API.OPENAI.COM.:443", "llm.corp.example:8443"])
def test_m2_model_apis_have_one_route_the_gateway(mode: str, report: bool, target: str) -> None:
    """Model traffic goes through the gateway only: the providers' own hosts (and every configured provider's) are
    refused in every mode, report included, even when an allow list names them."""
    from ringfence.egress.rules import session_policy

    allow = ["api.anthropic.com", "api.openai.com", "llm.corp.example"] if mode == "custom" else []
    policy = session_policy(mode, allow, model_hosts=["llm.corp.example"], report=report)
    decision = policy.decide(parse_target(target))
    assert not decision.allowed and decision.rule.startswith("model-host:")
    assert "ANTHROPIC_BASE_URL" in decision.reason
