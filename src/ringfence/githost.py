"""A local git host: `git http-backend` (CGI) behind a small threaded HTTP server on loopback.

Owns: serving the bare repositories under a directory over git's smart HTTP, optionally requiring a token (as a
real host would), recording what it received (the tests read it), and making the example repository of the
quickstart. It is the quickstart's repository host (`make run`) and the tests' real upstream; production
repositories live on real hosts behind the gateway.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BACKEND = "/usr/lib/git-core/git-http-backend"


@dataclass
class Seen:
    method: str
    path: str
    authorized: bool
    headers: dict[str, str] = field(default_factory=dict)


class GitHost:
    def __init__(self, root: Path, token: str | None, *, scheme: str = "basic", port: int = 0) -> None:
        self.root, self.token, self.scheme = root, token, scheme
        self.seen: list[Seen] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            return data
                        data += chunk
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                auth = self.headers.get("Authorization", "")
                ok = host.token is None or auth == host.expected()
                host.seen.append(Seen(self.command, self.path, ok, dict(self.headers.items())))
                body = self._body() if self.command == "POST" else b""
                if not ok:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(host.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REMOTE_USER": "gateway",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "HOME": str(host.root),
                }
                # A fixed program; what varies goes through the CGI environment, as http-backend expects.
                done = subprocess.run([BACKEND], input=body, capture_output=True, env=env, check=False)  # noqa: S603
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def expected(self) -> str:
        if self.token is None:
            return ""
        if self.scheme == "bearer":
            return f"Bearer {self.token}"
        return "Basic " + base64.b64encode(f"x-access-token:{self.token}".encode()).decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd or Path.home()),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Agent",
        "GIT_AUTHOR_EMAIL": "agent@example.com",
        "GIT_COMMITTER_NAME": "Agent",
        "GIT_COMMITTER_EMAIL": "agent@example.com",
    }
    command = [shutil.which("git") or "/usr/bin/git", *args]
    return subprocess.run(command, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True)  # noqa: S603


def make_repository(root: Path, owner: str, name: str, commits: int = 3) -> Path:
    """A bare repository `root/owner/name.git` with `commits` commits on main."""
    work = root / "seed"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    assert git("init", "-q", "-b", "main", cwd=work).returncode == 0
    for i in range(commits):
        (work / f"file{i}.txt").write_text(f"content {i}\n")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", cwd=work)
    bare = root / owner / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    assert git("clone", "-q", "--bare", str(work), str(bare)).returncode == 0
    git("config", "http.receivepack", "true", cwd=bare)
    shutil.rmtree(work)
    return bare
