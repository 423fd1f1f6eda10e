"""The built-in agent: deterministic, stdlib only, run INSIDE a sandbox as `python3 agent.py PROMPT`.

It does what a coding agent does, without a model, so the whole session path is exercised in the quickstart and
the tests: it edits files in the repository, runs commands, commits, and makes network requests through the
session's proxies (the URLs come from RINGFENCE_AGENT_TRY, one per line: some allowed, some denied). Words in
the prompt choose extra steps: "push main" also tries to push to main (which the gateway refuses). It prints a
transcript line by line as it works (the session streams it) and exits 0 unless the repository is missing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.error
import urllib.request

# Sessions start agents in the clone itself; run from the workspace, the clone is `repo`.
REPO = os.environ.get("RINGFENCE_AGENT_REPO") or ("." if os.path.isdir(".git") else "repo")


def say(text: str) -> None:
    print(text, flush=True)


def run(*argv: str) -> int:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    say(f"$ {' '.join(argv)} -> {done.returncode}")
    for line in (done.stdout + done.stderr).strip().splitlines()[-5:]:
        say(f"  {line}")
    return done.returncode


def fetch(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())  # honours HTTP(S)_PROXY
    try:
        with opener.open(url, timeout=15) as answer:
            say(f"GET {url} -> {answer.status}")
    except urllib.error.HTTPError as exc:
        reason = exc.headers.get("X-Ringfence-Deny", "")
        say(f"GET {url} -> {exc.code}" + (f" (denied: {reason})" if reason else ""))
    except (urllib.error.URLError, OSError) as exc:
        say(f"GET {url} -> failed: {exc}")


def main() -> int:
    prompt = " ".join(sys.argv[1:]).strip() or "hello"
    if not os.path.isdir(os.path.join(REPO, ".git")):
        say(f"no repository at {REPO}")
        return 2
    say(f"prompt: {prompt}")
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    path = os.path.join(REPO, "AGENT_NOTES.md")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"- {prompt} ({digest})\n")
    say("edited AGENT_NOTES.md")
    run("git", "status", "--short")
    run("git", "add", "-A")
    run("git", "-c", "user.name=ringfence agent", "-c", "user.email=agent@ringfence.invalid",
        "commit", "-q", "-m", f"agent: {prompt[:60]}")  # fmt: skip
    for url in filter(None, os.environ.get("RINGFENCE_AGENT_TRY", "").splitlines()):
        fetch(url.strip())
    if "push main" in prompt:
        run("git", "push", "origin", "HEAD:refs/heads/main")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
