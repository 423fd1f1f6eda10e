"""Where a session's data actually went, as a picture: audit records grouped by destination, rendered as SVG.

Owns: `flows` (egress and gateway audit records -> one `Flow` per destination: its group, allowed and denied
attempts, bytes each way) and `render_svg` (a self-contained SVG: no scripts, no external styles or fonts, so it
reads the same in the console, in an export or in a file). Pure functions over values; the layout is our own
(three columns: the subject, the two proxies, the destination groups) because a general graph layout engine
(Graphviz) would be a system dependency for a picture with a fixed shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from ringfence.egress.rules import telemetry_hosts, trusted_categories
from ringfence.net.hostport import HostError, Target, parse_host

GROUPS = ("model API", "repository host", "package registries", "telemetry", "other")
_REGISTRY_WORDS = ("package managers", "Container registries", "Linux distributions")


@dataclass
class Flow:
    """One destination: every attempt to reach it, allowed or denied, and the bytes that went each way."""

    group: str
    destination: str
    via: str  # "egress" or "gateway"
    allowed: int = 0
    denied: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    rules: set[str] = field(default_factory=set)


def group_of(host: str, *, repository_hosts: Iterable[str] = ()) -> str:
    """The group an egress destination belongs to, by the shipped lists (the trusted preset's categories, the
    telemetry list) and the session's repository hosts."""
    if host in set(repository_hosts):
        return "repository host"
    try:
        name, literal = parse_host(host)
    except HostError:
        return "other"
    target = Target(name, 443, literal)
    if any(rule.matches(target) for rule in telemetry_hosts()):
        return "telemetry"
    for category, rule in trusted_categories():
        if rule.matches(target):
            if category == "Anthropic services":
                return "model API"
            if any(word in category for word in _REGISTRY_WORDS):
                return "package registries"
            return "other"
    return "other"


def _denied(record: Mapping[str, Any]) -> bool:
    return record.get("decision") not in ("allow", "would_deny")


def flows(records: Iterable[Mapping[str, Any]], *, repository_hosts: Iterable[str] = ()) -> list[Flow]:
    """One Flow per destination, largest first. Gateway records are the repository host (git, host API) or the
    model API; egress records are grouped by their host."""
    repo_hosts = tuple(repository_hosts)
    found: dict[tuple[str, str], Flow] = {}
    for record in records:
        if record.get("kind") == "gateway.request":
            if record.get("route") == "model":
                group, destination = "model API", f"model: {record.get('provider', '?')}"
            else:
                group, destination = "repository host", str(record.get("repository", "repository"))
            via = "gateway"
        elif record.get("kind") == "egress.connection":
            destination = str(record.get("host") or record.get("target") or "unparsable request")
            group, via = "", "egress"  # grouped once per destination, below
        else:
            continue
        flow = found.get((via, destination))
        if flow is None:
            group = group or group_of(destination, repository_hosts=repo_hosts)
            flow = found[(via, destination)] = Flow(group, destination, via)
        if _denied(record):
            flow.denied += 1
        else:
            flow.allowed += 1
        flow.bytes_up += int(record.get("bytes_up") or 0)
        flow.bytes_down += int(record.get("bytes_down") or 0)
        if record.get("rule"):
            flow.rules.add(str(record["rule"]))
    return sorted(found.values(), key=lambda f: (GROUPS.index(f.group), -(f.bytes_up + f.bytes_down), f.destination))


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


_ALLOW, _DENY, _INK, _MUTED = "#1a7f37", "#cf222e", "#1f2328", "#59636e"
_PER_GROUP = 6  # destinations drawn per group; the rest are summed in one line


