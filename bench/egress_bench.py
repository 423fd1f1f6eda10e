"""The egress proxy against squid, tinyproxy, mitmproxy (plain proxy, no interception) and a direct connection,
side by side in one run on loopback: bulk throughput, new tunnels per second, added latency, idle-tunnel memory,
and fairness between two sessions.

Every contender is a separate process; the load generator and the upstream servers are the same small Python
programs for all of them (run with the system's python3), so what differs is only the proxy in the path.

haproxy runs beside them as a reference, not a contender: a TCP relay to a fixed upstream (no CONNECT, no head to
parse, no policy). It shows what a mature C relay gets from this machine, so the notes can tell a limit of the
machine from a limit of ringfence. The proxies' CPU time per tunnel is read from /proc around the tunnels-per-second
load, for the same reason.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure

PY = "/usr/bin/python3"
UPSTREAM = r"""
import asyncio, socket, sys, threading
def sink_conn(conn):
    # The client says how much it will send (8 bytes), so no half-close is needed (squid closes a tunnel at the
    # first one). Blocking recv_into: the sink must never be what limits a bulk copy.
    with conn:
        head = b""
        while len(head) < 8:
            head += conn.recv(8 - len(head))
        expected, total, buffer = int.from_bytes(head, "big"), 0, bytearray(1 << 20)
        while total < expected and (n := conn.recv_into(buffer)):
            total += n
        conn.sendall(str(total).encode())
def sink_server(sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=sink_conn, args=(conn,), daemon=True).start()
async def echo(reader, writer):
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk); await writer.drain()
    except ConnectionError:
        pass
    writer.close()
