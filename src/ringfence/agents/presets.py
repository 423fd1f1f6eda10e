"""Agent presets: what it takes to run Claude Code, Codex or the built-in agent in a session, and command templates.

Owns: `AgentPreset` (argv for a first and a continuing turn, the environment variables that point the agent at the
gateway and switch its telemetry off, where its state lives, its stream parser, its npm package and pinned
version) and `Template` (an operator's own command, its output kept as text). Both answer `argv(prompt,
continuing=, model=)`. The sandbox is the boundary: presets run the agent without its own permission prompts (never
as root: sandboxes run as an unprivileged uid), in the clone (`/workspace/repo`), with `HOME` at `AGENT_HOME`,
outside the repository, so its state never lands in the code change and can be kept between turns and sandboxes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ringfence.agents.streams import ClaudeStream, CodexStream, StreamParser

AGENT_HOME = "/workspace/.agent-home"  # the agent's HOME: its conversation state, never in the repository
GATEWAY = "http://127.0.0.1:8080"  # the session gateway inside every sandbox (ringfence.sandbox.spec.GATEWAY_PORT)
BUILTIN_PATH = "/workspace/.ringfence-agent.py"

# Telemetry switches every Node-based agent honours; with telemetry off they are set, and the telemetry hosts are
# denied by the egress proxy as well.
_COMMON_QUIET = {"DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1"}


@dataclass(frozen=True)
class Template:
    """An operator's command: `{prompt}` is replaced by the prompt; its output is kept as plain text."""

    command: tuple[str, ...]
    name: str = "template"
    package: str | None = None
    parser: Callable[[], StreamParser] | None = None
    keeps_state: bool = False

    def argv(self, prompt: str, *, continuing: bool = False, model: str | None = None) -> list[str]:
        return [part.replace("{prompt}", prompt) for part in self.command]

    def env(self, *, telemetry: bool) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class AgentPreset:
    """A known agent. `first`/`continuing` are argv with `{prompt}` and `{model_args}` (the `--model` option when
    the environment names a model); the prompt always follows `--`, so a prompt that looks like an option (`--help`,
    `--dangerously-...`) stays a prompt; `package`/`version` are what `ringfence agent install` fetches from npm, and
    `binary` its command under the install's `bin`."""

    name: str
    first: tuple[str, ...]
    continuing: tuple[str, ...]
    model_flag: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    quiet: Mapping[str, str] = field(default_factory=dict)  # set when telemetry is off
    parser: Callable[[], StreamParser] | None = None
    package: str | None = None
    version: str | None = None
    binary: str | None = None
    keeps_state: bool = True

    def argv(self, prompt: str, *, continuing: bool = False, model: str | None = None) -> list[str]:
        argv: list[str] = ["env", f"HOME={AGENT_HOME}"] if self.keeps_state else []
        for part in self.continuing if continuing else self.first:
            if part == "{model_args}":
                argv += [*self.model_flag, model] if model else []
            else:
                argv.append(part.replace("{prompt}", prompt))
        return argv

    def env(self, *, telemetry: bool) -> dict[str, str]:
        return {**self.variables, **({} if telemetry else {**_COMMON_QUIET, **self.quiet})}


_CLAUDE_FLAGS = (
    "--output-format",
    "stream-json",
    "--verbose",
    "--include-partial-messages",
    "--dangerously-skip-permissions",  # the sandbox is the boundary; refused by Claude Code as root, and never root
)
# Codex's own provider table, pointed at the gateway's openai route; the key it sends is the placeholder in
# OPENAI_API_KEY, replaced by the gateway. Telemetry and update checks off by its own settings.
_CODEX_PROVIDER = "model_providers.ringfence=" + (
    '{name="ringfence", base_url="' + GATEWAY + '/model/openai", env_key="OPENAI_API_KEY", wire_api="responses"}'
)
_CODEX_CONFIG = (
    "-c",
    'model_provider="ringfence"',
    "-c",
    _CODEX_PROVIDER,
    "-c",
    "check_for_update_on_startup=false",
    "-c",
    "analytics.enabled=false",
    "-c",
    "feedback.enabled=false",
    "-c",
    'otel.exporter="none"',
    # ChatGPT plugins and apps: fetched from chatgpt.com and github.com at every start, of no use without a
    # ChatGPT sign-in (a session has an API key through the gateway only)
    "-c",
    "features.plugins=false",
    "-c",
    "features.remote_plugin=false",
    "-c",
    "features.apps=false",
)
_CODEX_FLAGS = ("--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check")

PRESETS: dict[str, AgentPreset] = {
    "builtin": AgentPreset(
        "builtin",
        first=("/usr/bin/python3", BUILTIN_PATH, "{prompt}"),
        continuing=("/usr/bin/python3", BUILTIN_PATH, "{prompt}"),
        keeps_state=False,
    ),
    "claude-code": AgentPreset(
        "claude-code",
        first=("claude", "-p", *_CLAUDE_FLAGS, "{model_args}", "--", "{prompt}"),
        continuing=("claude", "-p", "--continue", *_CLAUDE_FLAGS, "{model_args}", "--", "{prompt}"),
        model_flag=("--model",),
        quiet={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
        parser=ClaudeStream,
        package="@anthropic-ai/claude-code",
        version="2.1.337",
        binary="claude",
    ),
    "codex": AgentPreset(
        "codex",
        first=("codex", *_CODEX_CONFIG, "exec", *_CODEX_FLAGS, "{model_args}", "--", "{prompt}"),
        continuing=(
            "codex",
            *_CODEX_CONFIG,
            "exec",
            "resume",
            "--last",
            *_CODEX_FLAGS,
            "{model_args}",
            "--",
            "{prompt}",
        ),
        model_flag=("--model",),
        parser=CodexStream,
        package="@openai/codex",
        version="0.171.0",
        binary="codex",
    ),
}
Agent = AgentPreset | Template


def agent_of(spec: str | tuple[str, ...] | list[str]) -> Agent:
    """An environment's `agent`: a preset name, or a command template (an argument list with `{prompt}`)."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown agent preset {spec!r} (known: {', '.join(PRESETS)}); or give a command template")
        return PRESETS[spec]
    return Template(tuple(spec))


def describe(agent: Agent) -> str:
    return agent.name if isinstance(agent, AgentPreset) else json.dumps(list(agent.command))
