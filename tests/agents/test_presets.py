"""Agent presets: what each runs for a first and a continuing turn, with what environment; an agent that is not
installed is refused before a session is recorded; `ringfence agent install` refuses bad input and changes nothing."""

from __future__ import annotations

import asyncio
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.agents.install import AgentInstalls, InstallError
from ringfence.agents.presets import AGENT_HOME, PRESETS, Template, agent_of
from ringfence.sessions.manager import Environment, SessionManager
from ringfence.store import accounts
from ringfence.store.db import Store
from ringfence.store.errors import Invalid
from ringfence.store.models import Session as SessionRow
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.sessions.test_manager import NOW, caller, host, manager_for  # noqa: F401 (fixture)


def test_claude_code_runs_in_print_mode_with_its_stream_and_continues() -> None:
    preset = PRESETS["claude-code"]
    first = preset.argv("fix the bug", model="claude-x")
    assert first[:3] == ["env", f"HOME={AGENT_HOME}", "claude"]
    assert "--dangerously-skip-permissions" in first and "--include-partial-messages" in first
    assert first[-2:] == ["--", "fix the bug"] and first[first.index("--model") + 1] == "claude-x"
    assert "--continue" in preset.argv("more", continuing=True) and "--continue" not in first
    assert "--model" not in preset.argv("x")
    quiet = preset.env(telemetry=False)
    assert quiet["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and quiet["DISABLE_TELEMETRY"] == "1"
    assert preset.env(telemetry=True) == {}


def test_codex_runs_exec_json_through_the_gateway_and_resumes_its_last_session() -> None:
    preset = PRESETS["codex"]
    first = preset.argv("fix", model="gpt-x")
    assert "exec" in first and "--json" in first and "--dangerously-bypass-approvals-and-sandbox" in first
    assert any('base_url="http://127.0.0.1:8080/model/openai"' in part for part in first)
    assert "features.plugins=false" in first
    again = preset.argv("more", continuing=True)
    assert again[again.index("exec") : again.index("exec") + 3] == ["exec", "resume", "--last"]


@given(st.text(min_size=1, max_size=200).filter(lambda t: "\x00" not in t))
def test_a_prompt_is_one_argument_after_the_options_whatever_it_says(prompt: str) -> None:
    for preset in PRESETS.values():
        argv = preset.argv(prompt, continuing=False)
        assert argv[-1] == prompt
        if preset.package is not None:
            assert argv[-2] == "--"  # `--help` or `--dangerously-...` in a prompt stays a prompt


def test_an_environment_names_a_preset_or_gives_a_template() -> None:
    assert Environment(agent="codex").runs is PRESETS["codex"]
    assert Environment(agent=("sh", "-c", "{prompt}")).runs == Template(("sh", "-c", "{prompt}"))
    assert Environment().runs is PRESETS["builtin"]
    with pytest.raises(ValueError, match="unknown agent preset 'gemini'"):
        agent_of("gemini")


def test_an_agent_that_is_not_installed_is_refused_before_anything_is_recorded(
    store: Store,
    backend,  # noqa: F811
    host,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")

    async def go() -> None:
        manager: SessionManager = await manager_for(store, backend, host, tmp_path)
        try:
            await manager.start(caller(store, user.id), repo.id, Environment(agent="claude-code"))
        finally:
            await manager.shutdown()

    with pytest.raises(Invalid, match=r"agent claude-code is not installed .*`ringfence agent install claude-code`"):
        asyncio.run(go())
    with store.read() as db:
        assert db.query(SessionRow).count() == 0


def _fake_npm(script: str) -> str:
    """npm runs as nobody when the tests run as root: the stand-in lives where nobody can read it."""
    npm = Path(tempfile.mkdtemp(prefix="rf-fake-npm-")) / "npm"
    npm.parent.chmod(0o755)
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(npm)


def _no_check(name: str, directory: Path, binary: str) -> str:
    raise AssertionError("never reached")


def test_install_refuses_bad_input_and_changes_nothing(tmp_path: Path) -> None:
    installs = AgentInstalls(tmp_path / "data")
    with pytest.raises(InstallError, match="unknown agent 'builtin': installable agents are claude-code, codex"):
        installs.install("builtin", _no_check)
    with pytest.raises(InstallError, match="not a release version"):
        installs.install("codex", _no_check, "latest; rm -rf /")
    # npm's own answer for a version the registry does not have (the registry is not reached from tests)
    before = set(Path(tempfile.gettempdir()).glob("ringfence-agent-codex-*"))
    said = "npm error code ETARGET\nnpm error notarget No matching version found for @openai/codex@9.9.9."
    npm = _fake_npm(f"echo '{said}' >&2\nexit 1\n")
    with pytest.raises(InstallError, match=r"npm has no version 9\.9\.9 of @openai/codex"):
        AgentInstalls(tmp_path / "data", npm=npm).install("codex", _no_check, "9.9.9")
    with pytest.raises(InstallError, match="npm is not installed"):
        AgentInstalls(tmp_path / "data", npm=str(tmp_path / "no-npm")).install("codex", _no_check)
    assert AgentInstalls(tmp_path / "data").installed() == []
    assert set(Path(tempfile.gettempdir()).glob("ringfence-agent-codex-*")) == before  # staging removed
    shutil.rmtree(Path(npm).parent)


def test_handing_an_install_to_root_never_follows_a_symlink_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """npm (and a package's install script) ran as nobody in the staging directory, and a process it left behind
    may swap an entry for a symlink to a host file between the walk's listing and the ownership change: nothing
    outside the staging directory may change (a host file losing its write bits, /tmp's sticky 1777 among them)."""
    from ringfence.agents import install

    staging, outside = tmp_path / "staging", tmp_path / "host-file"
    staging.mkdir()
    outside.write_text("host")
    outside.chmod(0o666)
    (staging / "swapped").symlink_to(outside)
    monkeypatch.setattr(install.os.path, "islink", lambda _path: False)  # the entry was a file when it was checked
    install._give_to_root(staging)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o666
