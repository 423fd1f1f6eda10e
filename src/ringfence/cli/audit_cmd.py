"""`ringfence audit verify|export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.common import DataDir, reports_errors, settings, store_from
from ringfence.cli.console import err, out

app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")


@app.command()
@reports_errors
def verify(data_dir: DataDir = None) -> None:
    """Prove the chain intact, or name the first broken record (exit 1)."""
    store = store_from(settings(data_dir), create=False)
    result = store.audit.verify(store.engine)
    if result.ok:
        out.print(f"audit log intact: {result.count} record(s), head {result.head_seq} {result.head_hash.hex()}")
        return
    err.print(f"[bold red]audit log BROKEN at record {result.broken_seq}:[/] {result.problem}")
    err.print(f"the first {result.head_seq} record(s) verify")
    raise typer.Exit(1)


@app.command("export")
@reports_errors
def export(
    out_file: Annotated[Path | None, typer.Option("--out", help="file to write (default: standard output)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write every record as one JSON object per line."""
    store = store_from(settings(data_dir), create=False)
    if out_file is None:
        store.audit.export(store.engine, sys.stdout)
        return
    with open(out_file, "w") as handle:
        count = store.audit.export(store.engine, handle)
    err.print(f"wrote {count} record(s) to {out_file}")
