"""The `ringfence` entry point: a small dispatcher in front of the Typer application (ringfence.cli.app).

`egress serve` and `gateway serve` are long-running processes that need neither the store's ORM nor the API
server: they are started from their own command modules, so they do not carry those in memory (the gateway's
benchmark counts its whole resident size).
"""

from __future__ import annotations

import importlib
import sys

_LEAN = {"egress": "ringfence.cli.egress_cmd", "gateway": "ringfence.cli.gateway_cmd"}


def main() -> None:
    group = sys.argv[1] if len(sys.argv) > 1 else ""
    if group in _LEAN:
        module = importlib.import_module(_LEAN[group])
        module.app(prog_name=f"ringfence {group}", args=sys.argv[2:])
        return
    from ringfence.cli.app import app

    app()
