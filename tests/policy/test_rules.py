from pathlib import Path

import pytest

from ringfence.policy import RulesError, evaluate, load_rules
from ringfence.policy.rules import parse_rules
from ringfence.policy.scenario import parse_scenario

PACKAGED = Path(load_rules.__code__.co_filename).parent / "data" / "policy.toml"


def test_packaged_rules_cover_every_plan_of_the_policy(rules) -> None:
    assert set(rules.plans) == {
        "free",
        "pro",
        "max",
        "team",
        "enterprise",
        "api",
        "bedrock",
        "vertex",
        "foundry",
        "gov",
    }
    assert {p for p, r in rules.plans.items() if r.is_consumer} == {"free", "pro", "max"}
    assert {p for p, r in rules.plans.items() if r.can_join_dpp} == {"team", "enterprise", "api"}
    assert {p for p, r in rules.plans.items() if r.can_have_zdr} == {"enterprise", "api"}
    assert {p for p, r in rules.plans.items() if r.deny_nonessential_by_default} == {"bedrock", "vertex", "foundry"}


def test_version_and_hash_identify_the_file(rules) -> None:
    assert rules.version
    assert len(rules.sha256) == 64
    assert rules.stamp.startswith(rules.version + "+")


def test_changing_a_number_in_the_data_changes_decisions_without_code(tmp_path: Path) -> None:
    text = PACKAGED.read_text().replace(
        '[retention.commercial]\nduration = "30d"', '[retention.commercial]\nduration = "7d"'
    )
    changed = parse_rules(text.encode())
    scenario = parse_scenario(
        '{"accounts":[{"id":"o","plan":"team"}],"events":[{"seq":1,"at":"2026-01-01T00:00:00Z","account":"o",'
        '"type":"activity","session":"s"}],"at":"2026-01-02T00:00:00Z"}'
    )
    decided = evaluate(changed, scenario.accounts, scenario.events, scenario.at).sessions["s"]
    assert decided.delete_after.isoformat() == "2026-01-08T00:00:00+00:00"
    assert changed.sha256 != load_rules().sha256


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('version = "', 'version_ = "'), "'version'"),
        (lambda t: t.replace('duration = "30d"', 'duration = "0d"', 1), "invalid duration"),
        (lambda t: t.replace('class = "gov"\n', 'class = "nope"\n'), "unknown class 'nope'"),
        (lambda t: t.replace('[classes.gov]\ntraining = "never"', '[classes.gov]\ntraining = "x"'), "training 'x'"),
        (lambda t: t.replace("[retention.zdr]", "[retention.zzz]"), "retention.zdr is missing"),
        (lambda t: t.replace('retention = "commercial"', 'retention = "nope"', 1), "'nope' is not defined"),
        (lambda t: t.replace("plan-never = ", "plan-nevr = "), "reasons.plan-never is missing"),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_a_bad_policy_file_is_refused_at_load(edit, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(edit(PACKAGED.read_text()).encode())


def test_load_from_a_named_file(tmp_path: Path) -> None:
    copy = tmp_path / "policy.toml"
    copy.write_bytes(PACKAGED.read_bytes())
    assert load_rules(copy).sha256 == load_rules().sha256
