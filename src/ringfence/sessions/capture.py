"""What a session keeps of the agent's work in its repository, and what it pushes (issue 15, capture).

Owns: the git commands a session runs in the sandbox's clone (`repo` in the workspace): the working tree's change
against the base commit (tracked changes and untracked files that are not ignored, committed or not), computed
with a temporary index so the agent's own index is never touched; committing work the agent left uncommitted
before the push, so nothing it did is lost; and the git identity of a session (author: the session's user;
committer: ringfence). Commands are argument lists; the one shell script is fixed text with the base commit as
its argument.
"""

from __future__ import annotations

import contextlib
import re

from ringfence.sandbox.base import Sandbox
from ringfence.sandbox.spec import Exit
from ringfence.store.content import MAX_CONTENT_BYTES

REPO = "repo"
COMMITTER = {"GIT_COMMITTER_NAME": "ringfence", "GIT_COMMITTER_EMAIL": "ringfence@ringfence.invalid"}
IDENTITY_VARIABLES = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", *COMMITTER)  # set by ringfence, never by an environment
_HEX = re.compile(r"^[0-9a-f]{40,64}$")
_CUT = f"\n[ringfence: the change is larger than {MAX_CONTENT_BYTES} bytes; the rest was not kept]\n".encode()
# A copy of the index, everything added to it, the difference from BASE; the agent's index stays as it was.
_WORKING_TREE_DIFF = (
    'export GIT_INDEX_FILE="$(mktemp)"; trap \'rm -f "$GIT_INDEX_FILE"\' EXIT; '
    'cp .git/index "$GIT_INDEX_FILE" 2>/dev/null || true; '
    'git add -A && git diff --cached --no-color "$1"'
)


def identity(user_name: str, user_id: str) -> dict[str, str]:
    """The sandbox's git identity: commits are authored by the session's user and committed by ringfence."""
    name = "".join(c for c in user_name if c.isprintable() and c not in "<>\n") or user_id
    author = {"GIT_AUTHOR_NAME": name[:100], "GIT_AUTHOR_EMAIL": f"{user_id}@users.ringfence.invalid"}
    return {**author, **COMMITTER}


async def working_tree_change(sandbox: Sandbox, base: str) -> str:
    """The repository's change against `base`, as a diff (empty: nothing changed). Read as it streams and cut at
    what the store keeps of one item: an agent's huge file never comes whole into the server's memory (reading
    stops and the command is ended), and the kept change says where it was cut."""
    if not _HEX.match(base):
        raise ValueError(f"base commit {base[:80]!r} is not a commit id")
    kept, code = bytearray(), -1
    room = MAX_CONTENT_BYTES - len(_CUT)
    command = ["sh", "-c", _WORKING_TREE_DIFF, "capture", base]
    async with contextlib.aclosing(sandbox.exec(command, cwd=REPO, timeout=300)) as events:  # closing: ended
        async for event in events:
            if isinstance(event, Exit):
                code = event.code
            elif event.stream == "stdout":
                kept.extend(event.data[: room + 1 - len(kept)])
                if len(kept) > room:
                    text = kept[:room].decode("utf-8", "ignore")  # whole characters only
                    return text + _CUT.decode()
    return kept.decode("utf-8", "replace") if code == 0 else ""


async def commit_uncommitted(sandbox: Sandbox, session_id: str) -> bool:
    """Commit whatever the agent changed and did not commit (before the push); whether there was any."""
    status = await sandbox.run(["git", "status", "--porcelain"], cwd=REPO)
    if status.code != 0 or not status.stdout.strip():
        return False
    await sandbox.run(["git", "add", "-A"], cwd=REPO)
    done = await sandbox.run(
        ["git", "commit", "-q", "--no-verify", "-m", f"ringfence: uncommitted work of session {session_id}"], cwd=REPO
    )
    return done.code == 0
