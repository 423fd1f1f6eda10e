"""The training export: exactly what the policy allows at T, reproducible, with an audited manifest."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ringfence.audit.table import audit_records
from ringfence.policy import PolicyError
from ringfence.store import accounts, content
from ringfence.store.db import Store
from ringfence.store.errors import Invalid
from ringfence.store.export import export_training
from tests.conftest import T0
from tests.store.helpers import consumer, org_with_member

DAY = timedelta(days=1)


def populate(store: Store) -> dict[str, str]:
    on, off = consumer(store, training=True), consumer(store, training=False)
    org, member = org_with_member(store, "team")
    accounts.set_org_switch(store, org.id, "dpp", True, T0, actor=member.id)
    _gov_org, gov_member = org_with_member(store, "gov")
    made = {}
    for name, user in [("on", on), ("off", off), ("dpp", member), ("gov", gov_member), ("rated", on)]:
        session = content.start_session(store, user.id, T0 + DAY, repository_id=None)
        content.put_content(store, session.id, "prompt", f"prompt of {name}", T0 + DAY, turn=1)
        content.put_content(store, session.id, "code_change", f"diff of {name}", T0 + DAY, turn=1)
        made[name] = session.id
    content.rate(store, made["rated"], 3, T0 + DAY, actor=on.id)
    content.add_feedback(store, made["on"], "FEEDBACK TRANSCRIPT", T0 + DAY, actor=on.id)
    made["on_user"] = on.id
    return made


def test_export_holds_exactly_the_eligible_sessions(store: Store, tmp_path: Path) -> None:
    made = populate(store)
    out = tmp_path / "export.jsonl"
    manifest = export_training(store, T0 + 2 * DAY, out, T0 + 3 * DAY, actor="op")
    assert set(manifest.sessions) == {made["on"], made["dpp"], made["rated"]}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["session"] for line in lines] == sorted(manifest.sessions)
    texts = {item["text"] for line in lines for item in line["items"]}
    assert texts == {"prompt of on", "diff of on", "prompt of dpp", "diff of dpp", "prompt of rated", "diff of rated"}
    assert "FEEDBACK" not in out.read_text() and "rating" not in out.read_text()
    saved = json.loads(Path(f"{out}.manifest.json").read_text())
    assert saved["policy_version"] == store.rules.version and saved["at"] == "2026-01-03T00:00:00Z"
    assert saved["content_sha256"] == manifest.content_sha256
    with store.read() as db:
        record = db.execute(select(audit_records.c.data).where(audit_records.c.kind == "export.training")).scalar()
    audited = json.loads(record)
    assert audited["sessions"] == manifest.sessions and audited["content_sha256"] == manifest.content_sha256
    assert b"prompt of" not in record


def test_same_inputs_same_output(store: Store, tmp_path: Path) -> None:
    populate(store)
    first = export_training(store, T0 + 2 * DAY, tmp_path / "a.jsonl", T0 + 3 * DAY, actor="op")
    second = export_training(store, T0 + 2 * DAY, tmp_path / "b.jsonl", T0 + 4 * DAY, actor="op")
    assert first == second
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_deletion_and_opt_out_after_an_export_shrink_later_ones(store: Store, tmp_path: Path) -> None:
    made = populate(store)
    before = export_training(store, T0 + 2 * DAY, tmp_path / "a.jsonl", T0 + 2 * DAY, actor="op")
    content.delete_session(store, made["dpp"], T0 + 3 * DAY, actor="op")
    accounts.set_training(store, made["on_user"], False, T0 + 3 * DAY, actor=made["on_user"])
    after = export_training(store, T0 + 4 * DAY, tmp_path / "b.jsonl", T0 + 4 * DAY, actor="op")
    assert set(after.sessions) < set(before.sessions)
    assert after.sessions == []


def test_an_export_in_the_future_or_before_recorded_events_is_refused(store: Store, tmp_path: Path) -> None:
    populate(store)
    with pytest.raises(Invalid, match="in the future"):
        export_training(store, T0 + 9 * DAY, tmp_path / "x.jsonl", T0 + 3 * DAY, actor="op")
    with pytest.raises(PolicyError, match="later than the decision time"):
        export_training(store, T0, tmp_path / "x.jsonl", T0 + 3 * DAY, actor="op")
    assert not (tmp_path / "x.jsonl").exists()


def test_a_session_deleted_while_the_export_runs_is_left_out(store: Store, tmp_path: Path, monkeypatch) -> None:
    made = populate(store)
    from ringfence.store import export as export_module

    selected = export_module.eligible_sessions

    def select_then_delete(store_: Store, at):  # the user deletes right after the selection
        chosen = selected(store_, at)
        content.delete_session(store_, made["dpp"], T0 + 2 * DAY, actor="user")
        return chosen

    monkeypatch.setattr(export_module, "eligible_sessions", select_then_delete)
    manifest = export_training(store, T0 + 2 * DAY, tmp_path / "x.jsonl", T0 + 2 * DAY, actor="op")
    assert made["dpp"] not in manifest.sessions
    assert set(manifest.sessions) == {made["on"], made["rated"]}
    assert "prompt of dpp" not in (tmp_path / "x.jsonl").read_text()
