"""Environments: the validated settings an account's sessions run with, and their runtime form.

Owns: `EnvironmentSettings` (what an API client or the CLI sends: network mode and lists, the agent command
template, limits, a setup script with its own network policy, the telemetry switch, extra environment
variables), its check against the egress rule grammar and the sandbox's limits, and `runtime()`, which turns
stored settings into the session manager's `Environment`. Storage is ringfence.store.environments.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from ringfence.agents.presets import PRESETS, agent_of
from ringfence.egress.rules import RuleError, check_mode_allowed, session_policy
from ringfence.sandbox.spec import RESERVED_ENV, LimitRequest, Limits, SandboxError, grant, parse_size
from ringfence.sessions import capture
from ringfence.sessions.manager import AGENT_PATH, MODEL_ENV, Environment
from ringfence.store import environments
from ringfence.store.db import Store
from ringfence.store.errors import NotFound
from ringfence.store.models import User

Mode = Literal["none", "trusted", "custom", "full"]
BUILTIN_AGENT = ["/usr/bin/python3", AGENT_PATH, "{prompt}"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RESERVED_ENV = {name.upper() for name in (*RESERVED_ENV, *MODEL_ENV, *capture.IDENTITY_VARIABLES)} | {
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


# No ceiling at all: what checks a request's own form (minimums, sizes) before any operator's ceiling applies.
_UNBOUNDED = Limits(memory_bytes=None, pids=None, timeout_seconds=None, workspace_bytes=None, cpu_weight=10_000)


class LimitSettings(BaseModel):
    """Per-command sandbox limits an environment asks for. Sizes take K, M, G or T (`2G`). A limit left out (or
    `null`) is the operator's ceiling; one above the ceiling is refused (ringfence.sandbox.spec.grant): an
    environment may only lower the operator's limits."""

    model_config = ConfigDict(extra="forbid")
    memory: str | None = None
    pids: int | None = Field(default=None, ge=4, le=1_000_000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=86_400)
    workspace: str | None = None
    cpu_weight: int | None = Field(default=None, ge=1, le=10_000)

    def request(self) -> LimitRequest:
        try:
            return LimitRequest(
                memory_bytes=None if self.memory is None else parse_size(self.memory),
                pids=self.pids,
                timeout_seconds=self.timeout_seconds,
                workspace_bytes=None if self.workspace is None else parse_size(self.workspace),
                cpu_weight=self.cpu_weight,
            )
        except SandboxError as exc:
            raise ValueError(f"limits: {exc}") from None

    def within(self, ceiling: Limits) -> Limits:
        """What a session of this environment gets under `ceiling`; above it, a ValueError naming the limit."""
        try:
            return grant(self.request(), ceiling)
        except SandboxError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _valid(self) -> LimitSettings:
        try:
            grant(self.request(), _UNBOUNDED)
        except SandboxError as exc:
            raise ValueError(f"limits: {exc}") from None
        return self


