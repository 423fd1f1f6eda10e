"""Installing the agent CLIs: `ringfence agent install claude-code|codex [--version V]`.

Owns: fetching a preset's npm package at its pinned version (or the one given) with the host's npm into
`<data_dir>/agents/<preset>/<version>`, checking it runs (the caller's `check`: sessions run `--version` in a real
sandbox, where the agent will run), and recording it: `current` points at the version sessions use, and
`bin/<command>` inside it is what sandboxes put on their `PATH` (mounted read-only; ringfence.sandbox). An install
goes to a temporary directory first and is moved into place only once it runs, so a failed install changes nothing
installed before. When we are root, npm runs as nobody in a staging directory of nobody's (a package's install
script, which Claude Code needs to place its native binary, never runs as root); the result is then given to root,
read-only to sandboxes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ringfence.agents.presets import PRESETS, AgentPreset

_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]{1,40})?$")
RECORD = "installed.json"


class InstallError(Exception):
    """An install failed; the message names what and what to do. Nothing installed before was changed."""


@dataclass(frozen=True, slots=True)
class InstalledAgent:
    preset: str
    package: str
    version: str
    path: Path  # the version's directory; `bin` inside holds the command
    reported: str  # what `--version` printed
    installed_at: str


def installable(name: str) -> AgentPreset:
    preset = PRESETS.get(name)
    if preset is None or preset.package is None or preset.binary is None:
        known = ", ".join(n for n, p in PRESETS.items() if p.package)
        raise InstallError(f"unknown agent {name!r}: installable agents are {known}")
    return preset


NOBODY = 65534


def _give_to_root(directory: Path) -> None:
    """Everything npm wrote as nobody becomes root's, writable by nobody else. Each entry is changed through a
    descriptor opened without following symlinks: a process the install left behind may swap an entry for a
    symlink to a host file after the walk listed it, and a path-based chmod would then change that host file."""
    for folder, dirs, files in os.walk(directory):
        for entry in (folder, *(os.path.join(folder, n) for n in (*dirs, *files))):
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # a symlink (ELOOP) or gone: its own ownership only, never its target's
                with contextlib.suppress(OSError):
                    os.lchown(entry, 0, 0)
                continue
            try:
                os.fchown(fd, 0, 0)
                os.fchmod(fd, os.fstat(fd).st_mode & ~0o022)
            finally:
                os.close(fd)


# Runs `bin/<command> --version` of an install directory where the agent will run; returns what it printed, or
# raises InstallError saying why it does not run.
Check = Callable[[str, Path, str], str]


class AgentInstalls:
    """The agents installed under one data directory."""

    def __init__(self, data_dir: Path, *, npm: str = "npm") -> None:
        self.root = data_dir / "agents"
        self.npm = npm

    def install(self, name: str, check: Check, version: str | None = None, *, timeout: float = 600) -> InstalledAgent:
        preset = installable(name)
        assert preset.package is not None and preset.binary is not None
        version = version or preset.version or ""
        if not _VERSION.match(version):
            raise InstallError(f"version {version!r} of {name} is not a release version like 1.2.3")
        if shutil.which(self.npm) is None:
            raise InstallError(f"npm is not installed ({self.npm!r} not found): install nodejs and npm (make does)")
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # noqa: S103 (programs sandboxes run, read-only)
        os.chmod(home, 0o755)  # noqa: S103
        target = home / version
        if target.is_dir() and (target / RECORD).is_file():
            found = self._record(target)
            self._select(home, version)
            return found
        as_root = os.geteuid() == 0
        staging = Path(tempfile.mkdtemp(prefix=f"ringfence-agent-{name}-", dir=None if as_root else home))
        try:
            # the host's npm settings (registry, CA file, proxy) stay; its cache and HOME are the staging's own
            env = {**os.environ, "npm_config_update_notifier": "false", "HOME": str(staging / ".home")}
            env["npm_config_cache"] = str(staging / ".npm-cache")
            (staging / ".home").mkdir()
            user_rc = Path(os.environ.get("NPM_CONFIG_USERCONFIG") or Path.home() / ".npmrc")
            if user_rc.is_file():
                shutil.copyfile(user_rc, staging / ".home" / ".npmrc")
            prefix: list[str] = []
            if as_root:
                for entry in (staging, staging / ".home", *(staging / ".home").iterdir()):
                    os.chown(entry, NOBODY, NOBODY)
                prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            done = subprocess.run(  # noqa: S603 (a fixed command; the package and version were checked)
                [
                    *prefix,
                    self.npm,
                    "install",
                    "--prefix",
                    str(staging),
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--loglevel=error",
                    f"{preset.package}@{version}",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=staging,
            )
            if done.returncode != 0:
                said = done.stderr.strip().splitlines()
                if any("ETARGET" in line or "No matching version" in line for line in said):
                    raise InstallError(f"npm has no version {version} of {preset.package}: see `npm view "
                                       f"{preset.package} versions`")  # fmt: skip
                raise InstallError(f"npm could not install {preset.package}@{version}: {' '.join(said[-3:])[-400:]}")
            for scratch in (".home", ".npm-cache", "package.json", "package-lock.json"):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    (shutil.rmtree if (staging / scratch).is_dir() else os.unlink)(staging / scratch)
            if as_root:
                _give_to_root(staging)
            (staging / "bin").mkdir()
            os.symlink(f"../node_modules/.bin/{preset.binary}", staging / "bin" / preset.binary)
            os.chmod(staging, 0o755)  # noqa: S103
            reported = check(name, staging, preset.binary)
            record = {"preset": name, "package": preset.package, "version": version, "reported": reported}
            record["installed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            (staging / RECORD).write_text(json.dumps(record))
            if target.exists():
                shutil.rmtree(target)
            shutil.move(staging, target)
        except subprocess.TimeoutExpired:
            raise InstallError(f"npm did not finish installing {preset.package}@{version} in {timeout:.0f} s") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._select(home, version)
        return self._record(target)

    @staticmethod
    def _select(home: Path, version: str) -> None:
        link = home / "current"
        fresh = home / ".current-new"
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        os.symlink(version, fresh)
        fresh.replace(link)

    @staticmethod
    def _record(directory: Path) -> InstalledAgent:
        data = json.loads((directory / RECORD).read_text())
        return InstalledAgent(
            data["preset"], data["package"], data["version"], directory, data.get("reported", ""), data["installed_at"]
        )

    def installed(self) -> list[InstalledAgent]:
        """The version each agent's sessions use (its `current`)."""
        found = []
        for name in sorted(PRESETS):
            current = self.root / name / "current"
            with contextlib.suppress(OSError, ValueError, KeyError):
                found.append(self._record(current.resolve()))
        return found

    def tools(self) -> dict[str, Path]:
        """For sandboxes: each installed agent's directory (its `bin` goes on the PATH), by preset name."""
        return {agent.preset: agent.path for agent in self.installed()}
