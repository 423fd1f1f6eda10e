"""Prometheus metrics of the egress proxy: counters and histograms kept in memory, rendered in the text format.

Owns: the metric names and their labels. Small by design: a proxy process exposes a few dozen series, so a
dependency (prometheus_client) buys nothing but its registry; the text format is a handful of lines.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.connections: Counter[tuple[str, str]] = Counter()  # (decision, rule kind)
        self.bytes: Counter[str] = Counter()  # direction: up (client -> upstream), down
        self.active = 0
        self.connect_latency = Histogram()
        self.dns_latency = Histogram()

    def decided(self, decision: str, rule: str) -> None:
        self.connections[(decision, rule.split(":", 1)[0])] += 1

    def render(self) -> str:
        lines = [
            "# HELP ringfence_egress_connections_total Connection attempts by decision and deciding rule kind.",
            "# TYPE ringfence_egress_connections_total counter",
        ]
        for (decision, rule), count in sorted(self.connections.items()):
            lines.append(
                f"ringfence_egress_connections_total{_labels([('decision', decision), ('rule', rule)])} {count}"
            )
        lines += [
            "# HELP ringfence_egress_bytes_total Bytes relayed, by direction.",
            "# TYPE ringfence_egress_bytes_total counter",
        ]
        for direction in ("up", "down"):
            lines.append(f'ringfence_egress_bytes_total{{direction="{direction}"}} {self.bytes[direction]}')
        lines += [
            "# HELP ringfence_egress_active_connections Connections open now.",
            "# TYPE ringfence_egress_active_connections gauge",
            f"ringfence_egress_active_connections {self.active}",
        ]
        for name, histogram in (("connect", self.connect_latency), ("dns", self.dns_latency)):
            metric = f"ringfence_egress_{name}_seconds"
            lines += [f"# HELP {metric} Time to {name} for allowed connections.", f"# TYPE {metric} histogram"]
            cumulative = 0
            for bound, count in zip((*_BUCKETS, float("inf")), histogram.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'{metric}_bucket{{le="{le}"}} {cumulative}')
            lines += [f"{metric}_sum {histogram.total}", f"{metric}_count {histogram.n}"]
        return "\n".join(lines) + "\n"