def render_svg(subject: str, items: Sequence[Flow], permits: Sequence[str]) -> str:
    """The picture: `subject` on the left, the egress proxy and the credential gateway in the middle, every group
    with its destinations on the right; green lines carried allowed traffic (labelled with its volume), red
    dashed lines were refused. `permits` (what the policy allows, one line each) is printed under the picture."""
    rows: list[tuple[str, Flow | None, str]] = []  # (group, flow or None for a group heading / overflow, text)
    for group in GROUPS:
        members = [f for f in items if f.group == group]
        if not members:
            continue
        rows.append((group, None, group))
        for flow in members[:_PER_GROUP]:
            rows.append((group, flow, flow.destination))
        if len(members) > _PER_GROUP:
            rest = members[_PER_GROUP:]
            rows.append((group, None, f"+{len(rest)} more ({sum(f.allowed + f.denied for f in rest)} attempts)"))
    line_h, top = 26, 50
    height = max(top + len(rows) * line_h + 40, 220) + 18 * len(permits) + 30
    width = 900
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="df-title" font-family="DejaVu Sans, Verdana, sans-serif" font-size="13">',
        f'<title id="df-title">Data flow of {escape(subject)}</title>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="20" y="28" font-size="15" font-weight="bold" fill="{_INK}">'
        f"Where data went: {escape(subject)}</text>",
    ]
    mid = top + max(len(rows), 4) * line_h / 2
    out.append(f'<rect x="20" y="{mid - 22}" width="150" height="44" rx="6" fill="#ddf4ff" stroke="#0969da"/>')
    out.append(f'<text x="95" y="{mid + 5}" text-anchor="middle" fill="{_INK}">sandbox</text>')
    proxies = {"egress": mid - 45, "gateway": mid + 45}
    for name, y in proxies.items():
        label = "egress proxy" if name == "egress" else "credential gateway"
        out.append(f'<rect x="260" y="{y - 18}" width="170" height="36" rx="6" fill="#f6f8fa" stroke="#59636e"/>')
        out.append(f'<text x="345" y="{y + 5}" text-anchor="middle" fill="{_INK}">{label}</text>')
        out.append(f'<line x1="170" y1="{mid}" x2="260" y2="{y}" stroke="#59636e" stroke-width="1.5"/>')
    for index, (_group, maybe, text) in enumerate(rows):
        y = top + index * line_h + 14
        if maybe is None:
            heading = text in GROUPS
            weight = ' font-weight="bold"' if heading else ""
            out.append(f'<text x="560" y="{y + 4}" fill="{_INK if heading else _MUTED}"{weight}>{escape(text)}</text>')
            continue
        flow = maybe
        start_y = proxies[flow.via]
        if flow.allowed:
            volume = f"{human_bytes(flow.bytes_up)} up, {human_bytes(flow.bytes_down)} down"
            out.append(f'<line x1="430" y1="{start_y}" x2="570" y2="{y}" stroke="{_ALLOW}" stroke-width="2"/>')
            status = f"{flow.allowed} allowed · {volume}"
        if flow.denied:
            out.append(
                f'<line x1="430" y1="{start_y}" x2="570" y2="{y}" stroke="{_DENY}" stroke-width="2" '
                f'stroke-dasharray="5 4"/>'
            )
        parts = []
        if flow.allowed:
            parts.append(status)
        if flow.denied:
            parts.append(f"{flow.denied} denied")
        colour = _DENY if flow.denied and not flow.allowed else _INK
        mark = "✕ " if flow.denied and not flow.allowed else ""
        out.append(
            f'<text x="576" y="{y + 4}" fill="{colour}">{mark}{escape(flow.destination[:40])}'
            f'<tspan fill="{_MUTED}" font-size="11"> {escape(" · ".join(parts))}</tspan></text>'
        )
    if not rows:
        out.append(f'<text x="560" y="{mid + 5}" fill="{_MUTED}">nothing left the sandbox</text>')
    y = top + max(len(rows), 4) * line_h + 40
    out.append(f'<text x="20" y="{y}" font-weight="bold" fill="{_INK}">What the policy permits</text>')
    for number, line in enumerate(permits, 1):
        out.append(f'<text x="20" y="{y + 18 * number}" fill="{_MUTED}">{escape(line)}</text>')
    legend_y = 28
    out.append(f'<line x1="600" y1="{legend_y - 4}" x2="630" y2="{legend_y - 4}" stroke="{_ALLOW}" stroke-width="2"/>')
    out.append(f'<text x="636" y="{legend_y}" fill="{_MUTED}" font-size="11">allowed</text>')
    out.append(
        f'<line x1="700" y1="{legend_y - 4}" x2="730" y2="{legend_y - 4}" stroke="{_DENY}" stroke-width="2" '
        f'stroke-dasharray="5 4"/>'
    )
    out.append(f'<text x="736" y="{legend_y}" fill="{_MUTED}" font-size="11">denied</text>')
    out.append("</svg>")
    return "\n".join(out)


def permits_of(settings: Mapping[str, Any] | None) -> list[str]:
    """What an environment's settings permit, one line each, for the picture's caption."""
    if settings is None:
        return ["the built-in default: the trusted preset, telemetry off"]
    mode = settings.get("network", "trusted")
    lines = [
        {
            "none": "network none: nothing but the credential gateway",
            "trusted": "network trusted: the shipped preset of trusted hosts",
            "custom": "network custom: only the allow list",
            "full": "network full: any public address",
        }.get(mode, f"network {mode}")
    ]
    if settings.get("allow"):
        lines.append("allow: " + ", ".join(settings["allow"])[:120])
    if settings.get("deny"):
        lines.append("deny: " + ", ".join(settings["deny"])[:120])
    lines.append("telemetry: " + ("allowed" if settings.get("telemetry") else "denied"))
    if settings.get("setup"):
        lines.append(f"setup script: network {settings.get('setup_network', 'trusted')}")
    lines.append("always: the repository only through the gateway; no private, loopback or metadata address")
    return lines
