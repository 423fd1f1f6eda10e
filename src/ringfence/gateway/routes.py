"""Which requests the git route accepts: the session's one repository, the smart-HTTP endpoints, nothing else.

Owns: `Repository` (owner/name, validated when a session or `gateway serve` is configured) and `route_git`, the
exact, canonical match of a raw request target against `/git/<owner>/<name>.git/<endpoint>` (SECURITY-CASES G5).
No decoding is done before matching: a target with any percent-escape, dot segment, doubled or trailing slash,
case variant or extra query parameter is simply not the session's repository. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
Service = Literal["git-upload-pack", "git-receive-pack"]
SERVICES: tuple[Service, ...] = ("git-upload-pack", "git-receive-pack")


class RouteRefused(ValueError):
    """Not a request this gateway serves for this session; the message says why."""


@dataclass(frozen=True, slots=True)
class Repository:
    owner: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Repository:
        owner, sep, name = text.partition("/")
        if not sep or "/" in name:
            raise ValueError(f"repository {text!r} is not OWNER/NAME")
        name = name.removesuffix(".git")
        for part, what in ((owner, "owner"), (name, "name")):
            if not _PART.match(part) or part.startswith(".") or ".." in part:
                raise ValueError(f"repository {what} {part!r} is not a valid name")
        return cls(owner, name)

    @property
    def path(self) -> str:
        return f"/git/{self.owner}/{self.name}.git"

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class GitRoute:
    service: Service
    advertise: bool  # GET info/refs (the ref advertisement) rather than the POST of the service itself

    @property
    def writes(self) -> bool:
        return self.service == "git-receive-pack"


def route_git(method: str, target: bytes, repository: Repository) -> GitRoute:
    """The git endpoint `target` names for `repository`, or RouteRefused."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise RouteRefused("request target is not ASCII") from None
    if any(c in text for c in "%\\#") or any(ord(c) < 0x21 for c in text):
        raise RouteRefused("request target holds escapes or characters a repository path never has")
    path, _, query = text.partition("?")
    prefix = repository.path + "/"
    if not path.startswith(prefix):
        raise RouteRefused(f"this session reaches only {repository.path}")
    endpoint = path[len(prefix) :]
    if endpoint == "info/refs":
        if method not in ("GET", "HEAD"):
            raise RouteRefused(f"{method} on info/refs is not part of git's smart HTTP protocol")
        for service in SERVICES:
            if query == f"service={service}":
                return GitRoute(service, advertise=True)
        raise RouteRefused("info/refs needs exactly one query parameter, service=git-upload-pack or git-receive-pack")
    if endpoint in SERVICES:
        if method != "POST":
            raise RouteRefused(f"{endpoint} takes POST, not {method}")
        if query or "?" in text:
            raise RouteRefused(f"{endpoint} takes no query")
        return GitRoute(endpoint, advertise=False)
    raise RouteRefused(f"{endpoint[:80]!r} is not a smart-HTTP endpoint (info/refs, git-upload-pack, git-receive-pack)")


_BAD_IN_REF = set(" ~^:?*[\\\x7f")


def check_branch(branch: str) -> str:
    """A branch name git accepts (check-ref-format's rules for refs/heads/<branch>), returned as is."""
    parts = branch.split("/")
    if (
        not branch
        or branch.startswith("-")
        or branch.startswith("refs/")
        or branch.endswith((".", "/", ".lock"))
        or ".." in branch
        or "@{" in branch
        or branch == "@"
        or any(c in _BAD_IN_REF or ord(c) < 0x20 for c in branch)
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in parts)
    ):
        raise ValueError(f"branch {branch!r} is not a valid branch name")
    return branch
