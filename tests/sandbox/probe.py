"""Runs INSIDE a sandbox (with the system's /usr/bin/python3): tries each attempt it is given and reports, as one
JSON object, what happened. It only attempts; the tests decide what the answers mean."""

import json
import os
import socket
import subprocess
import sys
import time


def attempt(kind, *args):
    try:
        if kind == "tcp":
            family = socket.AF_INET6 if ":" in args[0] else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect((args[0], args[1]))
            return "connected"
        if kind == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"probe", (args[0], args[1]))
            return "sent"
        if kind == "dns":
            return str(socket.getaddrinfo(args[0], 443))
        if kind == "read":
            with open(args[0], "rb") as handle:
                return handle.read(200).decode(errors="replace")
        if kind == "listdir":
            return sorted(os.listdir(args[0]))
        if kind == "env":
            return dict(os.environ)
        if kind == "run":
            done = subprocess.run(args[0], capture_output=True, timeout=10)
            return {
                "code": done.returncode,
                "out": done.stdout.decode(errors="replace")[-300:],
                "err": done.stderr.decode(errors="replace")[-300:],
            }
        if kind == "syscall":  # x86_64 numbers; arguments are integers
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            result = libc.syscall(*args)
            return "ok" if result >= 0 else f"refused: errno {ctypes.get_errno()}"
        if kind == "exchange":  # send, half-close, read the whole answer
            with socket.create_connection((args[0], args[1]), timeout=5) as sock:
                answer = b""
                try:
                    sock.sendall(args[2].encode())
                    sock.shutdown(socket.SHUT_WR)
                    while chunk := sock.recv(65536):
                        answer += chunk
                except OSError as exc:  # connected, then dropped by the other side
                    return f"closed: {exc}"
            return answer.decode(errors="replace")
        if kind == "connect_many":  # how many connections stay open at once
            held = []
            for _ in range(args[2]):
                try:
                    held.append(socket.create_connection((args[0], args[1]), timeout=2))
                except OSError:
                    break
            time.sleep(1)  # held open, so the host sees them all at once
            return len(held)
        if kind == "unix_connect":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(args[0])
            return "connected"
        if kind == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM):
                return "created"
        if kind == "proc_scan":  # every process visible: its whole environment and command line
            seen = {}
            for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
                for part in ("environ", "cmdline"):
                    try:
                        with open(f"/proc/{pid}/{part}", "rb") as handle:
                            seen[f"{pid}/{part}"] = handle.read().decode(errors="replace")
                    except OSError as exc:
                        seen[f"{pid}/{part}"] = f"refused: {type(exc).__name__}"
            with open("/proc/self/mountinfo") as handle:
                seen["self/mountinfo"] = handle.read()
            return seen
        if kind == "status":
            with open("/proc/self/status") as handle:
                return {k: v.strip() for k, v in (line.split(":", 1) for line in handle) if k in args}
        raise ValueError(kind)
    except Exception as exc:  # every refusal is an answer
        return f"refused: {type(exc).__name__}: {exc}"


results = [attempt(*a) for a in json.loads(sys.argv[1])]
print(json.dumps(results))