class EnvironmentSettings(BaseModel):
    """An environment as clients send it and the store keeps it. Unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
    network: Mode = "trusted"
    allow: list[str] = Field(default_factory=list, max_length=500)
    deny: list[str] = Field(default_factory=list, max_length=500)
    # a preset name (builtin, claude-code, codex) or a command template (an argument list with {prompt})
    agent: str | list[str] = "builtin"
    model: str | None = Field(default=None, max_length=128)  # the model a preset asks for; None: its default
    setup: str | None = Field(default=None, max_length=64 * 1024)
    setup_network: Mode = "trusted"
    setup_allow: list[str] = Field(default_factory=list, max_length=500)
    setup_deny: list[str] = Field(default_factory=list, max_length=500)
    setup_timeout_seconds: float = Field(default=600.0, gt=0, le=3600)
    telemetry: StrictBool = False  # true or false only (not 0, "no" or "off")
    model_token_budget: int | None = Field(default=None, ge=1, le=10**12)  # per session; None: no budget
    limits: LimitSettings = Field(default_factory=LimitSettings)
    env: dict[str, str] = Field(default_factory=dict, max_length=50)

    @field_validator("agent", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # A preset by its name; else a template, which may be one shell-quoted string (`claude -p {prompt}`): it is
        # split once, here, and then run as an argument vector, never through a shell: a prompt cannot inject a
        # command.
        if isinstance(value, str) and value in PRESETS:
            return value
        if isinstance(value, str):
            if "{prompt}" not in value:
                raise ValueError(
                    f"unknown agent preset {value!r} (presets: {', '.join(PRESETS)}); a command template must "
                    "contain {prompt}, where the prompt goes"
                )
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"agent template {value!r} does not split into arguments: {exc}") from None
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None and not MODEL.match(value):
            raise ValueError(f"model {value[:80]!r}: use letters, digits and . _ : / @ - (up to 128)")
        return value

    @field_validator("agent")
    @classmethod
    def _template(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return value
        if not 1 <= len(value) <= 100:
            raise ValueError("the agent template needs a command and at most 100 arguments")
        if not value or not value[0]:
            raise ValueError("the agent template needs a command")
        if any("\x00" in part or len(part) > 4096 for part in value):
            raise ValueError("agent template arguments must be under 4096 characters, without NUL")
        if not any("{prompt}" in part for part in value):
            raise ValueError("the agent template must contain {prompt}, where the prompt goes")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not a valid name")
            if name.upper() in _RESERVED_ENV:
                raise ValueError(f"environment variable {name} is set by ringfence and cannot be overridden")
            if "\x00" in text or len(text) > 4096:
                raise ValueError(f"environment variable {name} must be under 4096 characters, without NUL")
        return value

    @model_validator(mode="after")
    def _rules(self) -> EnvironmentSettings:
        for what, mode, allow, deny in (
            ("network", self.network, self.allow, self.deny),
            ("setup network", self.setup_network, self.setup_allow, self.setup_deny),
        ):
            try:
                session_policy(mode, allow, deny)
            except RuleError as exc:
                raise ValueError(f"{what}: {exc}") from None
        return self

    def check_operator(self, ceiling: Limits, network_modes: Collection[str]) -> None:
        """What the operator allows (T1): limits at most the ceilings, network modes among those allowed. A
        ValueError naming the field and the ceiling otherwise. The same rules as a session's start."""
        self.limits.within(ceiling)
        for what, mode in (("network", self.network), ("setup_network", self.setup_network)):
            try:
                check_mode_allowed(what, mode, network_modes)
            except RuleError as exc:
                raise ValueError(str(exc)) from None

    def runtime(self, name: str) -> Environment:
        return Environment(
            name=name,
            network=self.network,
            allow=tuple(self.allow),
            deny=tuple(self.deny),
            agent=agent_of(self.agent if isinstance(self.agent, str) else tuple(self.agent)),
            model=self.model,
            limits=self.limits.request(),
            telemetry=self.telemetry,
            agent_env=dict(self.env),
            setup=self.setup,
            setup_network=self.setup_network,
            setup_allow=tuple(self.setup_allow),
            setup_deny=tuple(self.setup_deny),
            setup_timeout=self.setup_timeout_seconds,
            model_token_budget=self.model_token_budget,
        )


DEFAULT = EnvironmentSettings()
DEFAULT_NAME = "default"


def resolve_environment(store: Store, user: User, name_or_id: str) -> tuple[Environment, str | None]:
    """The runtime environment a session of `user` runs in, and the stored environment's id (None: the built-in
    default, used when the account has no environment named 'default')."""
    try:
        row = environments.find_environment(store, user.account_id, name_or_id)
    except NotFound:
        if name_or_id == DEFAULT_NAME:
            return DEFAULT.runtime(DEFAULT_NAME), None
        raise
    return EnvironmentSettings.model_validate(row.settings).runtime(row.name), row.id


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"environment name {name!r}: use 1-100 letters, digits, '.', '_' or '-'")
    return name
