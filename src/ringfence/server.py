"""What `ringfence serve` serves: the REST API with the web console mounted on it. The one place both front ends
meet (they know nothing of each other: ARCHITECTURE.md)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ringfence.api.app import create_app as create_api
from ringfence.api.http_server import config as http_config
from ringfence.store.db import Store
from ringfence.web.app import mount

__all__ = ["create_app", "http_config"]  # http_config: how both are served (head size and deadline)


def create_app(store: Store, **options: Any) -> FastAPI:
    """`create_api`'s options (clock, sweep interval, sessions), with the console at /ui."""
    return mount(create_api(store, **options))
