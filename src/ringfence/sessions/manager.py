"""The session lifecycle: start, prompt, end, delete, wiring the policy store, a sandbox and both proxies.

Owns: `SessionManager`. `start` checks the account and repository through the store (which records the session
with the policy's decision), gives the session its own egress policy and gateway route on two Unix sockets of
its own, creates a sandbox bridged to them, and clones the repository inside it through the gateway onto the
session branch. `prompt` records the activity, runs the agent, streams its output, and keeps the prompt, the
output and the code change against the base commit through the encrypted store, which refuses them under zero
data retention: then the session works live and nothing is kept. `end` pushes the branch through the gateway
and tears everything down; `delete` tears down without pushing and makes the content unreadable at once.
Time comes from the injected clock.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from ringfence.agents.events import AgentEvent
from ringfence.agents.presets import BUILTIN_PATH, PRESETS, Agent, AgentPreset, Template, agent_of
from ringfence.audit import AuditEntry
from ringfence.egress.proxy import EgressProxy, ProxyLimits
from ringfence.egress.rules import MODES, EgressPolicy, check_mode_allowed, session_policy
from ringfence.gateway.git_proxy import Gateway, GitSession
from ringfence.gateway.routes import Repository
from ringfence.policy.calendar import format_time
from ringfence.sandbox import Exit, Limits, Output, SandboxSpec
from ringfence.sandbox.base import Sandbox, SandboxBackend
from ringfence.sandbox.spec import GATEWAY_PORT, LimitRequest, ProxyRoutes, SandboxError, grant
from ringfence.sessions import builtin_agent, capture, turns
from ringfence.sessions.upstreams import HostResolver, ModelSource, NoModels, RepositoryHost, StoreHosts, StoreModels

__all__ = ["HostResolver", "ModelSource", "Pushed", "RepositoryHost", "SessionManager", "StoreHosts", "StoreModels"]
from ringfence.store import content
from ringfence.store.db import Store
from ringfence.store.errors import Conflict, ContentRefused, Invalid, NotFound
from ringfence.store.models import Repository as RepositoryRow
from ringfence.store.models import Session as SessionRow
from ringfence.store.models import User

AGENT_PATH = BUILTIN_PATH
SETUP_PATH = "/workspace/.ringfence-setup.sh"
# A real agent finds its model API at the gateway and holds only a placeholder key, useless anywhere else.
MODEL_ENV = {
    "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{GATEWAY_PORT}/model/anthropic",
    "ANTHROPIC_API_KEY": "ringfence-placeholder-key",
    "OPENAI_BASE_URL": f"http://127.0.0.1:{GATEWAY_PORT}/model/openai",
    "OPENAI_API_KEY": "ringfence-placeholder-key",
}
MAX_KEPT_OUTPUT = turns.MAX_KEPT  # what one turn keeps of the agent's output (the stream itself is not cut)


# The base (the default branch's HEAD, printed), then the session's branch: on resume, from what was pushed of it,
# if anything was. $1 is the branch (an argument, never spliced into the script), $2 "resume" or empty.
_PREPARE_BRANCH = """set -e
git -C repo rev-parse HEAD
if [ "$2" = resume ] && git -C repo rev-parse -q --verify "origin/$1" > /dev/null; then
    git -C repo checkout -q -b "$1" "origin/$1"
else
    git -C repo checkout -q -b "$1"