async def main():
    a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen(64)
    threading.Thread(target=sink_server, args=(a,), daemon=True).start()
    b = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    print(a.getsockname()[1], b.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
LOADGEN = r"""
import asyncio, socket, sys, time, statistics
mode, proxy, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def tunnel(port=None):
    if proxy == 0:
        return await asyncio.open_connection("127.0.0.1", target, limit=1 << 20)
    r, w = await asyncio.open_connection("127.0.0.1", proxy, limit=1 << 20)
    w.write(f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n".encode())
    head = await r.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head[:200])
    return r, w
async def bulk(mib):
    # Blocking sockets: an asyncio writer tops out near 1 GB/s here, below what the proxies can carry.
    chunk = b"x" * (1 << 20)
    start = time.perf_counter()
    conn = socket.create_connection(("127.0.0.1", proxy or target))
    if proxy:
        conn.sendall(f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(1)
        assert b" 200 " in head.split(b"\r\n")[0], head
    conn.sendall((mib << 20).to_bytes(8, "big"))
    for _ in range(mib):
        conn.sendall(chunk)
    answer = conn.recv(64)
    conn.close()
    elapsed = time.perf_counter() - start
    assert int(answer) == mib << 20, answer
    print(mib / elapsed)
async def one_exchange():
    r, w = await tunnel()
    w.write(b"y" * 1024); await w.drain()
    await r.readexactly(1024)
    w.close()
async def rate(seconds, concurrency):
    done = errors = 0
    stop = time.perf_counter() + seconds
    async def worker():
        nonlocal done, errors
        while time.perf_counter() < stop:
            try:
                await one_exchange(); done += 1
            except Exception:
                errors += 1
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(done / seconds, errors)
async def latency(n):
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        r, w = await tunnel()
        w.write(b"z"); await w.drain(); await r.readexactly(1)
        samples.append(time.perf_counter() - t)
        w.close()
    samples.sort()
    print(samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000)
async def idle(n):
    held = []
    for i in range(n):
        held.append(await tunnel())
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
m = sys.argv[4:]
asyncio.run({"bulk": lambda: bulk(int(m[0])), "rate": lambda: rate(float(m[0]), int(m[1])),
             "latency": lambda: latency(int(m[0])), "idle": lambda: idle(int(m[0]))}[mode]())
"""
# Two sessions of the real proxy in one process, for the fairness figure.
TWO_SESSIONS = r"""
import asyncio, sys
from ringfence.egress.proxy import EgressProxy, ProxyLimits
from ringfence.egress.rules import EgressPolicy
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
async def main():
    proxy = EgressProxy(AddressPolicy.parse(["127.0.0.1/32"]), CachingResolver(StaticResolver({})))
    ports = []
    # The flooder has the default limits plus a bandwidth cap; the victim's rate limit is lifted so that its own
    # 1,000 sequential probes are measured, not refused.
    limits = {"flooder": ProxyLimits(bytes_per_second=200e6), "victim": ProxyLimits(new_per_second=1e6, new_burst=1000)}
    for name in ("flooder", "victim"):
        proxy.add_session(name, EgressPolicy.build("full"), limits[name])
        ports.append((await proxy.listen_tcp(name, "127.0.0.1", 0))[1])
    print(*ports, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Contenders:
    """Starts each proxy on its own port; `port[name]` (0 for direct)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port: dict[str, int] = {"direct": 0}
        self.reference: dict[str, int] = {}  # haproxy's relay ports: "bulk" (to the sink) and "echo"
        self.reference_name = "haproxy"

    def start_all(self) -> None:
        self._ringfence()
        if shutil.which("squid"):
            self._squid()
        if shutil.which("tinyproxy"):
            self._tinyproxy()
        mitm = os.environ.get("RINGFENCE_BENCH_MITMDUMP") or shutil.which("mitmdump")
        if mitm:
            self._mitm(mitm)

    def _spawn(self, name: str, argv: list[str], port: int) -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.base)
        self.procs[name] = proc
        _wait_port(port, proc, name)
        self.port[name] = port

    def _ringfence(self) -> None:
        port = _free_port()
        argv = [sys.executable, "-m", "ringfence", "egress", "serve", "--listen", f"127.0.0.1:{port}",
                "--mode", "full", "--allow-range", "127.0.0.1/32", "--new-per-second", "1000000",
                "--max-concurrent", "100000"]  # fmt: skip
        self._spawn("ringfence", argv, port)

    def _squid(self) -> None:
        port = _free_port()
        work = self.base / "squid"
        work.mkdir(mode=0o777)
        work.chmod(0o777)
        conf = work / "squid.conf"
        conf.write_text(
            f"http_port 127.0.0.1:{port}\nhttp_access allow all\ncache deny all\ncache_mem 8 MB\n"
            f"access_log none\ncache_log {work}/cache.log\npid_filename {work}/squid.pid\ncoredump_dir {work}\n"
            "max_filedescriptors 65536\nshutdown_lifetime 0 seconds\nvia off\nforwarded_for delete\n"
        )
        self._spawn("squid", ["squid", "-N", "-f", str(conf)], port)

    def _tinyproxy(self) -> None:
        port = _free_port()
        conf = self.base / "tinyproxy.conf"
        conf.write_text(
            f"Port {port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\nMaxClients 20000\nLogLevel Critical\n"
            "User nobody\nGroup nogroup\n"
        )
        self._spawn("tinyproxy", ["tinyproxy", "-d", "-c", str(conf)], port)

    def start_reference(self, sink: int, echo: int) -> None:
        """haproxy as a plain TCP relay (see the module's docstring), when it is installed."""
        if not shutil.which("haproxy"):
            return
        ports = {"bulk": _free_port(), "echo": _free_port()}
        conf = self.base / "haproxy.cfg"
        # One thread, as every contender has one core's worth of event loop. Its best measured setting here:
        # 1 MiB buffers and splice when the kernel has data queued (0.3x of direct with the default 16 KiB).
        conf.write_text(
            "global\n    nbthread 1\n    maxconn 4000\n    tune.bufsize 1048576\n"
            "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
            "    option splice-auto\n"
            f"listen bulk\n    bind 127.0.0.1:{ports['bulk']}\n    server s 127.0.0.1:{sink}\n"
            f"listen echo\n    bind 127.0.0.1:{ports['echo']}\n    server s 127.0.0.1:{echo}\n"
        )
        # Waited for on the echo port: a probe of the bulk port would reach the sink, which waits for a length.
        self._spawn("haproxy", ["haproxy", "-db", "-f", str(conf)], ports["echo"])
        del self.port["haproxy"]  # not a forward proxy: reached directly, on its own ports
        self.reference = ports
        version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout.split()
        self.reference_name = f"haproxy {version[2] if len(version) > 2 else '?'}".split("-")[0]

    def _mitm(self, binary: str) -> None:
        port = _free_port()
        argv = [binary, "--listen-host", "127.0.0.1", "--listen-port", str(port), "--ignore-hosts", ".*", "-q"]
        self._spawn("mitmproxy", argv, port)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _load(*args: object, timeout: float = 600) -> list[float]:
    done = subprocess.run(
        [PY, "-c", LOADGEN, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator {args[:1]} failed: {done.stderr[-400:]}")
    return [float(x) for x in done.stdout.split()]


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mib: int = 1024, rate_seconds: float = 5.0, idle: int = 10_000) -> list[Figure]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every process started below
    # Each idle tunnel holds two descriptors in the proxy: stay under this machine's hard limit.
    idle = min(idle, (hard - 1000) // 2)
    base = Path(tempfile.mkdtemp(prefix="rf-bench-egress-"))
    base.chmod(0o755)
    upstream = subprocess.Popen([PY, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    contenders = Contenders(base)
    try:
        assert upstream.stdout is not None
        sink, echo = (int(x) for x in upstream.stdout.readline().split())
        contenders.start_all()
        contenders.start_reference(sink, echo)
        names = list(contenders.port)
        # (proxy port, sink port, echo port) per name: the contenders are asked to CONNECT to the upstream; the
        # reference is connected to directly (proxy port 0) and relays to it.
        routes = {n: (contenders.port[n], sink, echo) for n in names}
        if contenders.reference:
            routes["haproxy"] = (0, contenders.reference["bulk"], contenders.reference["echo"])
        throughput: dict[str, list[float]] = {n: [] for n in routes}
        for _ in range(3):  # interleaved rounds
            for name, (proxy, to_sink, _) in routes.items():
                try:
                    throughput[name].extend(_load("bulk", proxy, to_sink, mib))
                except RuntimeError as exc:
                    raise RuntimeError(f"{name}: {exc}") from None
        rates: dict[str, float] = {}
        cpu_us: dict[str, float] = {}  # each proxy's CPU time per tunnel during its own tunnels/s load
        for name, (proxy, _, to_echo) in routes.items():
            pid = contenders.procs[name].pid if name in contenders.procs else None
            before = _cpu_seconds(pid) if pid else 0.0
            rates[name] = _load("rate", proxy, to_echo, rate_seconds, 200)[0]
            if pid:
                cpu_us[name] = (_cpu_seconds(pid) - before) / max(rates[name] * rate_seconds, 1) * 1e6
        latency = {n: _load("latency", contenders.port[n], echo, 2000) for n in names}
        idle_kib = _idle_memory(contenders, echo, idle)
        fairness = _fairness(echo, sink)
    finally:
        contenders.stop()
        upstream.kill()
        upstream.wait()
        shutil.rmtree(base, ignore_errors=True)
    reference = f"the reference ({contenders.reference_name} TCP relay, splice, no CONNECT, not a forward proxy)"
    return _figures(names, throughput, rates, cpu_us, latency, idle_kib, idle, fairness, mib, reference)


def _idle_memory(contenders: Contenders, echo: int, n: int) -> float:
    proc = contenders.procs["ringfence"]
    before = _rss_kib(proc.pid)
    holder = subprocess.Popen(
        [PY, "-c", LOADGEN, "idle", str(contenders.port["ringfence"]), str(echo), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("idle tunnels were not all opened")
        time.sleep(1.0)
        after = _rss_kib(proc.pid)
    finally:
        holder.kill()
        holder.wait()
    return (after - before) / n


def _fairness(echo: int, sink: int) -> tuple[float, float, float]:
    """The victim session's p99 latency alone and while the other session floods (bulk + connection storm)."""
    proc = subprocess.Popen([sys.executable, "-c", TWO_SESSIONS], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        flooder, victim = (int(x) for x in proc.stdout.readline().split())
        time.sleep(2.0)  # the machine settles after the idle-tunnel figure's 10,000 closes
        alone = _load("latency", victim, echo, 1000)
        # The flood's own client programs run at the lowest CPU priority: on 2 shared cores they would otherwise
        # slow the victim's client and upstream by taking their CPU, which no proxy can prevent. What remains is
        # what the proxy lets one session do to another.
        nice = ["nice", "-n", "19"]
        bulk = subprocess.Popen(
            [*nice, PY, "-c", LOADGEN, "bulk", str(flooder), str(sink), "4096"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # The bulk tunnel is opened before the storm: started together, the storm could spend the flooder's
        # new-connection budget first, the bulk transfer would be refused (429), and there would be no bulk flood.
        time.sleep(0.5)
        storm = subprocess.Popen(
            [*nice, PY, "-c", LOADGEN, "rate", str(flooder), str(echo), "30", "200"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        try:
            loaded = _load("latency", victim, echo, 1000)
            if bulk.poll() is not None:  # it would still be sending (4 GiB at the session's 200 MB/s cap)
                assert bulk.stderr is not None
                raise RuntimeError(f"the bulk flood ended early: {bulk.stderr.read()[-300:]!r}")
        finally:
            for flood in (bulk, storm):
                flood.kill()
                flood.wait()
        time.sleep(1.0)
        after = _load("latency", victim, echo, 1000)
    finally:
        proc.kill()
        proc.wait()
    # The lower of the two quiet baselines (before and after the flood): a noisy baseline must not flatter the ratio.
    baseline = min(alone[1], after[1])
    return baseline, loaded[1], loaded[1] / baseline


def _figures(
    names: list[str],
    throughput: dict[str, list[float]],
    rates: dict[str, float],
    cpu_us: dict[str, float],
    latency: dict[str, list[float]],
    idle_kib: float,
    idle: int,
    fairness: tuple[float, float, float],
    mib: int,
    reference: str,
) -> list[Figure]:
    bulk = {n: statistics.median(v) for n, v in throughput.items()}
    ours = bulk["ringfence"] / bulk["direct"]
    others = ", ".join(f"{n} {bulk[n] / bulk['direct']:.2f}x" for n in names if n not in ("direct", "ringfence"))
    squid_bulk = bulk.get("squid", 0.0)
    tunnels = ", ".join(f"{n} {rates[n]:,.0f}/s" for n in names)
    cpu = ", ".join(f"{n} {us:.0f}" for n, us in cpu_us.items() if n != "haproxy")
    if "haproxy" in rates:
        others += f"; {reference} {bulk['haproxy'] / bulk['direct']:.2f}x"
        tunnels += f"; {reference} {rates['haproxy']:,.0f}/s at {cpu_us.get('haproxy', 0):.0f} us CPU per tunnel"
    if cpu:
        tunnels += f"; proxy CPU per tunnel (user + system, us): {cpu}"
    squid_rate = rates.get("squid", 0.0)
    mitm_rate = rates.get("mitmproxy")
    added_p50 = latency["ringfence"][0] - latency["direct"][0]
    added_p99 = latency["ringfence"][1] - latency["direct"][1]
    lat = ", ".join(f"{n} p50 {latency[n][0]:.2f} / p99 {latency[n][1]:.2f} ms" for n in names)
    rate_ok = rates["ringfence"] > squid_rate and (mitm_rate is None or rates["ringfence"] >= 5 * mitm_rate)
    return [
        Figure(
            f"egress CONNECT bulk throughput ({mib} MiB, median of 3), vs direct",
            ours,
            "x direct",
            ">= 0.8 and ahead of squid",
            ours >= 0.8 and bulk["ringfence"] > squid_bulk,
            f"ringfence {bulk['ringfence']:,.0f} MiB/s, direct {bulk['direct']:,.0f} MiB/s; {others}",
        ),
        Figure(
            "egress new tunnels per second, 200 concurrent clients (CONNECT + 1 KiB each way + close)",
            rates["ringfence"],
            "tunnels/s",
            "ahead of squid, >= 5x mitmproxy",
            rate_ok,
            tunnels,
        ),
        Figure(
            "egress added latency per new connection (CONNECT + 1-byte echo), p50 over direct",
            added_p50,
            "ms",
            "<= 0.5 ms",
            added_p50 <= 0.5,
            f"p99 added {added_p99:.2f} ms; {lat}",
        ),
        Figure(
            f"egress proxy memory per idle tunnel ({idle:,} concurrent, one process)",
            idle_kib,
            "KiB",
            "<= 16 KiB",
            idle_kib <= 16,
            "resident memory of the `egress serve` process before and after, divided by the tunnels",
        ),
        Figure(
            "egress fairness: a session's p99 latency while another session floods, vs alone",
            fairness[2],
            "x alone",
            "<= 2.0",
            fairness[2] <= 2.0,
            f"p99 {fairness[0]:.2f} ms alone (the lower of before and after), {fairness[1]:.2f} ms during a bulk "
            "transfer plus a 200-client connection storm from the other session (limits on)",
        ),
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for figure in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1024):
        print(figure)
