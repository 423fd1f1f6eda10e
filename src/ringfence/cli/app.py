"""The `ringfence` command line (Typer + Rich): a thin front end over policy, store and audit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli import (
    agent_cmd,
    audit_cmd,
    doctor_cmd,
    egress_cmd,
    env_cmd,
    gateway_cmd,
    provider_cmd,
    sandbox_cmd,
    serve_cmd,
    session_cmd,
)
from ringfence.cli.common import DataDir, now, reports_errors, settings, store_from
from ringfence.cli.console import err, out
from ringfence.policy import explain as explain_scenario
from ringfence.policy import load_rules, parse_time
from ringfence.store.export import export_training
from ringfence.store.sweeper import sweep as run_sweep

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ringfence: agent sessions, fenced.")
policy_app = typer.Typer(no_args_is_help=True, help="The data-usage policy.")
db_app = typer.Typer(no_args_is_help=True, help="The database.")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_cmd.app, name="sandbox")
app.add_typer(egress_cmd.app, name="egress")
app.add_typer(gateway_cmd.app, name="gateway")
app.add_typer(session_cmd.app, name="session")
app.add_typer(env_cmd.app, name="environment")
app.add_typer(env_cmd.app, name="env", hidden=True)
app.add_typer(provider_cmd.app, name="provider")
app.add_typer(provider_cmd.repo_app, name="repo")
app.add_typer(agent_cmd.app, name="agent")
app.command("serve")(serve_cmd.serve)
app.command("doctor")(doctor_cmd.doctor)


@policy_app.command("explain")
@reports_errors
def explain(
    scenario: Annotated[Path, typer.Argument(help="a scenario JSON file (POLICY.md), or - for standard input")],
    policy_file: Annotated[Path | None, typer.Option(help="a policy TOML instead of the packaged one")] = None,
) -> None:
    """Replay a scenario through the server's policy code and print its decisions as JSON."""
    text = sys.stdin.buffer.read() if str(scenario) == "-" else scenario.read_bytes()
    rules = load_rules(policy_file or settings().policy_file)
    print(json.dumps(explain_scenario(rules, text), indent=2))


@app.command()
@reports_errors
def sweep(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be deleted; delete nothing")] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete every session and feedback past its retention deadline (keys first)."""
    store = store_from(settings(data_dir), create=False)
    report = run_sweep(store, now(), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {len(report.sessions)} session(s) and {len(report.feedback)} feedback report(s)")
    for sid in report.sessions:
        out.print(f"  session {sid}")
    for fid in report.feedback:
        out.print(f"  feedback {fid}")
    if report.undecidable:
        err.print(f"[yellow]{len(report.undecidable)} session(s) have no computable deadline; not deleted:[/]")
        for sid in report.undecidable:
            err.print(f"  session {sid}")
        raise typer.Exit(3)


@app.command("export")
@reports_errors
def export(
    at: Annotated[str, typer.Option("--at", help="the export time T, ISO-8601 (e.g. 2026-11-24T00:00:00Z)")],
    out_file: Annotated[Path, typer.Option("--out", help="the JSON-lines file to write")],
    data_dir: DataDir = None,
) -> None:
    """Write the sessions eligible for training at T, and a manifest recorded in the audit log."""
    try:
        moment = parse_time(at)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--at") from None
    store = store_from(settings(data_dir), create=False)
    manifest = export_training(store, moment, out_file, now(), actor="cli")
    out.print(f"exported {len(manifest.sessions)} session(s) to {out_file} (sha256 {manifest.content_sha256})")
    out.print(f"manifest: {out_file}.manifest.json")


@db_app.command("upgrade")
@reports_errors
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply the schema migrations (also done at every start)."""
    store_from(settings(data_dir))
    out.print("schema is at the newest migration")


def main() -> None:
    app()