fi
"""


class SessionError(Exception):
    """A session step failed; the message says which and why."""


# How a start or resume reports its steps as they happen: (step, detail). Steps: "sandbox", "clone" (git's own
# progress lines), "setup" (the setup script's output), "ready".
Progress = Callable[[str, str], None]


def _quiet(step: str, detail: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Caller:
    """Who starts a session: the user and the API key they signed in with. The key is not optional: the policy
    decides zero data retention from the organization *and* the key (POLICY.md), so a session cannot be started
    without the key that asked for it being seen (T3)."""

    user_id: str
    api_key_id: str

    def __post_init__(self) -> None:
        if not self.user_id or not self.api_key_id:
            raise ValueError("a session is started by a user through one of their API keys; both are needed")


@dataclass(frozen=True)
class Environment:
    """Where a session runs: network mode and lists, the agent (a preset, or a command template given as an
    argument tuple), limits, and its environment."""

    name: str = "default"
    network: str = "trusted"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    agent: Agent | tuple[str, ...] | str = PRESETS["builtin"]  # a preset's name or a template's argv are taken too
    model: str | None = None  # the model a preset asks for (its --model); None: the agent's own default
    limits: LimitRequest = field(default_factory=LimitRequest)  # granted under the manager's ceiling at start
    telemetry: bool = False  # off: known telemetry hosts are denied even where the lists would allow them
    agent_env: Mapping[str, str] = field(default_factory=dict)
    egress_limits: ProxyLimits = field(default_factory=ProxyLimits)
    # Run in the repository before the agent, at start and at each resume, under its own network policy (e.g.
    # package registries for installing dependencies); the agent's policy applies once it has finished.
    setup: str | None = None
    setup_network: str = "trusted"
    setup_allow: tuple[str, ...] = ()
    setup_deny: tuple[str, ...] = ()
    setup_timeout: float = 600.0
    model_token_budget: int | None = None  # model tokens a session may use (the gateway answers 429 past it)

    def __post_init__(self) -> None:
        if isinstance(self.agent, str | tuple | list):
            object.__setattr__(
                self, "agent", agent_of(self.agent if isinstance(self.agent, str) else tuple(self.agent))
            )

    @property
    def runs(self) -> Agent:
        assert isinstance(self.agent, AgentPreset | Template)
        return self.agent


@dataclass(frozen=True, slots=True)
class Pushed:
    """What `end` pushed: the branch's commit, and whether the session changed anything against its base."""

    commit: str
    changed: bool


@dataclass
class LiveSession:
    id: str
    user_id: str
    repository: Repository
    branch: str
    sandbox: Sandbox
    directory: Path
    environment: Environment
    base_commit: str = ""
    turn: int = 0
    kept: list[str] = field(default_factory=list)  # what the store kept this session ("prompt", "output"...)
    conversation: bool = False  # the agent has a conversation to continue (a turn ran, or its state was restored)


