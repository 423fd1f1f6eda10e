"""Run every benchmark and write the table to docs/benchmarks.md (`make bench`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    agents_bench,
    audit_bench,
    bridge_bench,
    egress_bench,
    gateway_bench,
    gvisor_bench,
    hardening_bench,
    policy_bench,
    sandbox_bench,
    sessions_bench,
    sweep_bench,
    web_bench,
)
from bench.common import Figure, machine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    figures: list[Figure] = []
    for label, bench in [
        ("policy", lambda: policy_bench.run(2000 // scale, 50)),
        ("audit", lambda: audit_bench.run(500_000 // scale)),
        ("sweep", lambda: sweep_bench.run(1_000_000 // scale)),
        ("sandbox", lambda: sandbox_bench.run(200 // scale, 200 // scale)),
        ("cpu fairness", lambda: sandbox_bench.fairness(7 if not args.quick else 3)),
        ("hardening", lambda: hardening_bench.run(200 // scale)),
        ("bridge", lambda: bridge_bench.run(512 // scale, 9 if not args.quick else 3)),
        ("gvisor bridge", lambda: bridge_bench.run_gvisor(128 // scale, 5 if not args.quick else 3)),
        ("egress", lambda: egress_bench.run(1024 // scale, 5.0 if not args.quick else 2.0, 10_000 // scale)),
        ("gateway", lambda: gateway_bench.run(3 if not args.quick else 1, 500 // scale)),
        ("sessions", lambda: sessions_bench.run(15 if not args.quick else 3)),
        ("web console", lambda: web_bench.run(1000, 15 if not args.quick else 3)),
        ("agents", lambda: agents_bench.run(15 if not args.quick else 3)),
        ("gvisor", lambda: gvisor_bench.run(15 if not args.quick else 3)),
    ]:
        print(f"running {label} ...", flush=True)
        figures.extend(bench())
        print(f"  {figures[-1].name}: {figures[-1].value:,.1f} {figures[-1].unit}", flush=True)
    lines = [
        "# Benchmarks",
        "",
        f"Command: `make bench` (`python bench/run.py{' --quick' if args.quick else ''}`), "
        f"run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        f"Machine: {machine()}. The machine is shared and noisy: figures with a baseline give the ratio to it, "
        "measured in the same run.",
        "",
        "| what | figure | target | met | notes |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        digits = 1 if f.unit == "s" else (2 if f.value < 100 else 0)
        value = f"{f.value:,.{digits}f} {f.unit}"
        lines.append(f"| {f.name} | {value} | {f.target} | {'yes' if f.ok else 'NO'} | {f.note} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
