"""Configuration: one frozen pydantic model read once from defaults, a TOML file and RINGFENCE_* variables.

Owns: where ringfence keeps its data and how the server listens. Precedence: environment over file over
defaults. The file is `<data_dir>/ringfence.toml`, or the path in RINGFENCE_CONFIG.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringfence.sandbox.spec import Limits, SandboxError, parse_size


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ringfence"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the setting."""


class ProviderSetting(BaseModel):
    """A model provider the operator gives every account that has none of that name (`[providers.NAME]`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str | None = Field(None, description="anthropic or openai (the names anthropic and openai imply it)")
    base_url: str = Field(description="exactly what the provider's SDK takes as its base URL")
    api_key_file: Path = Field(description="a file holding the key (mode 0600), read when a session starts")


class Settings(BaseModel):
    """Every setting of the server and CLI, with its meaning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir, description="everything ringfence keeps lives here")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    master_key_file: Path | None = Field(None, description="the 0600 master key file; default: data_dir/master.key")
    listen: str = Field("127.0.0.1:8600", description="HOST:PORT of the API and web console")
    sweep_interval_seconds: float = Field(300.0, gt=0, description="how often the server runs the retention sweep")
    policy_file: Path | None = Field(None, description="a policy TOML to use instead of the packaged one")
    sandbox_dir: Path = Field(
        Path("/var/lib/ringfence-sandboxes"),
        description="where sandboxes keep their workspaces (every ancestor must be traversable by other users)",
    )
    sandbox_rootfs: Path = Field(Path("/"), description="the read-only system of sandboxes: its /usr, /etc/ssl...")
    sandbox_backend: Literal["bubblewrap", "gvisor"] = Field(
        "bubblewrap", description="bubblewrap (namespaces on the host's kernel) or gvisor (runsc: its own kernel)"
    )
    sandbox_memory: str = Field("2G", description="memory limit per sandbox (e.g. 512M, 2G)")
    sandbox_pids: int = Field(1024, ge=4, description="most processes and threads per sandbox")
    sandbox_workspace_size: str = Field("10G", description="workspace size per sandbox (a sparse disk image); 0: none")
    sandbox_cpu_weight: int = Field(100, ge=1, le=10_000, description="CPU share under contention; 100 is equal")
    sandbox_timeout_seconds: float = Field(600.0, gt=0, description="wall-clock limit of one command")
    sandbox_network_modes: list[str] = Field(
        default_factory=lambda: ["none", "trusted", "custom", "full"],
        description="the network modes environments may use (for their agent and their setup script)",
    )
    providers: dict[str, ProviderSetting] = Field(
        default_factory=dict, description="model providers for every account without its own of that name"
    )
    egress_allow_ranges: list[str] = Field(
        default_factory=list, description="CIDR ranges sessions may reach though not public (your own networks)"
    )
    demo: bool = Field(True, description="on first start, set up a demo organization, user and local repository")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT with a port 1-65535, got {value!r}")
        return value

    @field_validator("sandbox_memory", "sandbox_workspace_size")
    @classmethod
    def _size(cls, value: str) -> str:
        try:
            parse_size(value)
        except SandboxError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("sandbox_network_modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        unknown = [mode for mode in value if mode not in ("none", "trusted", "custom", "full")]
        if unknown or not value:
            raise ValueError(f"give one or more of none, trusted, custom, full (got {value!r})")
        return value

    @field_validator("egress_allow_ranges")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a network in CIDR form: {exc}") from None
        return value

    @field_validator("sandbox_rootfs")
    @classmethod
    def _rootfs(cls, value: Path) -> Path:
        if not (value / "usr").is_dir():
            raise ValueError(f"sandbox root filesystem {value} has no usr directory")
        return value

    def sandbox_backend_for(self, root: Path | None = None) -> Any:
        """The configured sandbox backend (ringfence.sandbox.backends), under `root` or `sandbox_dir`."""
        from ringfence.sandbox.backends import open_backend

        return open_backend(self.sandbox_backend, root or self.sandbox_dir, rootfs=self.sandbox_rootfs)

    def sandbox_limits(self) -> Limits:
        """The per-sandbox limits these settings give (checked: a bad limit is a SandboxError naming it)."""
        workspace = parse_size(self.sandbox_workspace_size)
        return Limits(
            memory_bytes=parse_size(self.sandbox_memory),
            pids=self.sandbox_pids,
            timeout_seconds=self.sandbox_timeout_seconds,
            workspace_bytes=workspace or None,
            cpu_weight=self.sandbox_cpu_weight,
        )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ringfence.db'}"

    @property
    def key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"


# Every setting has its variable, derived from the model (never a second list to forget one in).
ENV = {name: f"RINGFENCE_{name.upper()}" for name in Settings.model_fields}
# Variables of ringfence's that are not settings: the config file's path, the CLI's token and the benchmark's tool.
OTHER_VARIABLES = frozenset({"RINGFENCE_CONFIG", "RINGFENCE_TOKEN", "RINGFENCE_BENCH_MITMDUMP"})
log = logging.getLogger("ringfence.config")


def _from_env(name: str, text: str) -> Any:
    """A variable's text as the setting's value: a list setting takes a JSON array or comma-separated items, a
    table setting a JSON object."""
    if get_origin(Settings.model_fields[name].annotation) is dict:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV[name]} is not a JSON object: {exc}") from None
    if get_origin(Settings.model_fields[name].annotation) is list:
        if text.lstrip().startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{ENV[name]} is not a JSON array: {exc}") from None
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """RINGFENCE_* variables that no setting or tool reads (a typo, or a setting that does not exist)."""
    known = set(ENV.values()) | OTHER_VARIABLES
    return sorted(name for name in environ if name.startswith("RINGFENCE_") and name not in known)


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then the config file, then the environment, then explicit overrides (CLI flags)."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    data_dir = Path(given.get("data_dir") or env.get("RINGFENCE_DATA_DIR") or default_data_dir())
    config_path = Path(env["RINGFENCE_CONFIG"]) if env.get("RINGFENCE_CONFIG") else data_dir / "ringfence.toml"
    if config_path.exists():
        try:
            values.update(tomllib.loads(config_path.read_text()))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
    for unknown in unknown_variables(env):
        log.warning("%s is not a ringfence setting and is ignored (settings: %s)", unknown, ", ".join(ENV.values()))
    values.update({field: _from_env(field, env[name]) for field, name in ENV.items() if name in env})
    values.update(given)
    values.setdefault("data_dir", data_dir)
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration ({config_path}): {problems}") from None