class SessionManager:
    def __init__(
        self,
        store: Store,
        backend: SandboxBackend,
        runtime_dir: Path,
        egress: EgressProxy,
        gateway: Gateway,
        host: HostResolver,
        clock: Callable[[], datetime],
        *,
        ceiling: Limits | None = None,
        network_modes: Collection[str] = MODES,
        models: ModelSource | None = None,
        agents: Callable[[], Mapping[str, Path]] = dict,
    ) -> None:
        """`ceiling`: the operator's sandbox limits (settings `sandbox_*`); every session's limits are at most
        these (default: the packaged defaults). `network_modes`: the modes its environments may use. `agents`: the
        installed agent CLIs by preset name (ringfence.agents.install), mounted read-only into the sandboxes of
        sessions that run them."""
        self.store, self.backend, self.egress, self.gateway, self.host = store, backend, egress, gateway, host
        self.runtime_dir, self.clock = runtime_dir, clock
        self.ceiling = ceiling or Limits()
        self.network_modes = frozenset(network_modes)
        self.models = models or NoModels()  # the account's model providers, for each session's gateway route
        self.agents = agents
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.live: dict[str, LiveSession] = {}
        self.closers: list[Callable[[], Awaitable[None]]] = []  # run last at shutdown (e.g. audit writers)

    async def start(
        self,
        caller: Caller,
        repository_id: str,
        environment: Environment | None = None,
        *,
        environment_id: str | None = None,
        progress: Progress = _quiet,
    ) -> LiveSession:
        """`environment_id` is the stored environment `environment` came from (None: the built-in default)."""
        env = environment or Environment()
        self._check(env)  # bad rules are refused before anything is recorded
        row = content.start_session(
            self.store,
            caller.user_id,
            self.clock(),
            repository_id=repository_id,
            api_key_id=caller.api_key_id,
            environment_id=environment_id,
        )
        try:
            return await self._launch(row.id, caller.user_id, repository_id, env, resume=False, progress=progress)
        except Exception:
            # A start that failed leaves no active session: its record is deleted (metadata and the audit trail of
            # the attempt stay; it kept no content), so no list shows it as live or resumable.
            with contextlib.suppress(Exception):
                content.delete_session(self.store, row.id, self.clock(), actor=caller.user_id)
            raise

    def _check(self, env: Environment) -> Limits:
        """Refuses bad rules and limits above the ceiling before anything is recorded; the limits to use."""
        session_policy(env.network, env.allow, env.deny)
        session_policy(env.setup_network, env.setup_allow, env.setup_deny)
        check_mode_allowed(f"environment {env.name}: network", env.network, self.network_modes)
        check_mode_allowed(f"environment {env.name}: setup_network", env.setup_network, self.network_modes)
        self._tools(env)
        try:
            return grant(env.limits, self.ceiling)
        except SandboxError as exc:
            raise Invalid(f"environment {env.name}: {exc}") from None

    def _tools(self, env: Environment) -> dict[str, Path]:
        """The installed CLI the environment's agent needs (none for the built-in agent and templates); an agent
        that is not installed is refused before anything is recorded, naming the command that installs it."""
        agent = env.runs
        if agent.package is None:
            return {}
        installed = self.agents()
        if agent.name not in installed:
            raise Invalid(
                f"environment {env.name}: agent {agent.name} is not installed on this server; an operator installs "
                f"it with `ringfence agent install {agent.name}`"
            )
        return {agent.name: installed[agent.name]}

    async def resume(
        self, session_id: str, user_id: str, environment: Environment | None = None, *, progress: Progress = _quiet
    ) -> LiveSession:
        """A new sandbox for an ended or interrupted session, from its pushed branch (or the default branch if it
        never pushed): new activity, so consent and retention are decided again."""
        env = environment or Environment()
        self._check(env)
        with self.store.read() as db:
            row = db.get(SessionRow, session_id)
        if row is None or row.user_id != user_id or row.repository_id is None:
            raise NotFound(f"no session {session_id!r}")  # before anything else: others learn nothing of it
        if session_id in self.live:  # a request that contradicts the session's state, not a failed step
            raise Conflict(f"session {session_id} is running already: end it before resuming it")
        content.record_activity(self.store, session_id, self.clock(), actor=user_id)  # refused once deleted
        live = await self._launch(session_id, user_id, row.repository_id, env, resume=True, progress=progress)
        with self.store.write() as db:
            resumed = db.get(SessionRow, session_id)
            if resumed is not None:
                resumed.interrupted_at = None
        return live

    async def _launch(
        self,
        session_id: str,
        user_id: str,
        repository_id: str,
        env: Environment,
        *,
        resume: bool,
        progress: Progress,
    ) -> LiveSession:
        with self.store.read() as db:
            repo_row = db.get(RepositoryRow, repository_id)
            if repo_row is None:
                raise NotFound(f"no repository {repository_id!r}")
            repository = Repository(repo_row.owner, repo_row.name)
            repo_host = urlsplit(repo_row.url).hostname or repo_row.host
            user = db.get(User, user_id)
            if user is None:
                raise NotFound(f"no user {user_id!r}")
            account_id, user_name = user.account_id, user.name
        upstream, credential, api_url = self.host.resolve(repo_row)
        models = self.models.models(account_id)
        model_hosts = sorted({urlsplit(m.base_url).hostname or "" for m in models} - {""})
        branch = f"ringfence/{session_id}"
        directory = self.runtime_dir / session_id
        directory.mkdir(mode=0o700)
        routes = ProxyRoutes(egress=directory / "egress.sock", gateway=directory / "gateway.sock")
        sandbox: Sandbox | None = None
        try:
            # both phases deny the repository host and the model APIs alike (G10, M2)
            policy_of = functools.partial(
                session_policy, repository_host=repo_host, model_hosts=model_hosts, deny_telemetry=not env.telemetry
            )
            policy = policy_of(env.network, env.allow, env.deny)
            self.egress.add_session(session_id, policy, env.egress_limits)
            if env.setup is None:  # every record names its phase
                await self.egress.set_policy(session_id, policy, "agent")
            else:  # the setup script's policy first; the agent's replaces it after
                setup_policy = policy_of(env.setup_network, env.setup_allow, env.setup_deny)
                await self.egress.set_policy(session_id, setup_policy, "setup")
            await self.egress.listen_unix(session_id, routes.egress)
            self.gateway.add_session(
                GitSession(session_id, repository, branch, upstream, credential, api_url),
                models,
                token_budget=env.model_token_budget,
            )
            assert routes.gateway is not None
            await self.gateway.listen_unix(session_id, routes.gateway)
            progress("sandbox", "creating the sandbox")
            sandbox = await self.backend.create(
                SandboxSpec(
                    network="proxy",
                    proxies=routes,
                    limits=self._check(env),
                    env={
                        **dict(env.agent_env),
                        **capture.identity(user_name, user_id),
                        **MODEL_ENV,
                        **env.runs.env(telemetry=env.telemetry),
                    },
                    tools=self._tools(env),
                )
            )
            live = LiveSession(session_id, user_id, repository, branch, sandbox, directory, env)
            if resume:
                with self.store.read() as db:
                    counted = db.get(SessionRow, session_id)
                live.turn = max(counted.turns if counted else 0, content.last_turn(self.store, session_id))
            remote = f"http://127.0.0.1:{GATEWAY_PORT}{repository.path}"
            progress("clone", f"cloning {repository} through the gateway")
            code, said = await self._stream(
                sandbox, ["git", "clone", "--progress", remote, "repo"], 600, "clone", progress
            )
            if code != 0:
                raise SessionError(f"cloning {repository} failed: {said[-500:]}")
            # one command, not four: each is a program start in the sandbox (some 150 ms under gVisor)
            prepared = await sandbox.run(["sh", "-c", _PREPARE_BRANCH, "prepare", branch, "resume" if resume else ""])
            if prepared.code != 0:
                raise SessionError(f"preparing branch {branch} failed: {prepared.stderr.decode(errors='replace')}")
            live.base_commit = prepared.stdout.decode().strip()
            with self.store.write() as db:  # which backend ran it (metadata, kept under ZDR too)
                recorded = db.get(SessionRow, session_id)
                if recorded is not None:
                    recorded.backend = self.backend.name
            await sandbox.write_file(AGENT_PATH.removeprefix("/workspace/"), Path(builtin_agent.__file__).read_bytes())
            if resume and env.runs.keeps_state:  # the agent's conversation goes on where it stopped
                kept_state = content.read_agent_state(self.store, session_id)
                if kept_state is not None:
                    progress("state", "restoring the agent's state")
                    live.conversation = await turns.restore_state(sandbox, kept_state)
            if env.setup is not None:
                await self._setup(live, env, policy, progress)
            progress("ready", f"session {session_id} is ready on branch {branch}")
        except BaseException:
            await self._teardown(session_id, sandbox, directory)
            raise
        self.live[session_id] = live
        return live

    @staticmethod
    async def _stream(
        sandbox: Sandbox, argv: list[str], timeout: float, step: str, progress: Progress
    ) -> tuple[int, str]:
        """Run `argv`, passing its output to `progress` as it comes; returns its exit code and its output's tail."""
        tail = ""
        code = -1
        async for event in sandbox.exec(argv, timeout=timeout):
            if isinstance(event, Output):
                text = event.data.decode("utf-8", "replace")
                tail = (tail + text)[-4000:]
                progress(step, text)
            else:
                code = -9 if event.timed_out else event.code
        return code, tail

    async def _setup(self, live: LiveSession, env: Environment, policy: EgressPolicy, progress: Progress) -> None:
        """The environment's setup script, in the repository, under the setup network policy; then the agent's
        policy (which cuts whatever the setup left open)."""
        assert env.setup is not None
        await live.sandbox.write_file(SETUP_PATH.removeprefix("/workspace/"), env.setup.encode())
        progress("setup", f"running the setup script of environment {env.name}\n")
        argv = ["sh", "-c", f"cd repo && exec sh -e {SETUP_PATH}"]
        code, said = await self._stream(live.sandbox, argv, env.setup_timeout, "setup", progress)
        if code != 0:
            reason = "timed out" if code == -9 else f"exited with {code}"
            raise SessionError(f"the setup script of environment {env.name} {reason}: {said[-500:]}")
        await self.egress.set_policy(live.id, policy, "agent")

    async def recover(self) -> list[str]:
        """At start: sessions whose runtime directory survived a crash were interrupted. Their sandboxes were
        already reconciled away; their stored turns stay; each is audited as interrupted (and can be resumed)."""
        interrupted = []
        for directory in sorted(self.runtime_dir.iterdir()):
            if directory.name in self.live:
                continue
            shutil.rmtree(directory, ignore_errors=True)
            with self.store.write() as db:
                row = db.get(SessionRow, directory.name)
                if row is None:
                    continue
                row.interrupted_at = self.clock()
                self.store.audit.append(
                    db.connection(),
                    AuditEntry("session.interrupted", directory.name, format_time(self.clock()), {"resumable": True}),
                )
            interrupted.append(directory.name)
        return interrupted

    def _get(self, session_id: str) -> LiveSession:
        live = self.live.get(session_id)
        if live is None:
            raise NotFound(f"session {session_id!r} is not running here")
        return live

    def _keep(self, live: LiveSession, kind: content.ContentKind, text: str) -> None:
        try:
            content.put_content(self.store, live.id, kind, text, self.clock(), turn=live.turn)
            live.kept.append(kind)
        except ContentRefused:
            pass  # zero data retention (or an expired session): the store keeps nothing, by policy

    async def prompt(self, session_id: str, text: str) -> AsyncGenerator[Output | Exit | AgentEvent, None]:
        """Run one agent turn; yields the agent's typed events (a preset) or its output (a template) as they come,
        then its Exit. Then keeps the transcript, the events, the code change and the agent's state."""
        live = self._get(session_id)
        content.record_activity(self.store, session_id, self.clock(), actor=live.user_id)
        live.turn += 1
        content.record_turn(self.store, session_id, live.turn)
        self._keep(live, "prompt", text)
        agent, env = live.environment.runs, live.environment
        argv = agent.argv(text, continuing=live.conversation, model=env.model)
        record = turns.TurnRecord()
        async for event in turns.run_turn(live.sandbox, agent, argv, record):  # the agent works in the clone
            yield event
        self._keep(live, "output", record.output())
        if record.typed:
            self._keep(live, "events", record.events_text())
        live.conversation |= record.exit is not None and record.exit.code == 0
        change = await capture.working_tree_change(live.sandbox, live.base_commit)  # committed or not
        if change:
            self._keep(live, "code_change", change)
        if agent.keeps_state and content.keeps_content(self.store, session_id, self.clock()):
            await self._checkpoint(live)

    async def _checkpoint(self, live: LiveSession) -> None:
        """The agent's state, sealed after every turn: a crash loses at most the running turn."""
        state = await turns.save_state(live.sandbox)
        if state is None:
            return
        with contextlib.suppress(ContentRefused):
            content.put_agent_state(self.store, live.id, state, self.clock(), turn=live.turn)

    async def end(self, session_id: str) -> Pushed:
        """Push the session branch through the gateway and tear the session down; what was pushed, and whether
        anything changed against the base."""
        live = self._get(session_id)
        try:
            await capture.commit_uncommitted(live.sandbox, session_id)  # nothing the agent did is lost
            pushed = await live.sandbox.run(
                ["git", "-C", "repo", "push", "-q", "origin", f"HEAD:refs/heads/{live.branch}"], timeout=600
            )
            if pushed.code != 0:
                raise SessionError(f"pushing {live.branch} failed: {pushed.stderr.decode(errors='replace')[-500:]}")
            head = (await live.sandbox.run(["git", "-C", "repo", "rev-parse", "HEAD"])).stdout.decode().strip()
            return Pushed(head, head != live.base_commit)
        finally:
            self.live.pop(session_id, None)
            await self._teardown(session_id, live.sandbox, live.directory)

    async def delete(self, session_id: str, *, actor: str) -> None:
        """Delete at once: no push; the sandbox and proxies go, and the stored content becomes unreadable."""
        live = self.live.pop(session_id, None)
        if live is not None:
            await self._teardown(session_id, live.sandbox, live.directory)
        content.delete_session(self.store, session_id, self.clock(), actor=actor)

    async def _teardown(self, session_id: str, sandbox: Sandbox | None, directory: Path) -> None:
        if sandbox is not None:
            with contextlib.suppress(Exception):
                await sandbox.destroy()
        await self.egress.remove_session(session_id)
        await self.gateway.remove_session(session_id)
        shutil.rmtree(directory, ignore_errors=True)

    async def close(self) -> None:
        """Tear down every running session (their stored content stays as the policy decided)."""
        for session_id in list(self.live):
            live = self.live.pop(session_id)
            await self._teardown(session_id, live.sandbox, live.directory)

    async def shutdown(self) -> None:
        """`close`, then stop the proxies this manager was given."""
        await self.close()
        await self.egress.close()
        await self.gateway.close()
        for closer in self.closers:
            await closer()
